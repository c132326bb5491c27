#pragma once
/* The shim protocol: what the server and a job's shim (core/shim.h) say to each other, the fds
 * the shim finds at fixed numbers, the steps it runs (and their names, for error messages), the
 * spec blob, and the shim template's requests (ARCHITECTURE.md "Process tree of one job"). Both
 * sides' half of every exchange is here; starting the process is core/spawn.h's.
 *
 * The exchanges, in order:
 *   - the shim starts with fds 0..4 set as SHIMPROTO_FD_* below, nothing else open, and argv
 *     {"runjob", "shim", SHIMPROTO_NET_NONE or SHIMPROTO_NET_HOST};
 *   - it does the steps that need no job (signals, the seccomp filter, and for a private
 *     network / private, a fresh /proc and /sys, lo up), then waits for the prep
 *     (shimproto_send_prep / shimproto_recv_prep) on SHIMPROTO_FD_SYNC (a SEQPACKET socket):
 *     the job's id, uid and gid. Before sending it the server attaches the shim to the job's
 *     cgroups (unless clone3 put it there), so no job code ever runs outside them; on cgroup v1
 *     all but the memory one, whose cgroup.procs comes with the prep for the command's process
 *     to join (core/cgroup.h cg_memory_apart). Because
 *     nothing before the prep depends on the job, the server may start shims ahead of time
 *     (job-pool.c), and because the prep holds only what a job made ahead already knows, it may
 *     send it before the Start (job_spare_new). EOF instead of the prep (the server died,
 *     or dropped a pooled shim) makes it exit;
 *   - on the prep the shim says it is ready (shimproto_send_ready: its /dev and devpts are
 *     mounted, which the server needs before it opens a job's terminal there), roots its
 *     cgroup namespace, sets the hostname and forks the command's process, which joins the
 *     job's memory cgroup if the prep brought its cgroup.procs (and roots a cgroup namespace
 *     there), sets its group, signals, fds, credentials, no_new_privs and the seccomp
 *     filter, then waits itself for the go (shimproto_send_go / shimproto_recv_go),
 *     which carries the spec as a memfd (shimproto_spec_pack/parse); a spec for another id,
 *     user or network is refused. EOF instead of the go makes it exit;
 *   - on a failed step the shim (or the command's process before exec) sends the failure
 *     {step, errno} on SHIMPROTO_FD_SYNC (shimproto_send_failure) and _exit(127)s;
 *   - the go also brings the command's process a verdict socket, which replaces its
 *     SHIMPROTO_FD_SYNC (close-on-exec): the server reads EOF on its end once the command has
 *     been exec'd. That EOF or a failure is the verdict (shimproto_recv_verdict). Only the
 *     command's process holds it, so the verdict waits for nobody else (the shim, suspended
 *     until that exec, still holds its own SHIMPROTO_FD_SYNC);
 *   - when the command ends, the shim writes one status record on SHIMPROTO_FD_STATUS
 *     (shimproto_send_status / shimproto_recv_status) and exits (as PID 1 of the job's pid
 *     namespace, taking every other job process with it). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Where the shim finds its fds. 0..2 are also the command's stdin (/dev/null), stdout, stderr. */
enum {
    SHIMPROTO_FD_STDIN = 0,
    SHIMPROTO_FD_STDOUT = 1,
    SHIMPROTO_FD_STDERR = 2,
    SHIMPROTO_FD_SYNC = 3,
    SHIMPROTO_FD_STATUS = 4,
    SHIMPROTO_FD_COUNT = 5,
};

/* The shim's argv[2]: the network the job gets (the shim sets a private one up before the spec
 * arrives; a spec that asks otherwise is refused). */
#define SHIMPROTO_NET_NONE "net=none"
#define SHIMPROTO_NET_HOST "net=host"

