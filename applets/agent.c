/* runjob agent: one long-lived mTLS connection to the server, which later client processes of
 * the same user use through a unix socket instead of setting up TLS and gRPC each (ssh's
 * ControlMaster; ssh-agent's interface: eval "$(runjob agent)"). The relay itself, both sides,
 * is core/rpc's (rpc_relay_serve, rpc_client_open_relay); this is the process around it. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/pidfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "applets/client.h"
#include "applets/format.h"
#include "core/cleanup.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/proc.h"
#include "core/tls.h"

/* Connections served at once; past it a new one is closed at once, so that a flood from a
 * runaway script costs the agent an accept and a close each, not a thread and its calls. */
#define AGENT_CONN_MAX 512
#define STRINGIFY_(x)  #x
#define STRINGIFY(x)   STRINGIFY_(x)
/* How long -k waits for the agent to be gone, and the agent for its relays at exit. */
#define AGENT_EXIT_WAIT_MS 5000
/* How long a relay thread waits for a next connection before it ends. */
#define RELAY_WAIT_S 30
/* The log's refusals (another uid, the cap, other settings) and failed accepts: a flood of
 * them must not fill the disk. At most this many lines a minute, the rest counted; and none
 * once the file has grown past LOG_MAX_BYTES (a --log FILE that lives on, appended to). */
#define LOG_REFUSALS_PER_MIN 20
#define LOG_MAX_BYTES        (1 << 20)

static const char usage[] =
    "Usage: runjob agent [flags]\n"
    "       runjob agent -k\n"
    "\n"
    "Hold one connection to the server for the runjob commands that follow: each of them\n"
    "then relays its calls over a unix socket instead of making a TLS connection of its own\n"
    "(ssh's ControlMaster). The agent makes its socket, connects and pings the server with the\n"
    "connection settings it is given, goes to the background and prints the shell commands\n"
    "that point later commands at it (RUNJOB_AGENT_SOCK, RUNJOB_AGENT_PID). A command uses it\n"
    "only when its own settings are the agent's (server, port, CA, certificate and key files);\n"
    "any other command, or any command once the agent has gone, connects by itself.\n"
    "Only processes of the agent's user (and root) may use its socket.\n"
    "\n"
    "Agent:\n"
    "  -a, --socket PATH          listen at PATH (default: agent.<pid> in a new private\n"
    "                             directory under $XDG_RUNTIME_DIR, else $TMPDIR, else /tmp);\n"
    "                             a socket already there is replaced if nothing answers on it\n"
    "  -D, --foreground           stay in the foreground and log to stderr\n"
    "      --log FILE             log to FILE, appended to: one line with the time for each\n"
    "                             connection or command refused (another user, other\n"
    "                             settings, too many at once; at most 20 a minute) and for\n"
    "                             the agent's end (default: in the background, the socket's\n"
    "                             path with .log added, removed with the socket at exit;\n"
    "                             with -D, stderr)\n"
    "  -k, --kill                 stop the agent that RUNJOB_AGENT_PID names and print the\n"
    "                             commands that unset the variables\n"
    "      --idle-timeout DURATION  exit once no command has used the agent for DURATION\n"
    "                             (30m, 2h; default: never)\n"
    "  -q, --quiet                print only the shell commands\n"
    "\n" CLIENT_USAGE_NO_OUTPUT "\n"
    "Examples:\n"
    "  eval \"$(runjob agent)\"                 # this shell's commands go through it from now\n"
    "  eval \"$(runjob agent --context prod --idle-timeout 1h)\"\n"
    "  runjob ping                            # ... via agent /tmp/runjob-Ab12Cd/agent.4242\n"
    "  eval \"$(runjob agent -k)\"              # stop it and unset the variables\n"
    "  runjob agent -D -a ~/.runjob-agent     # in the foreground, at a fixed path\n";

enum { AGENT_OPT_IDLE = CLIENT_OPT_APPLET, AGENT_OPT_LOG };

struct agent_flags {
    const char *socket;
    const char *log;
    bool foreground, kill, quiet, others; /* others: a flag -k has no use for */
    int64_t idle_ms;                      /* 0: never */
};

static int take_flag(struct client_opts *o, int opt, const char *arg, void *ctx)
{
    struct agent_flags *f = ctx;

    switch (opt) {
    case 'a':
        if (!*arg)
            return client_usage_error(o, "--socket needs a path");
        f->socket = arg;
        break;
    case 'D':
        f->foreground = true;
        break;
    case 'k':
        f->kill = true;
        return CLIENT_OPT_DONE;
    case 'q':
        f->quiet = true;
        return CLIENT_OPT_DONE;
    case AGENT_OPT_LOG:
        if (!*arg)
            return client_usage_error(o, "--log needs a file");
        f->log = arg;
        break;
    case AGENT_OPT_IDLE:
        if (fmt_parse_duration(arg, &f->idle_ms) < 0 || f->idle_ms <= 0)
            return client_usage_error(o, "--idle-timeout '%s' is not a duration (30m, 2h)", arg);
        break;
    case 'h':
        return CLIENT_OPT_OTHER;
    default:
        f->others = true; /* a connection flag; client_option takes it */
        return CLIENT_OPT_OTHER;
    }
    f->others = true;
    return CLIENT_OPT_DONE;
}

/* ---- -k ---------------------------------------------------------------------------------- */

/* Whether pid runs `runjob agent` (argv[1], or an argv[0] named agent): the variable may be
 * stale and its pid someone else's by now. */
