/* The shim (shim.h): PID 1 of a job's namespaces, and the template that starts pooled shims.
 *
 * The steps run top to bottom in the order core/shimproto.h gives (enum shimproto_step): those
 * that do not depend on the job first, then the prep (the job's id and user: the command's
 * process is made up to its exec), then the go with the spec, which that process reads itself.
 * A failed step sends the failure {step, errno} to the server and _exit(127)s: die-on-error is
 * allowed here, and only here (docs/STYLE.md "The shim"): the process is short-lived and
 * single-threaded. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "seccomp.h"
#include "shimproto.h"
#include "tsan.h"

/* Signals a stop (or a user) sends to the shim and the shim passes on to the command's group.
 * Synchronous signals (SEGV, BUS, ...) stay unblocked: they are the shim's own. */
static const int forwarded[] = {SIGHUP,  SIGINT,  SIGQUIT,  SIGTERM, SIGUSR1,
                                SIGUSR2, SIGALRM, SIGWINCH, SIGCONT, SIGTSTP};

__attribute__((noreturn)) static void die(int step, int err)
{
    (void)shimproto_send_failure(SHIMPROTO_FD_SYNC, step, err);
    _exit(127);
}

/* The spec's room in the command's memory (struct command_mem), mapped with its stack: a blob
 * and its argv and envp pointers (SHIMPROTO_SPEC_VEC_MAX), up to about 1.4 MiB, which holds the
 * largest spec a request may make (RPC_MAX_ARGS_BYTES and RPC_MAX_ENV_BYTES: ~270 KiB of blob,
 * ~430 KiB of pointers); a larger one gets a mapping of its own. Untouched pages cost nothing. */
#define SPEC_AREA_SIZE (2u << 20)
/* shimproto_spec_pack's 64 MiB, and some slack for the blob's framing. */
#define SPEC_BLOB_MAX ((64u << 20) + 4096)

/* Memory for the command's process, which runs in the shim's (start_command) and must not use
 * the shim's heap: killed inside malloc, or anywhere holding a lock of libc's, it would leave
 * that lock taken in the shim, which would hang at its next malloc. */
struct command_mem {
    void *stack_top;
    char *spec_area; /* SPEC_AREA_SIZE bytes */
    /* Mapped by the command's process for a spec too large for spec_area (else NULL), and
     * unmapped by the shim once that process has exec'd. In memory shared with the template, a
     * shim killed before that leaves it mapped there: no request makes a spec that large. */
    void *spec_map;
    size_t spec_map_len;
};

/* Reads the whole spec memfd (it came with the go message) into memory mapped without malloc,
 * closes it, and parses it there. Copied rather than mapped: the parsed strings must not change
 * under the exec. */
static void read_spec(int fd, struct command_mem *mem, struct shimproto_spec *ret)
{
    struct stat st;
    size_t len, vec_off, cap, off = 0;
    char *buf = mem->spec_area;
    int r;

    if (fstat(fd, &st) < 0)
        die(SHIMPROTO_STEP_READ_SPEC, errno);
    if (st.st_size <= 0 || st.st_size > SPEC_BLOB_MAX)
        die(SHIMPROTO_STEP_READ_SPEC, EBADMSG);
    len = (size_t)st.st_size;
    vec_off = (len + sizeof(char *) - 1) & ~(sizeof(char *) - 1);
    cap = SHIMPROTO_SPEC_VEC_MAX(len);
    if (vec_off + cap * sizeof(char *) > SPEC_AREA_SIZE) {
        /* mmap(2) is a bare syscall in libc: no lock taken. */
        buf = mmap(NULL, vec_off + cap * sizeof(char *), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (buf == MAP_FAILED)
            die(SHIMPROTO_STEP_READ_SPEC, errno);
        mem->spec_map = buf;
        mem->spec_map_len = vec_off + cap * sizeof(char *);
    }
    while (off < len) {
        ssize_t n = pread(fd, buf + off, len - off, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die(SHIMPROTO_STEP_READ_SPEC, n < 0 ? errno : EBADMSG);
        off += (size_t)n;
    }
    (void)close(fd);
    r = shimproto_spec_parse(buf, len, (const char **)(void *)(buf + vec_off), cap, ret);
    if (r < 0)
        die(SHIMPROTO_STEP_READ_SPEC, -r);
}

/* Writes value to /proc/self/oom_score_adj. 0 or -errno. */
static int write_oom_score_adj(const char *value)
{
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -errno;
    n = write(fd, value, strlen(value));
    n = n < 0 ? -errno : 0;
    (void)close(fd);
    return (int)n;
}

/* Every disposition back to SIG_DFL, the realtime signals glibc keeps for itself (32, 33)
 * included: glibc's signal() and sigaction() refuse those, and SIG_IGN survives exec, so a
 * server started with one of them ignored passed it on to every job. An inherited SIG_IGN of
 * SIGCHLD would also make the kernel reap the command itself. SIGKILL and SIGSTOP fail: fine.
 * 64 syscalls: done once per exec'd shim or template, never per forked process. */
static void reset_signal_dispositions(void)
{
    struct {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)(void);
        uint64_t mask;
    } dfl = {.handler = SIG_DFL};

    for (long sig = 1; sig <= 64; sig++)
        (void)syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(dfl.mask));
}

/* The shim's signals: the dispositions were reset before (shim_run, or once in the template,
 * whose forks inherit them); the forwarded ones and SIGCHLD blocked and read on a signalfd. */