/* The shim's steps. Values travel between processes of one binary. The shim: CAPBSET (an exec'd
 * shim; the template does it once for its forks), SIGNALS, SECCOMP_BUILD, MOUNT_PRIVATE,
 * MOUNT_PROC, MOUNT_SYS, LOOPBACK (these two for a private network), MOUNT_TMP, WAIT_PREP,
 * CGROUP_NS, HOSTNAME, FORK; then the command's process: MEMORY_CGROUP, COMMAND_CGROUP_NS (v1),
 * SETSID, SIGNAL_RESET, FDS, OOM_SCORE,
 * SETGROUPS, SETGID, SETUID, CAPS, RLIMITS, NO_NEW_PRIVS, SECCOMP, WAIT_GO, READ_SPEC, CHDIR,
 * EXEC. */
enum shimproto_step {
    SHIMPROTO_STEP_NONE = 0,
    SHIMPROTO_STEP_EXEC_SHIM,     /* server's child: execve of the shim binary */
    SHIMPROTO_STEP_READ_SPEC,     /* read and parse the spec blob that came with the go */
    SHIMPROTO_STEP_SIGNALS,       /* block forwarded signals, open the signalfd */
    SHIMPROTO_STEP_WAIT_GO,       /* the command's process: wait for the server's go + spec */
    SHIMPROTO_STEP_CGROUP_NS,     /* unshare the cgroup namespace, rooted at the job cgroup */
    SHIMPROTO_STEP_MOUNT_PRIVATE, /* make / rprivate: no mount event leaks either way */
    SHIMPROTO_STEP_MOUNT_PROC,    /* a fresh /proc for the new pid namespace */
    SHIMPROTO_STEP_MOUNT_SYS,     /* a fresh read-only /sys for the new net namespace */
    SHIMPROTO_STEP_LOOPBACK,      /* bring lo up (private netns only) */
    SHIMPROTO_STEP_HOSTNAME,      /* first block of the job id */
    SHIMPROTO_STEP_SECCOMP_BUILD, /* build the filter before forking */
    SHIMPROTO_STEP_FORK,          /* fork the command's process */
    /* from here on, in the command's process */
    SHIMPROTO_STEP_SETSID,       /* own session and group: the shim forwards signals to it */
    SHIMPROTO_STEP_SIGNAL_RESET, /* default dispositions, empty mask */
    SHIMPROTO_STEP_FDS,          /* close every fd but 0, 1, 2 */
    SHIMPROTO_STEP_CAPBSET,      /* empty the capability bounding set */
    SHIMPROTO_STEP_SETGROUPS,
    SHIMPROTO_STEP_SETGID,
    SHIMPROTO_STEP_SETUID,
    SHIMPROTO_STEP_CAPS, /* clear effective, permitted, inheritable and ambient caps */
    SHIMPROTO_STEP_CHDIR,
    SHIMPROTO_STEP_NO_NEW_PRIVS,
    SHIMPROTO_STEP_SECCOMP,
    SHIMPROTO_STEP_EXEC,
    SHIMPROTO_STEP_WAIT_PREP, /* wait for the server's prep (attached to the cgroups): id, uid, gid
                               */
    SHIMPROTO_STEP_MOUNT_TMP, /* the job's own /tmp, /var/tmp, /dev/shm, /run/lock (and /run) */
    SHIMPROTO_STEP_RLIMITS,   /* the job's resource limits, not the server's */
    SHIMPROTO_STEP_MOUNT_DEV, /* the job's own /dev: a few nodes, its own devpts and shm */
    SHIMPROTO_STEP_OOM_SCORE, /* the command's OOM score adjustment back to 0 (the shim's: -1000) */
    SHIMPROTO_STEP_MEMORY_CGROUP,     /* the command's process joins the job's memory cgroup (v1) */
    SHIMPROTO_STEP_COMMAND_CGROUP_NS, /* ... and roots a cgroup namespace of its own there */
    SHIMPROTO_STEP__MAX,
};

/* "mount /proc", ... ; "unknown step" outside the enum. */
const char *shimproto_step_name(int step);

/* Turns a failed step into plain words in buf, e.g. "'/bin/nope': no such file or directory",
 * "'/etc/passwd': not executable", "working directory '/x': permission denied". path is the
 * command (for EXEC); is_dir/no_exec_bits refine EACCES (the caller stat()ed path). Pure. */
void shimproto_format_error(int step, int err, const char *path, const char *cwd, bool is_dir,
                            bool no_exec_bits, char *buf, size_t len);