static bool is_agent(pid_t pid)
{
    _cleanup_free_ char *buf = NULL;
    _cleanup_close_ int fd = -1;
    char path[64];
    const char *a0, *a1, *slash;
    size_t len;

    (void)snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || proc_read_fd(fd, 1 << 16, &buf, &len) < 0)
        return false;
    if (!(a0 = proc_parse_cmdline_arg(buf, len, 0)))
        return false;
    slash = strrchr(a0, '/');
    a1 = proc_parse_cmdline_arg(buf, len, 1);
    if (strcmp(slash ? slash + 1 : a0, "agent") != 0 && !(a1 && strcmp(a1, "agent") == 0))
        return false;
    /* `consul agent`, `vault agent` too: the program must be this one. */
    struct stat mine, theirs;
    (void)snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
    return stat("/proc/self/exe", &mine) == 0 && stat(path, &theirs) == 0 &&
           mine.st_dev == theirs.st_dev && mine.st_ino == theirs.st_ino;
}

static void print_unset(void)
{
    printf("unset RUNJOB_AGENT_SOCK;\nunset RUNJOB_AGENT_PID;\n");
}

static int kill_agent(const struct client_opts *o, const struct agent_flags *f)
{
    const char *s = getenv("RUNJOB_AGENT_PID");
    _cleanup_close_ int pidfd = -1;
    struct pollfd p;
    uint64_t v;
    int r;

    if (!s || !*s) {
        fprintf(stderr, "%s: %s: RUNJOB_AGENT_PID is not set: no agent to stop\n", o->prog,
                o->verb);
        return CLIENT_EXIT_FAILED;
    }
    if (fmt_parse_uint(s, &v) < 0 || v < 1 || v > INT_MAX)
        return client_usage_error(o, "RUNJOB_AGENT_PID='%s' is not a process id", s);
    /* The pidfd first: the signal then goes to the process checked, even if the pid is reused
     * meanwhile. */
    pidfd = pidfd_open((pid_t)v, 0);
    if (pidfd < 0 || !is_agent((pid_t)v)) {
        /* The variables name an agent that is no more: unsetting them is still right. */
        print_unset();
        fprintf(stderr, "%s: %s: no agent runs as pid %d (RUNJOB_AGENT_PID)\n", o->prog, o->verb,
                (int)v);
        return CLIENT_EXIT_FAILED;
    }
    if (pidfd_send_signal(pidfd, SIGTERM, NULL, 0) < 0) {
        fprintf(stderr, "%s: %s: cannot stop pid %d: %s\n", o->prog, o->verb, (int)v,
                strerror(errno));
        return CLIENT_EXIT_FAILED;
    }
    /* Until it has removed its socket (whoever runs -k may look for it next), and past its own
     * wait for its relays. */
    p = (struct pollfd){.fd = pidfd, .events = POLLIN};
    while ((r = poll(&p, 1, 2 * AGENT_EXIT_WAIT_MS)) < 0 && errno == EINTR)
        ;
    if (r == 0) {
        fprintf(stderr, "%s: %s: pid %d did not exit within %d s of SIGTERM\n", o->prog, o->verb,
                (int)v, 2 * AGENT_EXIT_WAIT_MS / 1000);
        return CLIENT_EXIT_FAILED;
    }
    print_unset();
    if (!f->quiet)
        fprintf(stderr, "runjob agent pid %d stopped\n", (int)v);
    return 0;
}

/* ---- the socket -------------------------------------------------------------------------- */

struct agent_sock {
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char dir[PATH_MAX]; /* the directory we made for it ("" with --socket) */
    dev_t dev;          /* the socket file's, to see it removed or replaced */
    ino_t ino;
    int fd;
    char log[PATH_MAX]; /* the default log, ours to remove with the socket ("" for none) */
    dev_t log_dev;
    ino_t log_ino;
};

/* Removes what agent_sock_open made; the socket only while it is still ours. */
static void agent_sock_remove(struct agent_sock *s)
{
    struct stat st;

    if (*s->path && lstat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
        (void)unlink(s->path);
    if (*s->log && lstat(s->log, &st) == 0 && st.st_dev == s->log_dev && st.st_ino == s->log_ino)
        (void)unlink(s->log);
    *s->log = '\0';
    if (*s->dir)
        (void)rmdir(s->dir); /* fails, rightly, if someone put files there */
    *s->path = *s->dir = '\0';
}

/* Where a default socket's directory goes: $XDG_RUNTIME_DIR (per user, private, cleared at
 * logout) when it is an absolute path to a directory we can write, else $TMPDIR, else /tmp. */
static const char *runtime_base(void)
{
    const char *names[] = {"XDG_RUNTIME_DIR", "TMPDIR"};
    struct stat st;

    for (size_t i = 0; i < ELEMENTSOF(names); i++) {
        const char *d = getenv(names[i]);

        if (d && d[0] == '/' && stat(d, &st) == 0 && S_ISDIR(st.st_mode) &&
            access(d, W_OK | X_OK) == 0)
            return d;
    }
    return "/tmp";
}

/* With --socket: what is at path already. 0 when nothing is (or a stale socket, removed),
 * else a message in msg and -EEXIST / -EADDRINUSE / -errno. */
static int clear_path(const char *path, char *msg, size_t cap)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    _cleanup_close_ int fd = -1;
    struct stat st;

    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        (void)snprintf(msg, cap, "'%s': %s", path, strerror(errno));
        return -errno;
    }
    if (!S_ISSOCK(st.st_mode)) {
        (void)snprintf(msg, cap, "'%s' exists and is not a socket; not replacing it", path);
        return -EEXIST;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        (void)snprintf(msg, cap, "socket: %s", strerror(errno));
        return -errno;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        (void)snprintf(msg, cap, "'%s': an agent already listens there (runjob agent -k stops it)",
                       path);
        return -EADDRINUSE;
    }
    if (errno != ECONNREFUSED) {
        (void)snprintf(msg, cap, "'%s': %s", path, strerror(errno));
        return -errno;
    }
    if (unlink(path) < 0 && errno != ENOENT) { /* stale: its agent is gone */
        (void)snprintf(msg, cap, "cannot remove the stale socket '%s': %s", path, strerror(errno));
        return -errno;
    }
    return 0;
}

