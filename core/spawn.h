#pragma once
/* Starting a job's shim: the spec blob handed to it, the fds it finds at fixed numbers, the
 * steps it runs (and their names, for error messages), and the clone3 that starts it in new
 * namespaces (ARCHITECTURE.md "Process tree of one job").
 *
 * Protocol between the server (parent) and the shim:
 *   - the shim starts with fds 0..4 set as SPAWN_FD_* below, nothing else open, and argv
 *     {"runjob", "shim", SPAWN_NET_NONE or SPAWN_NET_HOST};
 *   - it does the steps that need no job (signals, the seccomp filter, and for a private
 *     network / private, a fresh /proc and /sys, lo up), then waits for one struct
 *     spawn_prep_msg from the parent on SPAWN_FD_SYNC (a SEQPACKET socket): the job's id, uid
 *     and gid. Before sending it the parent attaches the shim to the job's cgroups (unless
 *     clone3 put it there), so no job code ever runs outside them. Because nothing before the
 *     prep depends on the job, the parent may start shims ahead of time (job.c's pool), and
 *     because the prep holds only what a job made ahead already knows, it may send it before
 *     the Start (job_cgroup_reserve). EOF instead of the prep (the parent died, or dropped a
 *     pooled shim) makes it exit;
 *   - on the prep the shim roots its cgroup namespace, sets the hostname and forks the
 *     command's process, which sets its group, signals, fds, credentials, no_new_privs and the
 *     seccomp filter, then waits itself for one struct spawn_sync_msg on SPAWN_FD_SYNC that
 *     carries the spec as a memfd (SCM_RIGHTS; spawn_spec_pack/parse) = the go; a spec for
 *     another id, user or network is refused. EOF instead of the go makes it exit;
 *   - on a failed step the shim (or the command's process before exec) sends
 *     {step, errno} on SPAWN_FD_SYNC and _exit(127)s;
 *   - the command inherits SPAWN_FD_SYNC close-on-exec: the parent reads EOF once the command
 *     has been exec'd;
 *   - when the command ends, the shim writes one struct spawn_status on SPAWN_FD_STATUS and
 *     exits (as PID 1 of the job's pid namespace, taking every other job process with it). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Where the shim finds its fds. 0..2 are also the command's stdin (/dev/null), stdout, stderr. */
enum {
    SPAWN_FD_STDIN = 0,
    SPAWN_FD_STDOUT = 1,
    SPAWN_FD_STDERR = 2,
    SPAWN_FD_SYNC = 3,
    SPAWN_FD_STATUS = 4,
    SPAWN_FD_COUNT = 5,
};

/* The shim's argv[2]: the network the job gets (the shim sets a private one up before the spec
 * arrives; a spec that asks otherwise is refused). */
#define SPAWN_NET_NONE "net=none"
#define SPAWN_NET_HOST "net=host"

/* The shim's steps. Values travel between processes of one binary. The shim: SIGNALS,
 * SECCOMP_BUILD, MOUNT_PRIVATE, MOUNT_PROC, MOUNT_SYS, LOOPBACK (these two for a private
 * network), MOUNT_TMP, WAIT_PREP, CGROUP_NS, HOSTNAME, FORK; then the command's process: SETPGID,
 * SIGNAL_RESET, FDS, CAPBSET, SETGROUPS, SETGID, SETUID, CAPS, NO_NEW_PRIVS, SECCOMP, WAIT_GO,
 * READ_SPEC, CHDIR, EXEC. */