/* ---- the messages on SHIMPROTO_FD_SYNC and SHIMPROTO_FD_STATUS */

/* The prep, server -> shim, first: the job the shim is for (no fd attached). */
#define SHIMPROTO_ID_MAX         128 /* cg_id_is_valid's bound */
#define SHIMPROTO_PREP_MEMORY_FD 1u  /* the job's memory cgroup.procs comes with it */
struct shimproto_prep {
    uint32_t flags; /* SHIMPROTO_PREP_* */
    uint32_t uid;
    uint32_t gid;
    char id[SHIMPROTO_ID_MAX + 1]; /* NUL-terminated */
};

/* After the prep: server -> command's process {0, 0} + the spec memfd (SCM_RIGHTS) = the go;
 * shim or command's process -> server {step, errno} = a failure. */
struct shimproto_sync {
    int32_t step;
    int32_t err; /* positive errno */
};

enum shimproto_exit_kind {
    SHIMPROTO_EXITED = 1,
    SHIMPROTO_SIGNALED = 2,
};
/* Written once on SHIMPROTO_FD_STATUS when the command ended. */
struct shimproto_status {
    int32_t kind; /* enum shimproto_exit_kind */
    int32_t code; /* exit code or signal number */
};

/* Server: sends the prep (id at most SHIMPROTO_ID_MAX bytes, else -EINVAL) on sock, with
 * memory_fd attached if >= 0: the job's memory cgroup.procs (cg_open_memory_procs), for a shim
 * kept out of that cgroup; its command's process joins it. 0 or -errno (-EPIPE, -ECONNRESET: the
 * shim already failed and said why). Never raises SIGPIPE. */
int shimproto_send_prep(int sock, const char *id, uid_t uid, gid_t gid, int memory_fd);
/* Shim: waits for the prep on sock. 1 with *ret filled and *ret_memory_fd the fd that came with
 * it (close-on-exec, the caller's) or -1; 0 at EOF; -EBADMSG for a message of another size,
 * without a NUL-terminated, non-empty id, with an unknown flag, or whose fd is not there as
 * SHIMPROTO_PREP_MEMORY_FD says (one the kernel dropped: a job must not run outside its memory
 * cgroup); whatever fd came is closed; or -errno. */
int shimproto_recv_prep(int sock, struct shimproto_prep *ret, int *ret_memory_fd);

/* Server: sends the go with the spec memfd attached, then the command's end of a new verdict
 * socket, then the job's stdin (a pipe's read end, or a terminal's slave, as the spec's input
 * says) if stdin_fd >= 0. *ret_verdict is the server's end of the verdict socket, for
 * shimproto_recv_verdict (-1 on failure). 0 or -errno (-EINVAL without a spec; else as
 * shimproto_send_prep). */
int shimproto_send_go(int sock, int spec_fd, int stdin_fd, int *ret_verdict);
/* Command's process: waits for the go on sock. 1 with *ret_fd the spec memfd, *ret_verdict_fd
 * the verdict socket and *ret_stdin_fd the stdin that came after them (all close-on-exec, the
 * caller's; -1 if none came); 0 at EOF; -EBADMSG for a message of another size, with fewer than
 * two fds or more than three (the verdict socket, if one came, still in *ret_verdict_fd, for
 * the failure); or -errno. */
int shimproto_recv_go(int sock, int *ret_fd, int *ret_verdict_fd, int *ret_stdin_fd);

/* Shim or command's process: sends the failure {step, err} (err <= 0 goes as EIO) with a plain
 * write(2), the one call it makes. Async-signal-safe. 0 or -errno. */
int shimproto_send_failure(int sock, int step, int err);
/* Shim: the prep is in and the shim's namespaces are set up (its /dev, its devpts): {0, 0} on
 * sock. The server waits for it where it reaches into those (a job's terminal); otherwise
 * shimproto_recv_verdict passes over it. 0 or -errno. */
int shimproto_send_ready(int sock);
/* Server: waits up to timeout_ms for the shim's ready. 0; 1: a failure came instead, in *ret;
 * -ECHILD: EOF (the shim ended without a word); -ETIMEDOUT; -EPROTO; or -errno. */