/* Makes the listening socket (mode 0600) at want, or in a new private directory: 0, or -errno
 * with the message in msg. */
static int agent_sock_open(struct agent_sock *s, const char *want, char *msg, size_t cap)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char path[PATH_MAX + 32], cwd[PATH_MAX];
    struct stat st;
    mode_t old;
    int r, n;

    if (want && want[0] != '/') { /* absolute: commands from other directories use it too */
        if (!getcwd(cwd, sizeof(cwd))) {
            (void)snprintf(msg, cap, "getcwd: %s", strerror(errno));
            return -errno;
        }
        n = snprintf(path, sizeof(path), "%s/%s", cwd, want);
    } else if (want) {
        n = snprintf(path, sizeof(path), "%s", want);
    } else {
        n = snprintf(s->dir, sizeof(s->dir), "%s/runjob-XXXXXX", runtime_base());
        if (n < 0 || (size_t)n >= sizeof(s->dir)) {
            *s->dir = '\0';
            (void)snprintf(msg, cap, "the directory for the socket: name too long");
            return -ENAMETOOLONG;
        }
        if (!mkdtemp(s->dir)) { /* mode 0700 */
            r = -errno;
            (void)snprintf(msg, cap, "cannot make a directory for the socket in '%s': %s",
                           runtime_base(), strerror(-r));
            *s->dir = '\0';
            return r;
        }
        n = snprintf(path, sizeof(path), "%s/agent.%d", s->dir, (int)getpid());
    }
    if (n < 0 || (size_t)n >= sizeof(s->path)) {
        (void)snprintf(msg, cap, "socket path '%s' is too long (at most %zu bytes)", path,
                       sizeof(s->path) - 1);
        return -ENAMETOOLONG;
    }
    if (want && (r = clear_path(path, msg, cap)) < 0)
        return r;
    s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s->fd < 0) {
        (void)snprintf(msg, cap, "socket: %s", strerror(errno));
        return -errno;
    }
    memcpy(sa.sun_path, path, (size_t)n + 1);
    /* Made 0600 from the start: a socket in a shared directory is never, even for a moment,
     * one that others may connect to. */
    old = umask(0177);
    r = bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
    umask(old);
    if (r < 0) {
        (void)snprintf(msg, cap, "cannot make the socket '%s': %s", path, strerror(-r));
        return r;
    }
    memcpy(s->path, path, (size_t)n + 1);
    if (lstat(s->path, &st) < 0 || listen(s->fd, 128) < 0) {
        r = -errno;
        (void)snprintf(msg, cap, "'%s': %s", path, strerror(-r));
        return r;
    }
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    return 0;
}

/* Whether the socket file is still the one we made: removed or replaced (another agent at the
 * same --socket, a tmp cleaner), no command can reach us any more. */
static bool agent_sock_intact(const struct agent_sock *s)
{
    struct stat st;

    return lstat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino;
}

/* Watches the socket's directory, so that its removal wakes the loop: -1 when inotify cannot,
 * and the loop then looks every few seconds. */