enum shim_step {
    SHIM_STEP_NONE = 0,
    SHIM_STEP_EXEC_SHIM,     /* parent's child: execve of the shim binary */
    SHIM_STEP_READ_SPEC,     /* read and parse the spec blob that came with the go */
    SHIM_STEP_SIGNALS,       /* block forwarded signals, open the signalfd */
    SHIM_STEP_WAIT_GO,       /* the command's process: wait for the parent's go + spec */
    SHIM_STEP_CGROUP_NS,     /* unshare the cgroup namespace, rooted at the job cgroup */
    SHIM_STEP_MOUNT_PRIVATE, /* make / rprivate: no mount event leaks either way */
    SHIM_STEP_MOUNT_PROC,    /* a fresh /proc for the new pid namespace */
    SHIM_STEP_MOUNT_SYS,     /* a fresh read-only /sys for the new net namespace */
    SHIM_STEP_LOOPBACK,      /* bring lo up (private netns only) */
    SHIM_STEP_HOSTNAME,      /* first block of the job id */
    SHIM_STEP_SECCOMP_BUILD, /* build the filter before forking */
    SHIM_STEP_FORK,          /* fork the command's process */
    /* from here on, in the command's process */
    SHIM_STEP_SETPGID,      /* own process group: the shim forwards signals to it */
    SHIM_STEP_SIGNAL_RESET, /* default dispositions, empty mask */
    SHIM_STEP_FDS,          /* close every fd but 0, 1, 2 */
    SHIM_STEP_CAPBSET,      /* empty the capability bounding set */
    SHIM_STEP_SETGROUPS,
    SHIM_STEP_SETGID,
    SHIM_STEP_SETUID,
    SHIM_STEP_CAPS, /* clear effective, permitted, inheritable and ambient caps */
    SHIM_STEP_CHDIR,
    SHIM_STEP_NO_NEW_PRIVS,
    SHIM_STEP_SECCOMP,
    SHIM_STEP_EXEC,
    SHIM_STEP_WAIT_PREP, /* wait for the parent's prep (attached to the cgroups): id, uid, gid */
    SHIM_STEP_MOUNT_TMP, /* the job's own /tmp, /var/tmp, /dev/shm, /run/lock (and /run) */
    SHIM_STEP__MAX,
};

/* "mount /proc", ... ; "unknown step" outside the enum. */
const char *spawn_step_name(int step);

/* Sent on SPAWN_FD_SYNC, parent -> shim, first: the job the shim is for (no fd attached). */
#define SPAWN_ID_MAX 128 /* cg_id_is_valid's bound */
struct spawn_prep_msg {
    uint32_t uid;
    uint32_t gid;
    char id[SPAWN_ID_MAX + 1]; /* NUL-terminated */
};

/* Sent on SPAWN_FD_SYNC: parent -> command's process {0, 0} + the spec memfd (SCM_RIGHTS) = go;
 * shim or command's process -> parent {step, errno} = failed. */
struct spawn_sync_msg {
    int32_t step;
    int32_t err; /* positive errno */
};

enum spawn_exit_kind {
    SPAWN_EXITED = 1,
    SPAWN_SIGNALED = 2,
};
/* Written once on SPAWN_FD_STATUS when the command ended. */
struct spawn_status {
    int32_t kind; /* enum spawn_exit_kind */
    int32_t code; /* exit code or signal number */
};

/* What the shim needs to know. Strings are NUL-terminated; argv[0] is what the command sees as
 * its name. */
struct spawn_spec {
    const char *id;
    const char *path; /* absolute path to exec */
    const char *cwd;
    const char *const *argv; /* NULL-terminated, at least argv[0] */
    const char *const *envp; /* NULL-terminated */
    uid_t uid;
    gid_t gid;
    bool host_net; /* stay in the server's net namespace: no lo setup, no /sys remount */
};

/* Serialises spec into a malloc'd blob (*ret_buf, *ret_len). 0, -EINVAL (a NULL field or an
 * argument over 1 MiB), -E2BIG (more than 64 MiB in all), -ENOMEM. Pure. */
int spawn_spec_pack(const struct spawn_spec *spec, void **ret_buf, size_t *ret_len);
/* Parses a blob made by spawn_spec_pack(). *ret is one malloc'd block whose strings point into
 * buf (keep buf alive; free(*ret) when done). 0, -EBADMSG (malformed, truncated or trailing
 * bytes), -ENOMEM. Pure. */
int spawn_spec_parse(const void *buf, size_t len, struct spawn_spec **ret);

/* Turns a failed step into plain words in buf, e.g. "'/bin/nope': no such file or directory",
 * "'/etc/passwd': not executable", "working directory '/x': permission denied". path is the
 * command (for EXEC); is_dir/no_exec_bits refine EACCES (the caller stat()ed path). Pure. */
void spawn_format_error(int step, int err, const char *path, const char *cwd, bool is_dir,
                        bool no_exec_bits, char *buf, size_t len);