int shimproto_recv_ready(int sock, int timeout_ms, struct shimproto_sync *ret);
/* Server: waits up to timeout_ms for the verdict on the verdict socket (shimproto_send_go): its
 * EOF, the command was exec'd, unless a failure from before the go waits on sock (the go then
 * never arrived); with verdict < 0 (the go was not sent), on sock alone, past a ready. 0: the
 * command was exec'd (on sock alone: EOF); 1: a failure, in *ret; -ECHILD: the shim's end
 * closed with the go unread and no failure; -ETIMEDOUT; -EPROTO for a message that is no
 * failure nor one ready on sock; or -errno. */
int shimproto_recv_verdict(int verdict, int sock, int timeout_ms, struct shimproto_sync *ret);

/* Shim: writes the status record of the command's end, from its waitpid() status. 0 or -errno. */
int shimproto_send_status(int fd, int wait_status);
/* Server: reads the status record from fd (one read(2): fd may be non-blocking). 1 with *ret
 * filled, 0 if none (EOF or a short read), or -errno (-EAGAIN: not there yet). */
int shimproto_recv_status(int fd, struct shimproto_status *ret);

/* ---- the spec: what the command's process needs to know, sent with the go */

/* Strings are NUL-terminated; argv[0] is what the command sees as its name. */
struct shimproto_spec {
    const char *id;
    const char *path; /* absolute path to exec */
    const char *cwd;
    const char *const *argv; /* NULL-terminated, at least argv[0] */
    const char *const *envp; /* NULL-terminated */
    uid_t uid;
    gid_t gid;
    bool host_net; /* stay in the server's net namespace: no lo setup, no /sys remount */
    /* What the go brings as the command's stdin: nothing (it keeps /dev/null), a pipe's read
     * end, or a terminal's slave, which becomes its controlling terminal and stdin, stdout and
     * stderr at once. */
    enum shimproto_input { SHIMPROTO_INPUT_NONE, SHIMPROTO_INPUT_PIPE, SHIMPROTO_INPUT_TTY } input;
};

/* Serialises spec into a malloc'd blob (*ret_buf, *ret_len). 0, -EINVAL (a NULL field or an
 * argument over 1 MiB), -E2BIG (more than 64 MiB in all), -ENOMEM. Pure. */
int shimproto_spec_pack(const struct shimproto_spec *spec, void **ret_buf, size_t *ret_len);
/* The most slots of vec shimproto_spec_parse() needs for a blob of len bytes: each string of
 * argv and envp takes at least 5 bytes of it, and each vector one NULL more. */
#define SHIMPROTO_SPEC_VEC_MAX(len) ((len) / 5 + 2)
/* Parses a blob made by shimproto_spec_pack() in place: *ret's strings point into buf, its argv
 * and envp into vec (cap slots); keep both alive. Allocates nothing and takes no lock: the
 * command's process parses its spec in the shim's memory (core/shim.c). 0, -EBADMSG (malformed,
 * truncated or trailing bytes), -ENOBUFS (vec has fewer slots than argv and envp need with their
 * NULLs; never with SHIMPROTO_SPEC_VEC_MAX(len)). Pure. */
int shimproto_spec_parse(const void *buf, size_t len, const char **vec, size_t cap,
                         struct shimproto_spec *ret);

/* ---- the shim template (runjob shim net=none --template, core/shim.h): a process the pool
 * thread starts once, with no namespaces of its own, that builds the seccomp filter once and
 * starts each pooled shim with clone3(CLONE_PARENT) so that it is the server's child, not the
 * template's (sharing the template's memory where that is safe: core/shim.c). Its fds are those of
 * a shim, SHIMPROTO_FD_SYNC being its control socket (SEQPACKET). Per shim:
 *   - server -> template: a request, struct shimproto_template_req with the shim's fds 0..4 in
 *     SHIMPROTO_FD_* order, then the cgroup's dir fd if SHIMPROTO_TEMPLATE_CGROUP
 *     (CLONE_INTO_CGROUP);
 *   - template -> server: a reply, struct shimproto_template_reply: the shim's pid with its
 *     pidfd (err == 0), or the clone's error (or EBADMSG for a request it cannot serve) with no
 *     fd. Any other reply is a broken template.
 * The shim then runs as an exec'd private-network shim does from its filter on. EOF on the
 * control socket ends the template. */