static int watch_sock(const struct agent_sock *s)
{
    char dir[sizeof(s->path)];
    char *slash;
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

    if (fd < 0)
        return -1;
    memcpy(dir, s->path, sizeof(dir));
    slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    if (inotify_add_watch(fd, dir,
                          IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF |
                              IN_MOVE_SELF) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- serving ----------------------------------------------------------------------------- */

struct agent {
    struct rpc_client *client;
    uid_t uid;
    int log_fd;             /* the log file, or -1: stderr through core/log */
    pthread_mutex_t log_mu; /* guards the fields below */
    int64_t log_window_ms;  /* CLOCK_MONOTONIC, the start of the refusals' minute */
    unsigned log_in_window, log_dropped;
    pthread_mutex_t lock;
    pthread_cond_t idle;       /* signalled when the last relay ends */
    int wake_fd;               /* eventfd: a relay ended (the idle clock restarts) */
    int conns[AGENT_CONN_MAX]; /* relays' fds, -1 free; under lock */
    unsigned n_conns;          /* under lock */
    int64_t idle_since_ms;     /* CLOCK_MONOTONIC, when n_conns last became 0; under lock */
    int64_t expires_s;         /* the certificate's notAfter (epoch seconds), 0 unknown */
    /* Relay threads done with a connection wait a while for the next one: making a thread
     * was a third of the agent's CPU per relayed call. Under lock. */
    pthread_cond_t work;
    int queued_fd[AGENT_CONN_MAX], queued_slot[AGENT_CONN_MAX];
    unsigned n_queued, n_waiting;
};

struct relay {
    struct agent *a;
    int fd, slot;
};

/* One line of the agent's log: to the log file with the time (UTC) when it has one, else to
 * stderr through core/log. A refusal (refusal: true) is subject to LOG_REFUSALS_PER_MIN and
 * LOG_MAX_BYTES; one that is not written is counted, and the next written says how many. */
__attribute__((format(printf, 4, 5))) static void agent_log(struct agent *a, enum log_level level,
                                                            bool refusal, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    char msg[1024], line[1200], when[32];
    unsigned dropped = 0;
    struct timespec ts;
    struct stat st;
    struct tm tm;
    va_list ap;
    int n;

    pthread_mutex_lock(&a->log_mu);
    if (refusal) {
        int64_t now = clock_ms(CLOCK_MONOTONIC);
        if (now - a->log_window_ms >= 60000) {
            a->log_window_ms = now;
            a->log_in_window = 0;
        }
        if (a->log_in_window >= LOG_REFUSALS_PER_MIN ||
            (a->log_fd >= 0 && fstat(a->log_fd, &st) == 0 && st.st_size > LOG_MAX_BYTES)) {
            a->log_dropped++;
            pthread_mutex_unlock(&a->log_mu);
            return;
        }
        a->log_in_window++;
        dropped = a->log_dropped;
        a->log_dropped = 0;
    }
    pthread_mutex_unlock(&a->log_mu);
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (a->log_fd < 0) {
        if (dropped)
            log_warn("%u refusals not logged (at most %d a minute)", dropped, LOG_REFUSALS_PER_MIN);
        log_msg(level, "%s", msg);
        return;
    }
    (void)clock_gettime(CLOCK_REALTIME, &ts);
    (void)gmtime_r(&ts.tv_sec, &tm);
    (void)strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    if (dropped) {
        n = snprintf(line, sizeof(line),
                     "%s.%03ldZ runjob agent[%d] warn: %u refusals not logged (at most %d a "
                     "minute)\n",
                     when, ts.tv_nsec / 1000000, (int)getpid(), dropped, LOG_REFUSALS_PER_MIN);
        (void)!write(a->log_fd, line, (size_t)n);
    }
    n = snprintf(line, sizeof(line), "%s.%03ldZ runjob agent[%d] %s: %s\n", when,
                 ts.tv_nsec / 1000000, (int)getpid(), names[level], msg);
    if (n >= (int)sizeof(line)) {
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    (void)!write(a->log_fd, line, (size_t)n); /* one write: O_APPEND keeps lines whole */
}

/* At exit: how many refusals the rate limit kept out of the log, if any. */
static void agent_log_flush(struct agent *a)
{
    unsigned dropped;

    pthread_mutex_lock(&a->log_mu);
    dropped = a->log_dropped;
    a->log_dropped = 0;
    pthread_mutex_unlock(&a->log_mu);
    if (dropped)
        agent_log(a, LOG_WARN, false, "%u refusals not logged (at most %d a minute)", dropped,
                  LOG_REFUSALS_PER_MIN);
}

/* A relay is over: its slot is free and its fd closed, both under the lock, so that
 * agent_stop_relays never shuts down a number reused by then for one of gRPC's sockets. */
static void relay_done(struct agent *a, int fd, int slot)
{
    pthread_mutex_lock(&a->lock);
    close(fd);
    a->conns[slot] = -1;
    if (--a->n_conns == 0) {
        a->idle_since_ms = clock_ms(CLOCK_MONOTONIC);
        (void)eventfd_write(a->wake_fd, 1); /* wakes the loop: the idle clock starts now */
        pthread_cond_broadcast(&a->idle);
    }
    pthread_mutex_unlock(&a->lock);
}

/* A relay thread's wait for its next connection: true with it, false after RELAY_WAIT_S
 * without one (the thread ends). */
static bool relay_next(struct agent *a, int *ret_fd, int *ret_slot)
{
    int64_t end = clock_ms(CLOCK_REALTIME) + RELAY_WAIT_S * 1000;
    struct timespec ts = {.tv_sec = end / 1000, .tv_nsec = (end % 1000) * 1000000};
    bool took;

    pthread_mutex_lock(&a->lock);
    a->n_waiting++;
    while (!a->n_queued && pthread_cond_timedwait(&a->work, &a->lock, &ts) == 0)
        ;
    took = a->n_queued > 0;
    if (took) {
        a->n_queued--;
        *ret_fd = a->queued_fd[a->n_queued];
        *ret_slot = a->queued_slot[a->n_queued];
    }
    a->n_waiting--;
    pthread_mutex_unlock(&a->lock);
    return took;
}

static void *relay_main(void *arg)
{
    struct relay *rl = arg;
    struct agent *a = rl->a;
    int fd = rl->fd, slot = rl->slot;

    free(rl);
    do {
        if (rpc_relay_serve(a->client, fd) == -EPERM) {
            struct ucred cred = {.pid = -1};
            socklen_t len = sizeof(cred);
            (void)getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
            agent_log(a, LOG_WARN, true,
                      "told pid %d no: its settings (server, CA, certificate or key files, "
                      "version) are not the agent's",
                      (int)cred.pid);
        }
        relay_done(a, fd, slot);
    } while (relay_next(a, &fd, &slot));
    return NULL;
}

/* The connection fd in slot to a waiting relay thread, or a new detached one: 0, or -errno
 * (the caller closes it). */
static int relay_start(struct agent *a, int fd, int slot)
{
    _cleanup_free_ struct relay *rl = NULL;
    pthread_attr_t attr;
    pthread_t t;
    int r;

    pthread_mutex_lock(&a->lock);
    if (a->n_waiting > a->n_queued) { /* each waiting thread takes one */
        a->queued_fd[a->n_queued] = fd;
        a->queued_slot[a->n_queued] = slot;
        a->n_queued++;
        pthread_cond_signal(&a->work);
        pthread_mutex_unlock(&a->lock);
        return 0;
    }
    pthread_mutex_unlock(&a->lock);
    rl = malloc(sizeof(*rl));
    if (!rl)
        return -ENOMEM;
    *rl = (struct relay){.a = a, .fd = fd, .slot = slot};
    if ((r = pthread_attr_init(&attr)) != 0)
        return -r;
    (void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED); /* cannot fail */
    r = pthread_create(&t, &attr, relay_main, rl);
    (void)pthread_attr_destroy(&attr);
    if (r != 0)
        return -r;
    TAKE_PTR(rl);
    return 0;
}

/* Who may relay calls: the agent's own user, and root. The calls go out under the agent's
 * certificate, so anyone else would act as this user; root can read the key and trace the agent
 * anyway, so refusing it protects nothing, and ssh-agent lets it in alike (`sudo -E` keeps
 * working). The socket's mode (0600) and directory (0700) keep others out before this. */
static bool peer_allowed(const struct agent *a, int fd, struct ucred *cred)
{
    socklen_t len = sizeof(*cred);

    *cred = (struct ucred){.pid = -1, .uid = (uid_t)-1};
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) < 0)
        return false;
    return cred->uid == a->uid || cred->uid == 0;
}

/* Takes every connection waiting on the listening socket. */
static void agent_accept(struct agent *a, int lfd)
{
    struct ucred cred;
    int fd, slot, r;

    for (;;) {
        fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN) /* EMFILE and the like: the next poll tries again */
                agent_log(a, LOG_WARN, true, "accept: %s, ignoring", strerror(errno));
            return;
        }
        if (!peer_allowed(a, fd, &cred)) {
            agent_log(a, LOG_WARN, true,
                      "refused a connection from uid %d (pid %d): not the agent's user",
                      (int)cred.uid, (int)cred.pid);
            close(fd);
            continue;
        }
        slot = -1;
        pthread_mutex_lock(&a->lock);
        if (a->n_conns < AGENT_CONN_MAX) {
            for (slot = 0; a->conns[slot] >= 0; slot++)
                ;
            a->conns[slot] = fd;
            a->n_conns++;
        }
        pthread_mutex_unlock(&a->lock);
        if (slot < 0) {
            agent_log(a, LOG_WARN, true, "%d connections open already: closed pid %d's",
                      AGENT_CONN_MAX, (int)cred.pid);
            rpc_relay_refuse(
                fd,
                "the runjob agent serves " STRINGIFY(
                    AGENT_CONN_MAX) " connections at once already; this command can go without it "
                                    "(RUNJOB_AGENT_SOCK= runjob ...)");
            close(fd);
        } else if ((r = relay_start(a, fd, slot)) < 0) {
            agent_log(a, LOG_WARN, true, "no thread for pid %d's connection (%s): closed it",
                      (int)cred.pid, strerror(-r));
            rpc_relay_refuse(fd, "the runjob agent cannot take more connections now (no thread "
                                 "for one); this command can go without it "
                                 "(RUNJOB_AGENT_SOCK= runjob ...)");
            relay_done(a, fd, slot);
        }
    }
}