/* Sends one message of len bytes on sock (a SEQPACKET socket) with fd attached (SCM_RIGHTS;
 * none for fd < 0), retrying on EINTR; never raises SIGPIPE. 0 or -errno (-EPIPE, -ECONNRESET: the
 * peer closed). Thread-safe. */
int spawn_send_fd(int sock, const void *msg, size_t len, int fd);
/* Receives one message of exactly len (> 0) bytes on sock into msg, with the fd that came with
 * it, retrying on EINTR. Returns 1 for a message, with *ret_fd the fd (close-on-exec, the
 * caller's to close), or *ret_fd -1 when none came intact (none attached, or more than one:
 * those are closed); 0 at EOF; -EBADMSG for a message of another length (any fd that came with
 * it is closed); or -errno.
 * Thread-safe. */
int spawn_recv_fd(int sock, void *msg, size_t len, int *ret_fd);

/* Sends one message of len bytes on sock with the n (0..SPAWN_FDS_MAX) fds attached in one
 * SCM_RIGHTS. 0 or -errno, as spawn_send_fd. Thread-safe. */
#define SPAWN_FDS_MAX 8
int spawn_send_fds(int sock, const void *msg, size_t len, const int *fds, size_t n);
/* Receives one message of exactly len bytes with up to max (1..SPAWN_FDS_MAX) fds attached into
 * fds (close-on-exec, the caller's), *ret_n their count (0: none came). 1 for such a message, 0
 * at EOF, -EBADMSG for another length or more than max fds (whatever came is closed), or -errno.
 * Thread-safe. */
int spawn_recv_fds(int sock, void *msg, size_t len, int *fds, size_t max, size_t *ret_n);

/* The shim template (runjob shim net=none --template): a process the pool thread starts once,
 * with no namespaces of its own, that builds the seccomp filter once and forks each pooled shim
 * with clone3(CLONE_PARENT) so that it is the server's child, not the template's. Its fds are
 * those of a shim, SPAWN_FD_SYNC being its control socket (SEQPACKET). Per shim:
 *   - server -> template: struct spawn_template_req with the shim's fds 0..4 in SPAWN_FD_*
 *     order, then the cgroup's dir fd if SPAWN_TEMPLATE_CGROUP (CLONE_INTO_CGROUP);
 *   - template -> server: struct spawn_template_reply, with the shim's pidfd if err == 0.
 * The shim then runs as an exec'd private-network shim does from its filter on. EOF on the
 * control socket ends the template. */
#define SPAWN_TEMPLATE_ARG    "--template"
#define SPAWN_TEMPLATE_CGROUP 1u
struct spawn_template_req {
    uint32_t flags; /* SPAWN_TEMPLATE_* */
};
struct spawn_template_reply {
    int32_t pid;
    int32_t err; /* positive errno of the clone, or 0 */
};

struct spawn_args {
    const char *exe;         /* the runjob binary */
    char *const *argv;       /* its argv: {"runjob", "shim", SPAWN_NET_*, NULL} */
    int fds[SPAWN_FD_COUNT]; /* parent fds that become 0..4 in the shim */
    unsigned long ns_flags;  /* CLONE_NEW* */
    int cgroup_fd;           /* >= 0: CLONE_INTO_CGROUP (cgroup v2) */
};

/* clone3()s the shim with the namespaces asked, PR_SET_PDEATHSIG=SIGKILL, fds placed, and
 * execs it. Returns 0 with the child's host pid and a pidfd (O_CLOEXEC), or -errno. The child
 * is not the caller's thread's child for wait purposes but the process's (no exit signal: reap
 * it with waitid(P_PIDFD, ..., WEXITED | __WALL)). Its pdeathsig fires when the calling THREAD
 * exits: call from a thread that lives as long as the job. An execve failure of the shim is
 * reported as {SHIM_STEP_EXEC_SHIM, errno} on fds[SPAWN_FD_SYNC]. Every fd the caller opened
 * must be close-on-exec (the child keeps only fds 0..4). Thread-safe. */
int spawn_clone(const struct spawn_args *a, pid_t *ret_pid, int *ret_pidfd);