#define SHIMPROTO_TEMPLATE_ARG    "--template"
#define SHIMPROTO_TEMPLATE_CGROUP 1u
/* The shim will be kept out of its job's memory cgroup (cg_memory_apart), so it may share the
 * template's memory even where the template could not make its OOM score -1000. */
#define SHIMPROTO_TEMPLATE_MEMORY_APART 2u
struct shimproto_template_req {
    uint32_t flags; /* SHIMPROTO_TEMPLATE_* */
};
struct shimproto_template_reply {
    int32_t pid;
    int32_t err; /* positive errno of the clone, or 0 */
};

/* Server: sends a request for one shim with fds (its 0..4) and, if cgroup_fd >= 0, the cgroup
 * to clone it into; memory_apart: SHIMPROTO_TEMPLATE_MEMORY_APART. 0 or -errno, as
 * shimproto_send_prep. */
int shimproto_send_template_req(int sock, const int fds[SHIMPROTO_FD_COUNT], int cgroup_fd,
                                bool memory_apart);
/* Template: waits for a request on sock. 1 with fds (close-on-exec, the caller's),
 * *ret_cgroup_fd (-1 without SHIMPROTO_TEMPLATE_CGROUP) and *ret_memory_apart (the flag); 0 at
 * EOF; -EBADMSG for a request it
 * cannot serve, to be answered EBADMSG (another size, unknown flags, too many or too few fds
 * for them: whatever came is closed); or -errno. */
int shimproto_recv_template_req(int sock, int fds[SHIMPROTO_FD_COUNT], int *ret_cgroup_fd,
                                bool *ret_memory_apart);
/* Template: replies {pid, err}, with pidfd attached if err == 0. 0 or -errno. */
int shimproto_send_template_reply(int sock, pid_t pid, int pidfd, int err);
/* Server: receives a reply. 1 with *ret filled and *ret_pidfd the pidfd (close-on-exec, the
 * caller's) or -1 if none came; 0 at EOF; -EBADMSG for a message of another size or with more
 * than one fd (closed); or -errno. The caller judges the reply (see above). */
int shimproto_recv_template_reply(int sock, struct shimproto_template_reply *ret, int *ret_pidfd);

/* ---- fd passing on a SEQPACKET socket, under the messages above */

/* Sends one message of len bytes on sock with fd attached (SCM_RIGHTS; none for fd < 0),
 * retrying on EINTR; never raises SIGPIPE. 0 or -errno (-EPIPE, -ECONNRESET: the peer closed).
 * Thread-safe. */
int shimproto_send_fd(int sock, const void *msg, size_t len, int fd);
/* Receives one message of exactly len (> 0) bytes on sock into msg, with the fd that came with
 * it, retrying on EINTR. Returns 1 for a message, with *ret_fd the fd (close-on-exec, the
 * caller's to close), or *ret_fd -1 when none came intact (none attached, or more than one:
 * those are closed); 0 at EOF; -EBADMSG for a message of another length (any fd that came with
 * it is closed); or -errno. Thread-safe. */
int shimproto_recv_fd(int sock, void *msg, size_t len, int *ret_fd);

/* Sends one message of len bytes on sock with the n (0..SHIMPROTO_FDS_MAX) fds attached in one
 * SCM_RIGHTS. 0 or -errno, as shimproto_send_fd. Thread-safe. */
#define SHIMPROTO_FDS_MAX 8
int shimproto_send_fds(int sock, const void *msg, size_t len, const int *fds, size_t n);
/* Receives one message of exactly len bytes with up to max (1..SHIMPROTO_FDS_MAX) fds attached
 * into fds (close-on-exec, the caller's), *ret_n their count (0: none came). 1 for such a
 * message, 0 at EOF, -EBADMSG for another length or more than max fds (whatever came is
 * closed), or -errno. Thread-safe. */
int shimproto_recv_fds(int sock, void *msg, size_t len, int *fds, size_t max, size_t *ret_n);