/* At exit: ends the relays (their connections shut down, so rpc_relay_serve returns) and waits
 * for them, at most AGENT_EXIT_WAIT_MS. true when none is left. */
static bool agent_stop_relays(struct agent *a)
{
    int64_t end = clock_ms(CLOCK_REALTIME) + AGENT_EXIT_WAIT_MS;
    struct timespec ts = {.tv_sec = end / 1000, .tv_nsec = (end % 1000) * 1000000};
    bool done;

    pthread_mutex_lock(&a->lock);
    for (int i = 0; i < AGENT_CONN_MAX; i++)
        if (a->conns[i] >= 0)
            (void)shutdown(a->conns[i], SHUT_RDWR); /* the relay thread sees its end and closes */
    while (a->n_conns > 0 && pthread_cond_timedwait(&a->idle, &a->lock, &ts) == 0)
        ;
    done = a->n_conns == 0;
    pthread_mutex_unlock(&a->lock);
    return done;
}

/* The loop: connections, signals, the socket's fate, the idle timeout. Returns when it is time
 * to exit (the socket is removed by the caller if still ours). */
/* The loop: connections, signals, the socket's fate, the idle timeout, the certificate's end.
 * Returns when it is time to exit (the socket is removed by the caller if still ours). A lost
 * socket or an expired certificate ends the accepting at once but not the relays under way: a
 * `runjob run` through the agent would see its stream cut, and the server would stop its job. */