/* Empties the capability bounding set, which every process forked from here inherits: it
 * keeps a root job (or a setuid-root binary, were no_new_privs ever lifted) from gaining any
 * capability at exec. It limits only what an exec may grant, not the capabilities this process
 * has, and neither a shim nor the template execs anything; so it is done once per exec'd shim
 * or template (each PR_CAPBSET_DROP makes new credentials), never per job. Needs CAP_SETPCAP.
 * Returns 0 or -errno. */
static int drop_bounding_set(void)
{
    for (int cap = 0; cap < 64; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL)
                return 0; /* past the last capability this kernel knows */
            return -errno;
        }
    return 0;
}

static int setup_signals(void)
{
    sigset_t set;
    int fd;

    sigemptyset(&set);
    for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
        sigaddset(&set, forwarded[i]);
    sigaddset(&set, SIGCHLD);
    /* PID 1 of a namespace only receives signals it handles or blocks: blocked + signalfd. */
    if (sigprocmask(SIG_SETMASK, &set, NULL) < 0)
        die(SHIMPROTO_STEP_SIGNALS, errno);
    fd = signalfd(-1, &set, SFD_CLOEXEC);
    if (fd < 0)
        die(SHIMPROTO_STEP_SIGNALS, errno);
    return fd;
}

/* Waits for the server's go; returns the spec memfd that came with it, and the stdin that came
 * after it in *ret_stdin_fd (-1: none). The verdict socket that came with them takes the place
 * of SHIMPROTO_FD_SYNC (close-on-exec), so that what follows reports there. */
static int wait_go(int *ret_stdin_fd)
{
    int fd = -1, verdict = -1, r;

    r = shimproto_recv_go(SHIMPROTO_FD_SYNC, &fd, &verdict, ret_stdin_fd);
    if (r == 0)
        _exit(127); /* the server is gone (or dropped this pooled shim): nobody to run a job for */
    if (verdict >= 0) {
        if (dup3(verdict, SHIMPROTO_FD_SYNC, O_CLOEXEC) < 0)
            die(SHIMPROTO_STEP_WAIT_GO, errno);
        (void)close(verdict);
    }
    if (r < 0)
        die(SHIMPROTO_STEP_WAIT_GO, -r); /* on the verdict socket, if one came */
    return fd;
}

static void loopback_up(void)
{
    struct ifreq ifr;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        die(SHIMPROTO_STEP_LOOPBACK, errno);
    memset(&ifr, 0, sizeof(ifr));
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        die(SHIMPROTO_STEP_LOOPBACK, errno);
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
        die(SHIMPROTO_STEP_LOOPBACK, errno);
    (void)close(fd);
}

static void set_hostname(const char *id)
{
    size_t n = strcspn(id, "-");

    if (n == 0 || n > 64)
        n = strlen(id) < 64 ? strlen(id) : 64;
    if (sethostname(id, n) < 0)
        die(SHIMPROTO_STEP_HOSTNAME, errno);
}

/* Waits for the server's prep: the job's id, user and group, sent once the shim is in the job's
 * cgroups (on v1 all but the memory one, whose cgroup.procs comes with it: *ret_memory_fd). */
static void wait_prep(struct shimproto_prep *ret, int *ret_memory_fd)
{
    int r = shimproto_recv_prep(SHIMPROTO_FD_SYNC, ret, ret_memory_fd);

    if (r == 0)
        _exit(127); /* the server is gone (or dropped this pooled shim): nobody to run a job for */
    if (r < 0)
        die(SHIMPROTO_STEP_WAIT_PREP, -r);
}

/* The job's own resource limits, not the server's: it raised its open-files limit to the hard
 * one for itself (applets/serve.c), which a job would otherwise inherit, hard limit included.
 * Open files: a login's soft 1024 (select() cannot watch higher fds), and a hard 4096 the job
 * may raise its soft limit to. Core files: none, neither soft nor hard. Where core_pattern names
 * a file, a dump lands in the job's working directory, which may be a host folder; where it
 * names a pipe, the handler (systemd-coredump, apport) runs as root on the host and stores the
 * dump outside every limit of the job's, and it stores nothing when the dumping process's limit,
 * which it is given, is 0. Never above the server's own hard limits: those are the admin's
 * ceiling for everything the server starts, and lowering needs no privilege, so this runs with
 * the job's credentials already. */
static void set_rlimits(void)
{
    static const struct {
        int resource;
        struct rlimit rl;
    } limits[] = {
        {RLIMIT_NOFILE, {1024, 4096}},
        {RLIMIT_CORE, {0, 0}},
    };

    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        struct rlimit rl = limits[i].rl, cur;

        if (getrlimit(limits[i].resource, &cur) < 0)
            die(SHIMPROTO_STEP_RLIMITS, errno);
        if (rl.rlim_max > cur.rlim_max)
            rl.rlim_max = cur.rlim_max;
        if (rl.rlim_cur > rl.rlim_max)
            rl.rlim_cur = rl.rlim_max;
        if (setrlimit(limits[i].resource, &rl) < 0)
            die(SHIMPROTO_STEP_RLIMITS, errno);
    }
}

/* The go brought the command's stdin: a pipe's read end, or a terminal's slave, which becomes
 * the controlling terminal of the command's session and its stdout and stderr too (its output
 * pipes are then left unused, and the server reads the terminal). */
static void take_stdin(int fd, bool tty)
{
    if (tty && ioctl(fd, TIOCSCTTY, 0) < 0)
        die(SHIMPROTO_STEP_FDS, errno);
    for (int i = 0; i <= (tty ? 2 : 0); i++)
        if (dup2(fd, i) < 0)
            die(SHIMPROTO_STEP_FDS, errno);
    (void)close(fd);
}

/* The command's process, from the clone to its exec: never returns. Everything that does not
 * depend on the command comes before the go (for a job made ahead, before its Start even
 * arrives): its group, signals, fds, resource limits, credentials, no_new_privs and the seccomp
 * filter. Then it waits for the go itself, reads the spec, enters the working directory and
 * execs.
 *
 * It runs in the shim's memory (CLONE_VM) while the shim is suspended (CLONE_VFORK), on a stack
 * of its own, with its own fd table, signal dispositions and credentials (start_command). From
 * the clone to the exec it allocates nothing and takes no lock of libc's (no malloc, no stdio):
 * were it killed holding one, the shim would find it taken. Its memory is struct command_mem,
 * mapped beforehand. errno is shared (same TLS): the shim reads it after the clone only when
 * the clone failed. Credentials change through raw syscalls (this process's, whatever glibc
 * believes); nothing here calls raise(), abort() or pthread_* (libc's cached TID is the
 * shim's); a failure is die(): write + _exit of this child alone. */
__attribute__((noreturn)) static void command_main(const struct shimproto_prep *prep, int memory_fd,
                                                   struct scmp_filter *filter, bool host_net,
                                                   struct command_mem *mem)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    struct shimproto_spec spec;
    sigset_t none;
    int r, in = -1;

    /* A shim kept out of the job's memory cgroup (cg_memory_apart): the command's process joins
     * it, then roots a cgroup namespace of its own there, so that the job sees "/" in every
     * hierarchy. Until its exec it shares the shim's memory, whose pages stay charged to their
     * owner's cgroup, not the job's; the OOM killer passes over a vfork child. */
    if (memory_fd >= 0) {
        if (write(memory_fd, "0", 1) != 1)
            die(SHIMPROTO_STEP_MEMORY_CGROUP, errno);
        if (unshare(CLONE_NEWCGROUP) < 0)
            die(SHIMPROTO_STEP_COMMAND_CGROUP_NS, errno);
    }

    /* A session of its own, not only a process group: a job must not reach the server's
     * controlling terminal through /dev/tty (the server may run in an admin's terminal), and a
     * job given a terminal makes it its controlling one, which only a session leader may. */
    if (setsid() < 0)
        die(SHIMPROTO_STEP_SETSID, errno);

    /* The dispositions are the shim's: all default (shim_run, shim_run_template), and the shim
     * sets no handler. Only the mask is to clear. */
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
        die(SHIMPROTO_STEP_SIGNAL_RESET, errno);

    /* 0..2 stay; the sync socket stays for the go, which replaces it with the verdict socket
     * that exec closes (close-on-exec): how the server learns the exec succeeded. The signalfd
     * and the status pipe go. */
    _Static_assert(SHIMPROTO_FD_SYNC == 3, "fds 3 .. SHIMPROTO_FD_SYNC - 1 would need closing too");
    if (close_range(SHIMPROTO_FD_SYNC + 1, ~0U, 0) < 0)
        die(SHIMPROTO_STEP_FDS, errno);

    /* The shim's -1000 (the template's, inherited) would keep the job's processes from the OOM
     * killer, and let them ask for it back. Written while root, the floor goes to 0 as well; a
     * write from a vfork child is its own, not its memory's sharers'. */
    if ((r = write_oom_score_adj("0")) < 0)
        die(SHIMPROTO_STEP_OOM_SCORE, -r);
    /* The bounding set is empty already: the shim's, inherited (drop_bounding_set). */
    /* Raw syscalls: this process's credentials and nothing else, whatever glibc believes. */
    if (syscall(SYS_setgroups, 0, NULL) < 0)
        die(SHIMPROTO_STEP_SETGROUPS, errno);
    if (syscall(SYS_setresgid, (long)prep->gid, (long)prep->gid, (long)prep->gid) < 0)
        die(SHIMPROTO_STEP_SETGID, errno);
    if (syscall(SYS_setresuid, (long)prep->uid, (long)prep->uid, (long)prep->uid) < 0)
        die(SHIMPROTO_STEP_SETUID, errno);
    /* setuid to non-root already cleared them; a root job needs it done by hand. */
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capset, &hdr, data) < 0)
        die(SHIMPROTO_STEP_CAPS, errno);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        die(SHIMPROTO_STEP_CAPS, errno);
    set_rlimits();
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        die(SHIMPROTO_STEP_NO_NEW_PRIVS, errno);
    /* After the credentials: the filter would bind those syscalls too. What follows (the go,
     * the spec, chdir, exec) is what any program may do. */
    r = scmp_filter_load(filter);
    if (r < 0)
        die(SHIMPROTO_STEP_SECCOMP, -r);

    read_spec(wait_go(&in), mem, &spec);
    /* The go must be for the job this process was made for, with the stdin its spec says. */
    if (spec.host_net != host_net || spec.uid != prep->uid || spec.gid != prep->gid ||
        strcmp(spec.id, prep->id) != 0 || (spec.input == SHIMPROTO_INPUT_NONE) != (in < 0))
        die(SHIMPROTO_STEP_READ_SPEC, EINVAL);
    if (in >= 0)
        take_stdin(in, spec.input == SHIMPROTO_INPUT_TTY);
    if (chdir(spec.cwd) < 0)
        die(SHIMPROTO_STEP_CHDIR, errno);
    execve(spec.path, (char *const *)spec.argv, (char *const *)spec.envp);
    die(SHIMPROTO_STEP_EXEC, errno);
}