static void agent_loop(struct agent *a, struct agent_sock *s, int sig_fd, int64_t idle_ms)
{
    /* Without inotify, the socket's file is looked at every few seconds instead. */
    _cleanup_close_ int watch_fd = watch_sock(s);
    struct pollfd p[4] = {
        {.fd = s->fd, .events = POLLIN},
        {.fd = sig_fd, .events = POLLIN},
        {.fd = a->wake_fd, .events = POLLIN},
        {.fd = watch_fd, .events = POLLIN},
    };
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    struct signalfd_siginfo si;
    int timeout, idle_left;
    bool draining = false; /* accepting no more: exit once the relays under way are done */
    unsigned n_conns;
    eventfd_t ev;

    for (;;) {
        timeout = watch_fd < 0 && !draining ? 5000 : -1;
        pthread_mutex_lock(&a->lock);
        n_conns = a->n_conns;
        if (idle_ms && n_conns == 0 && !draining) {
            int64_t left = a->idle_since_ms + idle_ms - clock_ms(CLOCK_MONOTONIC);
            idle_left = left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
            if (timeout < 0 || idle_left < timeout)
                timeout = idle_left;
        } else {
            idle_left = -1;
        }
        pthread_mutex_unlock(&a->lock);
        if (draining && n_conns == 0) {
            agent_log(a, LOG_INFO, false, "the last relay is done: exiting");
            return;
        }
        if (idle_left == 0) {
            agent_log(a, LOG_INFO, false, "idle for %" PRId64 " ms: exiting", idle_ms);
            return;
        }
        /* The server checks a certificate's dates at the handshake only, and the agent's
         * connection outlives handshakes: past its certificate's end the agent takes no new
         * command, and those that follow say why on their own. Looked at each minute: the
         * clock may jump. */
        if (a->expires_s && !draining) {
            int64_t left_ms = (a->expires_s - (int64_t)time(NULL)) * 1000;
            int wait_ms = left_ms + 1000 > 60000 ? 60000 : (int)left_ms + 1000;
            if (left_ms < 0) {
                agent_log(a, LOG_INFO, false, "the certificate expired: taking no more commands");
                draining = true;
                agent_sock_remove(s);
                close(s->fd);
                s->fd = p[0].fd = p[3].fd = -1;
                continue;
            }
            if (timeout < 0 || wait_ms < timeout)
                timeout = wait_ms;
        }
        if (poll(p, ELEMENTSOF(p), timeout) < 0 && errno != EINTR) {
            agent_log(a, LOG_ERROR, false, "poll: %s", strerror(errno));
            return;
        }
        if (p[1].revents && read(sig_fd, &si, sizeof(si)) == sizeof(si)) {
            agent_log(a, LOG_INFO, false, "%s: exiting", strsignal((int)si.ssi_signo));
            return;
        }
        if (p[2].revents)
            (void)eventfd_read(a->wake_fd, &ev); /* the loop recomputes the idle time */
        if (draining)
            continue;
        if (p[3].revents)
            while (read(watch_fd, buf, sizeof(buf)) > 0) /* what changed: looked at below */
                ;
        if (!agent_sock_intact(s)) {
            agent_log(a, LOG_INFO, false,
                      "the socket '%s' was removed or replaced: taking no more commands", s->path);
            draining = true;
            agent_sock_remove(s); /* its directory, and the socket only if still ours */
            close(s->fd);
            s->fd = p[0].fd = p[3].fd = -1;
            continue;
        }
        if (p[0].revents)
            agent_accept(a, s->fd);
    }
}

/* ---- start-up ---------------------------------------------------------------------------- */