/* The directories anyone may write to get an empty tmpfs of the job's own: every job runs as the
 * same user by default, and without this one job read, changed or removed another's files there
 * (or left them behind, filling the host), and met host processes' sockets. Their pages are
 * charged to the job's memory cgroup (the writer's) and go with its mount namespace. Without a
 * network, /run is replaced too: its sockets (the system bus, ...) would be a way out; /run/lock
 * then lives in the new one. A directory the host does not have is skipped. */
static void mount_private_dirs(bool host_net)
{
    static const char *const dirs[] = {"/tmp", "/var/tmp", "/run/lock"};
    const unsigned long flags = MS_NOSUID | MS_NODEV;
    struct stat st;

    if (!host_net && stat("/run", &st) == 0 && S_ISDIR(st.st_mode)) {
        if (mount("tmpfs", "/run", "tmpfs", flags | MS_NOEXEC, "mode=0755") < 0)
            die(SHIMPROTO_STEP_MOUNT_TMP, errno);
        if (mkdir("/run/lock", 01777) < 0 || chmod("/run/lock", 01777) < 0)
            die(SHIMPROTO_STEP_MOUNT_TMP, errno);
    }
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        if (!host_net && strcmp(dirs[i], "/run/lock") == 0)
            continue; /* made in the new /run above */
        if (stat(dirs[i], &st) < 0 || !S_ISDIR(st.st_mode))
            continue;
        if (mount("tmpfs", dirs[i], "tmpfs", flags, "mode=1777") < 0)
            die(SHIMPROTO_STEP_MOUNT_TMP, errno);
    }
}

/* Set in the template: its shims start in a mount namespace already without the mounts they
 * cover (mounts_detached), and with /dev built (dev_built). */
static bool mounts_detached, dev_built;
/* Set in the template: its oom_score_adj is -1000, and its shims' with it. */
static bool oom_protected;

/* A /dev instead of the host's: the harmless nodes (bind mounts of the host's null, zero, full,
 * random, urandom, tty, those it has), the mount points of a job's devpts and shm and the usual
 * links, on a tmpfs made read-only once built. The host's nodes are opened (O_PATH) before the
 * new tmpfs covers /dev, and bound from those fds through /proc. Nothing in it is a job's, so
 * the template builds it once and its shims get copies of its mounts; each job then mounts its
 * own devpts and shm on it (mount_job_dev). 0 or -errno, with /dev as it was. */
static int build_dev(void)
{
    static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
    static const char *const links[][2] = {
        {"pts/ptmx", "/dev/ptmx"},          {"/proc/self/fd", "/dev/fd"},
        {"/proc/self/fd/0", "/dev/stdin"},  {"/proc/self/fd/1", "/dev/stdout"},
        {"/proc/self/fd/2", "/dev/stderr"},
    };
    const unsigned long flags = MS_NOSUID | MS_NOEXEC;
    int held[sizeof(nodes) / sizeof(nodes[0])];
    char path[64];
    int fd, e = 0;

    for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
        struct stat st;
        (void)snprintf(path, sizeof(path), "/dev/%s", nodes[i]);
        held[i] = open(path, O_PATH | O_CLOEXEC);
        /* A host without it (a container's /dev): the job goes without too. */
        if (held[i] >= 0 && (fstat(held[i], &st) < 0 || !S_ISCHR(st.st_mode))) {
            (void)close(held[i]);
            held[i] = -1;
        }
    }
    if (mount("tmpfs", "/dev", "tmpfs", flags, "mode=0755,size=64k") < 0) {
        e = -errno;
        goto out;
    }
    for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]) && !e; i++) {
        char from[40];
        if (held[i] < 0)
            continue;
        (void)snprintf(path, sizeof(path), "/dev/%s", nodes[i]);
        (void)snprintf(from, sizeof(from), "/proc/self/fd/%d", held[i]);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 || close(fd) < 0 || mount(from, path, NULL, MS_BIND, NULL) < 0)
            e = -errno;
    }
    if (!e && (mkdir("/dev/pts", 0755) < 0 || mkdir("/dev/shm", 01777) < 0))
        e = -errno;
    for (size_t i = 0; i < sizeof(links) / sizeof(links[0]) && !e; i++)
        if (symlink(links[i][0], links[i][1]) < 0)
            e = -errno;
    /* Shared by every job of the template: none may leave anything in it (a job run as root
     * owns it). The nodes are other mounts, and stay writable. */
    if (!e && mount(NULL, "/dev", NULL, MS_REMOUNT | MS_RDONLY | flags, "mode=0755,size=64k") < 0)
        e = -errno;
    if (e)
        (void)umount2("/dev", MNT_DETACH);
out:
    for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++)
        if (held[i] >= 0)
            (void)close(held[i]);
    return e;
}

/* The built /dev covers the host's, which would still be copied into every job's namespace (and
 * listed in its mountinfo): the built tree is cloned, both are detached, and the clone takes
 * their place. A failure before the detach leaves the stack as it was (0); one after it leaves
 * no /dev at all (-errno): the template cannot serve. */