/* Shell-quotes s for the eval lines when it holds anything but safe characters. */
static void print_shell_word(const char *s)
{
    if (s[strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._-+:@%,")] ==
        '\0') {
        fputs(s, stdout);
        return;
    }
    putchar('\'');
    for (; *s; s++)
        if (*s == '\'')
            fputs("'\\''", stdout);
        else
            putchar(*s);
    putchar('\'');
}

static void print_exports(const char *path, pid_t pid)
{
    fputs("RUNJOB_AGENT_SOCK=", stdout);
    print_shell_word(path);
    printf("; export RUNJOB_AGENT_SOCK;\nRUNJOB_AGENT_PID=%d; export RUNJOB_AGENT_PID;\n",
           (int)pid);
    (void)fflush(stdout);
}

/* Absolute certificate paths: the agent is matched with later commands by its settings, and
 * `certs/client-cert.pem` names another file in another directory. A file that does not
 * resolve is left as given, for the dial to say what is wrong with it. */
static void absolute_paths(struct client_opts *o, char (*bufs)[PATH_MAX])
{
    const char **paths[] = {&o->ca_path, &o->cert_path, &o->key_path};

    for (size_t i = 0; i < ELEMENTSOF(paths); i++)
        if (realpath(*paths[i], bufs[i]))
            *paths[i] = bufs[i];
}

/* Dials (directly) and pings: the settings work. 0 with *ret and the name the server knows us
 * by in cn, or the exit code (the error printed, on stderr as it is now). */
static int agent_connect(struct client_opts *o, struct rpc_client **ret, char *cn, size_t cap)
{
    Runjob__V1__PingRequest req = RUNJOB__V1__PING_REQUEST__INIT;
    Runjob__V1__PingResponse *pong = NULL;
    _cleanup_(rpc_client_freep) struct rpc_client *c = NULL;
    struct rpc_error err = {0};
    int r;

    if ((r = client_dial(o, &c)))
        return r;
    if (rpc_client_ping(c, &req, &pong, &err) < 0)
        return client_fail(o, &err);
    (void)snprintf(cn, cap, "%s", pong->peer_cn);
    protobuf_c_message_free_unpacked(&pong->base, NULL);
    *ret = TAKE_PTR(c);
    return 0;
}

/* What the start-up's dial is watched with: a server that does not answer holds the Ping for
 * as long as its deadline, and the signals are blocked (they come through sig_fd). */
struct dial_watch {
    const struct client_opts *o;
    struct agent_sock *s; /* removed on a signal when ours (in the foreground) */
    int sig_fd, done_fd;
};

static const char *signal_name(int sig)
{
    return sig == SIGINT    ? "SIGINT"
           : sig == SIGTERM ? "SIGTERM"
           : sig == SIGHUP  ? "SIGHUP"
                            : "a signal";
}

/* Until done_fd: a SIGINT, SIGTERM or SIGHUP ends the process at once. The dial cannot be
 * interrupted and holds nothing to clean up but the socket, so the process ends here. */
static void *watch_dial(void *arg)
{
    struct dial_watch *w = arg;
    struct pollfd p[2] = {{.fd = w->sig_fd, .events = POLLIN},
                          {.fd = w->done_fd, .events = POLLIN}};
    struct signalfd_siginfo si;

    for (;;) {
        if (poll(p, ELEMENTSOF(p), -1) < 0 && errno != EINTR)
            return NULL;
        if (p[1].revents)
            return NULL;
        if (p[0].revents && read(w->sig_fd, &si, sizeof(si)) == sizeof(si))
            break;
    }
    fprintf(stderr, "%s: %s: %s while connecting to %s:%d: exiting\n", w->o->prog, w->o->verb,
            signal_name((int)si.ssi_signo), w->o->host, w->o->port);
    if (w->s)
        agent_sock_remove(w->s);
    _exit(CLIENT_EXIT_FAILED);
}

/* agent_connect, with the signals that end the agent watched meanwhile. */
static int agent_connect_watched(struct client_opts *o, struct agent_sock *s, bool foreground,
                                 int sig_fd, struct rpc_client **ret, char *cn, size_t cap)
{
    struct dial_watch w = {.o = o, .s = foreground ? s : NULL, .sig_fd = sig_fd};
    _cleanup_close_ int done_fd = eventfd(0, EFD_CLOEXEC);
    pthread_t t;
    int r;

    w.done_fd = done_fd;
    if (done_fd < 0 || pthread_create(&t, NULL, watch_dial, &w) != 0)
        return agent_connect(o, ret, cn, cap); /* unwatched: a signal waits for the dial */
    r = agent_connect(o, ret, cn, cap);
    (void)eventfd_write(done_fd, 1);
    (void)pthread_join(t, NULL);
    return r;
}

/* The notAfter of the certificate at path (epoch seconds), or 0 when it cannot be read. */
static int64_t cert_expiry(const char *path)
{
    _cleanup_free_ char *pem = NULL;
    int64_t not_before, not_after;

    if (tls_read_pem(path, &pem) < 0 || tls_cert_dates(pem, &not_before, &not_after) < 0)
        return 0;
    return not_after;
}

/* Opens the agent's log: --log's file, else in the background the socket's path with ".log"
 * added (remembered in s, to be removed with the socket). The file is appended to, made 0600,
 * and must be a regular file of ours: a --socket in a shared directory must not have the agent
 * write into a file another user put there, or through a link. The fd, -1 for stderr (-D
 * without --log), or -errno with the message in msg. */
static int agent_log_open(const struct agent_flags *f, struct agent_sock *s, char *path, size_t cap,
                          char *msg, size_t msg_cap)
{
    struct stat st;
    int fd, n;

    if (!f->log && f->foreground)
        return -1;
    n = snprintf(path, cap, f->log ? "%s" : "%s.log", f->log ? f->log : s->path);
    if (n < 0 || (size_t)n >= cap) {
        (void)snprintf(msg, msg_cap, "the log's path is too long");
        return -ENAMETOOLONG;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
    if (fd < 0) {
        n = -errno;
        (void)snprintf(msg, msg_cap, "cannot open the log '%s': %s", path, strerror(-n));
        return n;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        close(fd);
        (void)snprintf(msg, msg_cap, "the log '%s' is not a file of this user's", path);
        return -EPERM;
    }
    if (!f->log) {
        (void)snprintf(s->log, sizeof(s->log), "%s", path);
        s->log_dev = st.st_dev;
        s->log_ino = st.st_ino;
    }
    return fd;
}

/* Everything after the socket: connect, say so (ready_fd: the parent waiting, else print the
 * exports here), serve until it is time to go. Returns the exit code; *ret_ready says whether
 * the agent got as far as serving (the socket is then its own to remove). */
static int agent_run(struct client_opts *o, const struct agent_flags *f, struct agent_sock *s,
                     int ready_fd, bool *ret_ready)
{
    /* Static: relay threads waiting for work may still look at it while the process exits. */
    static struct agent a;
    _cleanup_close_ int sig_fd = -1, wake_fd = -1;
    char cn[256], log_path[PATH_MAX], msg[PATH_MAX + 64];
    sigset_t mask;
    int r;

    a.uid = geteuid();
    a.log_fd = -1;
    pthread_mutex_init(&a.log_mu, NULL);
    /* Blocked before gRPC starts its threads, which inherit the mask: the signals come only
     * through sig_fd. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    (void)pthread_sigmask(SIG_BLOCK, &mask, NULL);
    (void)signal(SIGPIPE, SIG_IGN); /* a client gone mid-reply is the relay's EPIPE */
    sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sig_fd < 0 || wake_fd < 0) {
        fprintf(stderr, "%s: %s: %s\n", o->prog, o->verb, strerror(errno));
        return CLIENT_EXIT_FAILED;
    }
    /* The agent dials directly: through RUNJOB_AGENT_SOCK it would relay to itself, or to the
     * agent it replaces. */
    (void)unsetenv("RUNJOB_AGENT_SOCK");
    if ((r = agent_connect_watched(o, s, ready_fd < 0, sig_fd, &a.client, cn, sizeof(cn))))
        return r;
    /* Without it, the connection would come back after a server's restart only slowly, or
     * never (rpc_client_keep_connected). */
    if ((r = rpc_client_keep_connected(a.client)) < 0) {
        fprintf(stderr, "%s: %s: cannot start a thread: %s\n", o->prog, o->verb, strerror(-r));
        rpc_client_free(a.client);
        return CLIENT_EXIT_FAILED;
    }
    /* Opened once the dial has worked (a refused start-up leaves no log) and before the daemon
     * drops its stderr (the error is still seen). Left open at exit, like the socket's fd. */
    a.log_fd = agent_log_open(f, s, log_path, sizeof(log_path), msg, sizeof(msg));
    if (a.log_fd < -1) {
        fprintf(stderr, "%s: %s: %s\n", o->prog, o->verb, msg);
        rpc_client_free(a.client);
        return CLIENT_EXIT_FAILED;
    }
    *ret_ready = true;
    if (!f->quiet)
        fprintf(stderr, "runjob agent pid %d: %s:%d as %s, socket %s%s%s\n", (int)getpid(), o->host,
                o->port, cn, s->path, a.log_fd >= 0 ? ", log " : "", a.log_fd >= 0 ? log_path : "");
    if (ready_fd >= 0) {
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

        /* From here nobody reads our stderr: a `2>&1` in the $(...) would wait for us. */
        if (null >= 0) {
            (void)dup2(null, STDERR_FILENO);
            close(null);
        }
        /* The parent prints the exports on it. Gone (a Ctrl-C while we dialled), nobody
         * would know of us: clean up and go. */
        r = proc_write_fd(ready_fd, "R", 1);
        close(ready_fd);
        if (r < 0) {
            rpc_client_free(a.client);
            return CLIENT_EXIT_FAILED;
        }
    } else {
        print_exports(s->path, getpid());
    }
    if (chdir("/") < 0) /* a daemon holds no directory busy; the paths are absolute */
        agent_log(&a, LOG_WARN, false, "chdir /: %s, ignoring", strerror(errno));

    a.wake_fd = wake_fd;
    a.idle_since_ms = clock_ms(CLOCK_MONOTONIC);
    a.expires_s = cert_expiry(o->cert_path);
    for (int i = 0; i < AGENT_CONN_MAX; i++)
        a.conns[i] = -1;
    pthread_mutex_init(&a.lock, NULL);
    pthread_cond_init(&a.idle, NULL);
    pthread_cond_init(&a.work, NULL);
    agent_loop(&a, s, sig_fd, f->idle_ms);
    agent_log_flush(&a);
    agent_sock_remove(s);
    if (!agent_stop_relays(&a)) {
        /* A relay stuck in a call still uses the client: leave it to the exit. */
        agent_log(&a, LOG_WARN, false, "relays still busy after %d s: exiting anyway",
                  AGENT_EXIT_WAIT_MS / 1000);
        _exit(0);
    }
    rpc_client_free(a.client);
    /* a.lock and its conditions stay: a waiting relay thread may wake before the exit. */
    return 0;
}

/* Daemonizes: the child connects and tells over a pipe once it serves; the parent prints the
 * exports then, or exits 255 once the child has failed (its message printed on our stderr). */
static int agent_daemon(struct client_opts *o, const struct agent_flags *f, struct agent_sock *s)
{
    int pfd[2], status = 0, null, r;
    bool ready = false;
    char c;
    pid_t pid;

    if (pipe2(pfd, O_CLOEXEC) < 0) {
        fprintf(stderr, "%s: %s: pipe: %s\n", o->prog, o->verb, strerror(errno));
        return CLIENT_EXIT_FAILED;
    }
    (void)fflush(NULL);
    pid = fork(); /* before any gRPC thread: gRPC does not survive a fork */
    if (pid < 0) {
        fprintf(stderr, "%s: %s: fork: %s\n", o->prog, o->verb, strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return CLIENT_EXIT_FAILED;
    }
    if (pid == 0) {
        close(pfd[0]);
        (void)setsid(); /* no terminal: the shell's hang-up is not ours */
        /* Our stdout is the $(...) the parent prints into: it must not wait for us. */
        null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
            (void)dup2(null, STDIN_FILENO);
            (void)dup2(null, STDOUT_FILENO);
            close(null);
        }
        r = agent_run(o, f, s, pfd[1], &ready);
        if (ready)
            return r;
        /* The parent removes the socket; ours is only a copy of its fd. */
        *s->path = *s->dir = '\0';
        return r;
    }
    close(pfd[1]);
    while ((r = (int)read(pfd[0], &c, 1)) < 0 && errno == EINTR)
        ;
    close(pfd[0]);
    if (r == 1) {
        print_exports(s->path, pid);
        *s->path = *s->dir = '\0'; /* the agent's to remove now */
        return 0;
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != CLIENT_EXIT_FAILED)
        fprintf(stderr, "%s: %s: the agent ended before it was ready (%s %d)\n", o->prog, o->verb,
                WIFEXITED(status) ? "exit status" : "signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    return CLIENT_EXIT_FAILED;
}

static void agent_sock_removep(struct agent_sock *s)
{
    if (s->fd >= 0)
        close(s->fd);
    agent_sock_remove(s);
}

int applet_agent_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        CLIENT_LONGOPTS,
        {"socket", required_argument, NULL, 'a'},
        {"foreground", no_argument, NULL, 'D'},
        {"kill", no_argument, NULL, 'k'},
        {"quiet", no_argument, NULL, 'q'},
        {"idle-timeout", required_argument, NULL, AGENT_OPT_IDLE},
        {"log", required_argument, NULL, AGENT_OPT_LOG},
        {NULL, 0, NULL, 0},
    };
    _cleanup_(agent_sock_removep) struct agent_sock s = {.fd = -1};
    struct agent_flags f = {0};
    struct client_opts o;
    char paths[3][PATH_MAX], msg[PATH_MAX + 256];
    bool ready = false;
    int r;

    client_init(&o, argc, argv);
    if ((r = client_parse_flags(&o, CLIENT_SHORTOPTS "a:Dkq", longopts, usage, take_flag, &f)) !=
        CLIENT_OPT_DONE)
        return r;
    if (optind < argc)
        return client_usage_error(&o, "unexpected argument '%s'", argv[optind]);
    if (o.output_given)
        return client_usage_error(&o, "--output: the agent prints shell commands only");
    if (f.kill) {
        if (f.others)
            return client_usage_error(&o, "--kill takes no other flags but --quiet");
        return kill_agent(&o, &f);
    }
    if ((r = client_opts_finish(&o)))
        return r;
    absolute_paths(&o, paths);
    if (agent_sock_open(&s, f.socket, msg, sizeof(msg)) < 0) {
        fprintf(stderr, "%s: %s: %s\n", o.prog, o.verb, msg);
        return CLIENT_EXIT_FAILED;
    }
    if (!f.foreground)
        return agent_daemon(&o, &f, &s);
    r = agent_run(&o, &f, &s, -1, &ready);
    return r;
}