static int lift_dev(void)
{
    int tree = open_tree(AT_FDCWD, "/dev", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    int e = 0;

    if (tree < 0)
        return 0;
    /* Each MNT_DETACH of /dev takes its top mount (with those on it): the built one, then the
     * host's (if /dev is a mount at all). */
    if (umount2("/dev", MNT_DETACH) == 0) {
        (void)umount2("/dev", MNT_DETACH);
        if (move_mount(tree, "", AT_FDCWD, "/dev", MOVE_MOUNT_F_EMPTY_PATH) < 0)
            e = -errno;
    }
    (void)close(tree);
    return e;
}

/* A job's own part of /dev: a devpts instance (so its ptys are not the host's, and cannot use up
 * the host's pty pool) and an empty shm. */
static void mount_job_dev(void)
{
    if (mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620") < 0 ||
        mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
        die(SHIMPROTO_STEP_MOUNT_DEV, errno);
}

/* The command's stack: far more than command_main needs (a few KiB); untouched pages cost
 * nothing. */
#define CMD_STACK_SIZE (256u << 10)

/* The command's memory: a guard page, the stack above it (an overflow faults instead of running
 * into the shim's memory), then the spec's area. */
#define CMD_MEM_SIZE(page) ((page) + CMD_STACK_SIZE + SPEC_AREA_SIZE)

/* Maps the command's memory before the prep (off the Start's path), unless the template did
 * (premapped: CMD_MEM_SIZE bytes, the guard page set). */
static void map_command_mem(struct command_mem *ret, void *premapped)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *p = premapped;

    if (!p) {
        p = mmap(NULL, CMD_MEM_SIZE(page), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (p == MAP_FAILED)
            die(SHIMPROTO_STEP_FORK, errno);
        if (mprotect(p, page, PROT_NONE) < 0)
            die(SHIMPROTO_STEP_FORK, errno);
    }
    *ret = (struct command_mem){
        .stack_top = p + page + CMD_STACK_SIZE,
        .spec_area = p + page + CMD_STACK_SIZE,
    };
}

struct command_args {
    const struct shimproto_prep *prep;
    int memory_fd;
    struct scmp_filter *filter;
    bool host_net;
    struct command_mem *mem;
};

static int command_clone_main(void *arg)
{
    const struct command_args *a = arg;

    command_main(a->prep, a->memory_fd, a->filter, a->host_net, a->mem);
}

/* Starts the command's process (command_main) the way posix_spawn does: clone(CLONE_VM |
 * CLONE_VFORK) on its own stack, so that the shim's address space is neither copied (page
 * tables, then copy-on-write faults in both processes) nor torn down at the command's exec.
 * The shim stays suspended until the command has exec'd or exited; it has nothing to do before
 * (signals for the command wait on its signalfd). Every signal is blocked across the clone so
 * that none is handled in the child before its mask is set. Returns the child's pid. */
static pid_t start_command(struct command_mem *mem, const struct shimproto_prep *prep,
                           int memory_fd, struct scmp_filter *filter, bool host_net)
{
    struct command_args a = {
        .prep = prep, .memory_fd = memory_fd, .filter = filter, .host_net = host_net, .mem = mem};
    sigset_t all, old;
    pid_t pid;
    int err;

    sigfillset(&all);
    if (sigprocmask(SIG_SETMASK, &all, &old) < 0)
        die(SHIMPROTO_STEP_FORK, errno);
#if RUNJOB_TSAN
    /* TSan's clone interceptor wraps the call in its fork handling (it locks its state, the
     * child unlocks and resets it), which with shared memory the shim would redo: forked. The
     * child's mappings are then its own, and mem->spec_map stays NULL here. */
    pid = fork();
    if (pid == 0)
        command_clone_main(&a);
#else
    pid = clone(command_clone_main, mem->stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
#endif
    err = errno; /* the child shared errno and may have changed it: only a failure's is ours */
    if (pid < 0)
        die(SHIMPROTO_STEP_FORK, err);
    if (sigprocmask(SIG_SETMASK, &old, NULL) < 0)
        die(SHIMPROTO_STEP_FORK, errno);
    /* A large spec's copy, which the command (exec'd or gone) no longer uses. */
    if (mem->spec_map)
        (void)munmap(mem->spec_map, mem->spec_map_len);
    return pid;
}

/* PID 1's loop: forward signals, reap zombies, until the command itself has been reaped. */
static int supervise(int sfd, pid_t cmd)
{
    for (;;) {
        struct signalfd_siginfo si;
        ssize_t n = read(sfd, &si, sizeof(si));

        if (n < 0 && errno == EINTR)
            continue;
        if (n != sizeof(si))
            return -1; /* cannot happen; the server sees the shim exit without a status */
        if (si.ssi_signo != SIGCHLD) {
            /* ESRCH: the command has not made its session (and group) yet, so it gets the
             * signal itself (blocked until it resets its mask), or it is gone already. */
            if (kill(-cmd, (int)si.ssi_signo) < 0 && errno == ESRCH)
                (void)kill(cmd, (int)si.ssi_signo);
            continue;
        }
        /* SIGCHLD coalesces: reap everything there is. Orphans reparent to us (PID 1). */
        for (;;) {
            int st;
            pid_t p = waitpid(-1, &st, WNOHANG);
            if (p <= 0)
                break;
            if (p == cmd)
                return st;
        }
    }
}

/* Whether mount point p is dir itself or lies below it. */
static bool path_within(const char *p, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(p, dir, n) == 0 && (!p[n] || p[n] == '/');
}

/* The host's mounts that the job's own cover (below /dev and /proc; at or below /tmp, /var/tmp
 * and /run/lock, and without a network /sys and /run) are detached in the shim's mount
 * namespace: each is otherwise copied into every job's namespace and torn down at its end, for
 * nothing the job can reach (the host's cgroup v1 hierarchies alone are a dozen), and listed in
 * its mountinfo. /dev and /proc stay until the job's own cover them: the shim uses them first.
 * Best effort: a mount left in place is still covered. Needs / private first. */
static void detach_covered_mounts(bool host_net)
{
    static const char *const covered[] = {"/tmp", "/var/tmp", "/run/lock", "/sys", "/run"};
    const size_t n_covered = host_net ? 3 : 5;
    char line[4096], point[4096];
    FILE *f;

    f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return;
    /* "ID PARENT MAJ:MIN ROOT MOUNTPOINT ...": a mount point with a space, tab, newline or
     * backslash is octal-escaped, and then left alone. */
    while (fgets(line, sizeof(line), f)) {
        bool hit;
        if (sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1 || strchr(point, '\\'))
            continue;
        hit = (path_within(point, "/dev") && strcmp(point, "/dev") != 0) ||
              (path_within(point, "/proc") && strcmp(point, "/proc") != 0);
        for (size_t i = 0; !hit && i < n_covered; i++)
            hit = path_within(point, covered[i]);
        if (hit)
            (void)umount2(point, MNT_DETACH); /* EINVAL once its parent went first */
    }
    (void)fclose(f);
}

/* Everything a shim does once its filter is built: the namespaces' mounts and lo, the prep, the
 * command's process, then PID 1's supervision until it ends. Never returns. */
__attribute__((noreturn)) static void run_as_init(struct scmp_filter *filter, bool host_net,
                                                  void *cmd_mem)
{
    struct shimproto_prep prep;
    struct command_mem mem;
    pid_t cmd;
    int sfd, st, e, memory_fd;

    /* Ours only: the command must not inherit them (the sync socket until its exec). */
    (void)fcntl(SHIMPROTO_FD_SYNC, F_SETFD, FD_CLOEXEC);
    (void)fcntl(SHIMPROTO_FD_STATUS, F_SETFD, FD_CLOEXEC);

    /* What does not depend on the job comes before the go: a pooled shim has it done before
     * the job even exists. */
    sfd = setup_signals();
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        die(SHIMPROTO_STEP_MOUNT_PRIVATE, errno);
    if (!mounts_detached)
        detach_covered_mounts(host_net);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        die(SHIMPROTO_STEP_MOUNT_PROC, errno);
    if (!host_net) {
        /* sysfs shows the net devices of the namespace that mounts it (and hides the host's
         * cgroupfs and debugfs below /sys). */
        if (mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
            die(SHIMPROTO_STEP_MOUNT_SYS, errno);
        loopback_up();
    }
    mount_private_dirs(host_net);
    if (!dev_built && (e = build_dev()) < 0)
        die(SHIMPROTO_STEP_MOUNT_DEV, -e);
    mount_job_dev();
    map_command_mem(&mem, cmd_mem);

    wait_prep(&prep, &memory_fd);
    /* EPIPE: the server went away, and the command's wait for the go sees EOF. */
    (void)shimproto_send_ready(SHIMPROTO_FD_SYNC);
    /* After the server placed us in the job cgroup (or clone3 did): that is the root the job
     * sees in /proc/self/cgroup (on v1 but for memory, which the command's process joins and
     * roots anew). */
    if (unshare(CLONE_NEWCGROUP) < 0)
        die(SHIMPROTO_STEP_CGROUP_NS, errno);
    set_hostname(prep.id);

    /* The child makes its own session (and group) first thing; the shim cannot do it for it,
     * and making its group here would keep it from its session. Stops that come meanwhile wait
     * blocked on the signalfd until supervise() forwards them. */
    cmd = start_command(&mem, &prep, memory_fd, filter, host_net);
    if (memory_fd >= 0)
        (void)close(memory_fd);
    /* The command holds the sync socket until its exec (and reads the go on it); the job's
     * stdio is the command's. */
    (void)close(SHIMPROTO_FD_SYNC);
    (void)close(SHIMPROTO_FD_STDIN);
    (void)close(SHIMPROTO_FD_STDOUT);
    (void)close(SHIMPROTO_FD_STDERR);

    st = supervise(sfd, cmd);
    if (st < 0)
        _exit(126);
    (void)shimproto_send_status(SHIMPROTO_FD_STATUS, st);
    /* Exiting as PID 1 SIGKILLs whatever the command left running in the namespace. */
    _exit(0);
}

/* What a shim cloned by the template starts with, at the top of its stack: the fds it was sent
 * (the template's numbers), the filter, and the command's memory (CMD_MEM_SIZE, guard set) or
 * NULL. */
struct template_child_args {
    int fds[SHIMPROTO_FD_COUNT];
    struct scmp_filter *filter;
    void *cmd_mem;
};

/* A shim cloned by the template, in its new namespaces: fds (0..4 as SHIMPROTO_FD_*) placed, the
 * template's own (its control socket included) closed, then the shim's path. */
__attribute__((noreturn)) static void template_child(const struct template_child_args *a)
{
    int tmp[SHIMPROTO_FD_COUNT];

    /* Its parent is the server's pool thread (CLONE_PARENT), as for an exec'd shim. getppid()
     * cannot check it (0 from a new pid namespace): a server gone before this line closed its
     * end of the sync socket, and wait_prep() exits on that EOF. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        _exit(127);
    /* Two passes, so that no source fd is overwritten before it was copied. */
    for (int i = 0; i < SHIMPROTO_FD_COUNT; i++) {
        tmp[i] = fcntl(a->fds[i], F_DUPFD_CLOEXEC, SHIMPROTO_FD_COUNT);
        if (tmp[i] < 0)
            _exit(127);
    }
    for (int i = 0; i < SHIMPROTO_FD_COUNT; i++)
        if (dup3(tmp[i], i, 0) < 0)
            _exit(127);
    if (close_range(SHIMPROTO_FD_COUNT, ~0U, 0) < 0)
        die(SHIMPROTO_STEP_FDS, errno);
    run_as_init(a->filter, false, a->cmd_mem);
}

#if defined(__x86_64__) && !RUNJOB_TSAN && !RUNJOB_ASAN
/* Shims share the template's memory (CLONE_VM): no copy of its address space for each job, no
 * teardown at each shim's exit, no copy-on-write faults; each runs on memory the template maps
 * for it and unmaps once the shim's exit is over (its tid word cleared, then its pidfd readable:
 * as PID 1 of its namespace, after every other process of the job), however it ended. The OOM
 * killer kills every process sharing its victim's memory, so a shim must never be the victim of
 * a job's memory cgroup: either the template could make its shims' OOM score -1000, or the shim
 * stays out of that cgroup (cgroup v1: its command's process joins it alone). Outside it, a shim
 * weighs what the template does (its RSS is theirs), about half of the server, whose end ends
 * every job anyway (their pdeathsig). Like the command's process before its
 * exec, a shim allocates nothing and takes no lock of libc's; the template only reads and writes
 * its own state between clones, and never frees what the shims read (the filter). They share libc's
 * thread state, errno included: a failing call's errno may be another's by the time it is read,
 * which only an error message would show. Sanitizer builds fork them: TSan's fork handling wants a
 * fork, and ASan, which takes a shim for the template's thread, warns on its stack (into the job's
 * output). */
#define TEMPLATE_SHARES_MEMORY 1
#else
#define TEMPLATE_SHARES_MEMORY 0
#endif

/* The memory of a shim the template started: [guard | shim stack | command memory]; the args at
 * the stack's top. tid is cleared by the kernel as the shim's exit begins; its pidfd is readable
 * once the exit is over, which for the init of a pid namespace is after every other process of
 * it, the command's process included, has gone. */
struct shim_mem {
    char *base;
    size_t len;
    _Atomic pid_t tid;
    int pidfd;
};

struct shim_mems {
    struct shim_mem **v;
    size_t n, cap;
};

#if TEMPLATE_SHARES_MEMORY
/* A shim's own stack: far more than its path needs (a few KiB); untouched pages cost nothing. */
#define SHIM_STACK_SIZE (256u << 10)

/* Before 5.16 a core dump took down every process sharing the dumper's memory, not only its own
 * threads. */
static bool kernel_dumps_alone(void)
{
    struct utsname u;
    int major = 0, minor = 0;

    return uname(&u) == 0 && sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
           (major > 5 || (major == 5 && minor >= 16));
}

/* Unmaps the memory of every shim that has ended: its tid word cleared (a load, for the many
 * still running), then its pidfd readable (a poll, for those that are ending). */
static void reclaim_shim_mems(struct shim_mems *m)
{
    for (size_t i = 0; i < m->n;) {
        struct shim_mem *sm = m->v[i];
        struct pollfd pfd = {.fd = sm->pidfd, .events = POLLIN};
        if (atomic_load_explicit(&sm->tid, memory_order_acquire) != 0 || poll(&pfd, 1, 0) != 1) {
            i++;
            continue;
        }
        (void)munmap(sm->base, sm->len);
        (void)close(sm->pidfd);
        free(sm);
        m->v[i] = m->v[--m->n];
    }
}

/* Starts fn(arg) with clone3(ca) on the stack ca gives (its top 16-byte aligned); in the parent,
 * the pid or -errno. The child never returns here: it has no frame to return to. */
static long clone3_on_stack(struct clone_args *ca, void (*fn)(void *), void *arg)
{
    register long ret __asm__("rax") = SYS_clone3;
    register void *r12 __asm__("r12") = (void *)fn;
    register void *r13 __asm__("r13") = arg;

    __asm__ volatile("syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "xor %%ebp, %%ebp\n\t"
                     "mov %%r13, %%rdi\n\t"
                     "and $-16, %%rsp\n\t"
                     "call *%%r12\n\t"
                     "ud2\n"
                     "1:"
                     : "+r"(ret)
                     : "D"(ca), "S"(sizeof(*ca)), "r"(r12), "r"(r13)
                     : "rcx", "r11", "memory", "cc");
    return ret;
}

static void template_vm_child(void *arg)
{
    template_child(arg);
}

/* Clones a shim (ca's namespaces and flags set, with CLONE_PIDFD) on memory of its own; its pid,
 * or -errno. The pidfd is the template's to keep until the shim's memory is reclaimed. */
static long clone_shim(struct shim_mems *m, struct clone_args *ca, const int *fds,
                       struct scmp_filter *filter)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t len = page + SHIM_STACK_SIZE + CMD_MEM_SIZE(page);
    struct template_child_args *a;
    struct shim_mem *sm;
    char *p;
    long pid;

    reclaim_shim_mems(m);
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        struct shim_mem **v = realloc(m->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        m->v = v;
        m->cap = cap;
    }
    sm = calloc(1, sizeof(*sm));
    if (!sm)
        return -ENOMEM;
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) {
        free(sm);
        return -errno;
    }
    /* Guard pages below the shim's stack and below the command's. */
    if (mprotect(p, page, PROT_NONE) < 0 ||
        mprotect(p + page + SHIM_STACK_SIZE, page, PROT_NONE) < 0) {
        pid = -errno;
        goto fail;
    }
    a = (struct template_child_args *)(p + page + SHIM_STACK_SIZE) - 1;
    memcpy(a->fds, fds, sizeof(a->fds));
    a->filter = filter;
    a->cmd_mem = p + page + SHIM_STACK_SIZE;
    *sm = (struct shim_mem){.base = p, .len = len, .tid = -1, .pidfd = -1};
    ca->flags |= CLONE_VM | CLONE_CHILD_CLEARTID;
    ca->child_tid = (uint64_t)(uintptr_t)&sm->tid;
    ca->stack = (uint64_t)(uintptr_t)(p + page);
    ca->stack_size = (uint64_t)((char *)a - (p + page));
    pid = clone3_on_stack(ca, template_vm_child, a);
    if (pid < 0)
        goto fail;
    sm->pidfd = *(int *)(uintptr_t)ca->pidfd;
    m->v[m->n++] = sm;
    return pid;
fail:
    (void)munmap(p, len);
    free(sm);
    return pid;
}
#else
static bool kernel_dumps_alone(void)
{
    return false;
}

static long clone_shim(struct shim_mems *m, struct clone_args *ca, const int *fds,
                       struct scmp_filter *filter)
{
    (void)m, (void)ca, (void)fds, (void)filter;
    return -ENOSYS;
}
#endif

/* The template's loop (shimproto.h): one clone3 per request, until its control socket (fd
 * SHIMPROTO_FD_SYNC) closes. Single-threaded, so a clone of it, sharing its memory or not, finds
 * no lock held. */
int shim_run_template(void)
{
    /* Never freed: shims read it until their commands have loaded it, and the template's end
     * (_exit) need not wait for them. */
    struct scmp_filter *filter = NULL;
    struct shim_mems mems = {0};
    bool can_share;
    int r;

    /* Once here, for every shim it forks: they and their commands inherit the defaults and the
     * empty bounding set. */
    reset_signal_dispositions();
    if (drop_bounding_set() < 0)
        return 1;
    /* Its shims inherit it: PID 1 of a job is never the OOM killer's choice, its command is
     * (which goes back to 0). One that shares the template's memory must not be: the OOM killer
     * kills every process that shares its victim's memory, every job's shim with it. */
    oom_protected = write_oom_score_adj("-1000") == 0;
    /* Once for every shim (all of them private-network): their namespaces are copies. */
    if (unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0) {
        detach_covered_mounts(false);
        mounts_detached = true;
        /* A failure leaves the template's /dev as it was, and each shim builds its own. */
        dev_built = build_dev() == 0;
        if (dev_built && lift_dev() < 0)
            return 1; /* the server sees EOF and execs its shims */
    }
    r = scmp_filter_new(&filter);
    if (r < 0)
        return 1; /* the server sees EOF on its first request and execs its shims */
    /* Sharing its memory needs the mount namespace set up here (a shim would otherwise read the
     * host's mount table with stdio, which allocates) and a kernel on which one process's core
     * dump is its own; then, for each shim, the OOM killer kept off it: by its -1000, or by its
     * staying out of its job's memory cgroup (the request says). */
    can_share = TEMPLATE_SHARES_MEMORY && mounts_detached && kernel_dumps_alone();
    for (;;) {
        struct clone_args ca;
        int fds[SHIMPROTO_FD_COUNT], cgroup_fd = -1, pidfd = -1, err = 0;
        bool memory_apart = false, share = false;
        long pid = 0;

        r = shimproto_recv_template_req(SHIMPROTO_FD_SYNC, fds, &cgroup_fd, &memory_apart);
        if (r == 0)
            _exit(0);
        if (r < 0 && r != -EBADMSG)
            _exit(1);
        /* A request it cannot serve (-EBADMSG: whatever fds came are closed) is answered too:
         * the server would wait out its timeout otherwise. */
        if (r < 0) {
            err = EBADMSG;
        } else {
            memset(&ca, 0, sizeof(ca));
            /* CLONE_PARENT: the server's child, reaped and waited by its pidfd as an exec'd
             * shim; the exit signal is then the template's own (0), whatever exit_signal says.
             * A raw clone3 leaves libc's cached TID the template's in the shim, and in the
             * command's process it clones: their code calls no raise(), abort(), assert() nor
             * pthread_* (they would use that TID; fortify's abort aside), only _exit and die(). */
            ca.flags = CLONE_PARENT | CLONE_PIDFD | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS |
                       CLONE_NEWIPC | CLONE_NEWNET;
            ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
            share = can_share && (oom_protected || memory_apart);
            if (cgroup_fd >= 0) {
                ca.flags |= CLONE_INTO_CGROUP;
                ca.cgroup = (uint64_t)cgroup_fd;
            }
            if (share) {
                pid = clone_shim(&mems, &ca, fds, filter);
                if (pid < 0) {
                    err = (int)-pid;
                    pid = 0;
                }
            } else {
                pid = syscall(SYS_clone3, &ca, sizeof(ca));
                if (pid == 0)
                    template_child(&(struct template_child_args){
                        .fds = {fds[0], fds[1], fds[2], fds[3], fds[4]}, .filter = filter});
                if (pid < 0)
                    err = errno;
            }
            for (int i = 0; i < SHIMPROTO_FD_COUNT; i++)
                (void)close(fds[i]);
            if (cgroup_fd >= 0)
                (void)close(cgroup_fd);
        }
        r = shimproto_send_template_reply(SHIMPROTO_FD_SYNC, (pid_t)pid, pidfd, err);
        if (pidfd >= 0 && !(share && pid > 0)) /* a shared shim's: kept (clone_shim) */
            (void)close(pidfd);
        if (r < 0)
            _exit(1); /* the server is gone; the shim, if any, exits on its own EOF */
    }
}

__attribute__((noreturn)) void shim_run(bool host_net)
{
    struct scmp_filter *filter;
    int r;

    reset_signal_dispositions();
    r = drop_bounding_set();
    if (r < 0)
        die(SHIMPROTO_STEP_CAPBSET, -r);
    r = scmp_filter_new(&filter);
    if (r < 0)
        die(SHIMPROTO_STEP_SECCOMP_BUILD, -r);
    run_as_init(filter, host_net, NULL);
}
