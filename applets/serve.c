/* runjob serve / jobmanager serve: flags -> core/server. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <stddef.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "serve.h"

#include "applets.h"
#include "applets/format.h"
#include "core/cleanup.h"
#include "core/log.h"
#include "core/manager.h"
#include "core/server.h"
#include "core/tls.h"

#define MAX_ADMINS 64

struct serve_opts {
    const char *host;
    int port;
    const char *ca_path, *cert_path, *key_path;
    struct rpc_policy policy;
    const char *state_dir;
    const char *admins[MAX_ADMINS + 1];
    size_t n_admins;
    const char *job_user;
    uint64_t max_output_bytes;
    bool keep_output_head;
    int64_t retain_ended_ms;
    uint64_t max_state_bytes;
    uint64_t max_user_output_bytes;
    unsigned max_running;
    enum log_format log_format;
    enum log_level log_level;
    const char *audit_log;
    const char *metrics_file;
    int64_t metrics_interval_ms;
    int64_t heap_trim_interval_ms; /* < 0: never */
    const char *uid_range;         /* --job-uid-range as given, or NULL */
    uid_t uid_first, uid_last;     /* every job a uid of its own from these (0: one user for all) */
    uid_t uid;                     /* --job-user resolved (check_opts) */
    gid_t gid;
};

#define CONTINUE (-1) /* parse_flags and check_opts: go on */

/* Tells systemd (Type=notify) how the server is doing: one datagram to $NOTIFY_SOCKET, as
 * sd_notify(3) sends it; a path starting with '@' is in the abstract namespace. */
static void notify_systemd(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len;
    int fd;

    if (!path || (path[0] != '/' && path[0] != '@') || (len = strlen(path)) >= sizeof(sa.sun_path))
        return;
    memcpy(sa.sun_path, path, len);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0';
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
        log_debug("NOTIFY_SOCKET %s: %s", path, strerror(errno));
    (void)close(fd);
}

static const char usage[] =
    "Usage: %s serve [flags]\n"
    "\n"
    "Run the job server: mTLS (TLS 1.3 only) gRPC on HOST:PORT; every client certificate's\n"
    "Common Name is its user.\n"
    "\n"
    "  -H, --server-host HOST           address to listen on (default localhost)\n"
    "  -P, --server-port PORT           port; 0 = any free port, logged (default 8080)\n"
    "      --client-pem-path PATH       CA bundle client certificates must chain to\n"
    "                                   (default certs/ca-clients-bundle.pem)\n"
    "      --server-cert-path PATH      server certificate (default certs/server-cert.pem)\n"
    "      --server-key-path PATH       server private key (default certs/server-key.pem)\n"
    "      --default-limits-cpu MILLIS  CPU per job, 1000 = one CPU (default 1000)\n"
    "      --default-limits-bytes SIZE  memory per job (default 512000000)\n"
    "      --default-limits-iops N      read and write IO operations/s per device (400000)\n"
    "      --default-limits-pids N      processes per job (default 1024)\n"
    "      --max-limits-cpu MILLIS      the most a request may ask (default: CPUs x 1000)\n"
    "      --max-limits-bytes SIZE      (default 4GiB)\n"
    "      --max-limits-iops N          (default 1000000)\n"
    "      --max-limits-pids N          (default 32768)\n"
    "      --state-dir DIR              job records and output (default /var/lib/runjob)\n"
    "      --admin-cn CN                a CN that sees and stops every job; repeatable\n"
    "                                   (default administrator)\n"
    "      --job-uid-range FIRST-LAST   each job runs as a uid (and gid) of its own from these,\n"
    "                                   handed out in turn (default 1879048192-1879113727,\n"
    "                                   above the uids systemd gives containers)\n"
    "      --job-user USER              instead, every job runs as this one user: a name or\n"
    "                                   UID[:GID], e.g. nobody\n"
    "      --allow-host-network         let requests ask for the host's network (default off)\n"
    "      --max-output-bytes SIZE      output recorded per job (default 1GiB)\n"
    "      --keep-output ends|head      past that cap: keep the first and the newest parts,\n"
    "                                   dropping the middle (ends, the default), or only\n"
    "                                   the first (head); a stream notes where bytes went\n"
    "      --retain-ended DURATION      remove ended jobs (record and output) this long after\n"
    "                                   they end: 1h, 7d ... (default 7d; 0 keeps them)\n"
    "      --max-user-output-bytes SIZE a user whose jobs keep this much output gets no new\n"
    "                                   Start (RESOURCE_EXHAUSTED) until some are removed\n"
    "                                   (default 0: no quota)\n"
    "      --max-state-bytes SIZE       over this much job output in --state-dir, remove the\n"
    "                                   ended jobs that ended first (default 0: no cap)\n"
    "      --stop-signal SIG            a Stop's first signal when it names none, and the one\n"
    "                                   jobs get at shutdown: TERM, QUIT, INT, 15 ... (TERM)\n"
    "      --stop-grace DURATION        default wait between that signal and the kill: 500ms,\n"
    "                                   10s, 1m (default 10s)\n"
    "      --max-running-jobs-per-user N  (default 64; 0 = no cap)\n"
    "      --log-format text|json       (default text)\n"
    "      --log-level error|warn|info|debug  (default info)\n"
    "      --audit-log PATH             one line per RPC (default: stderr); SIGHUP reopens it\n"
    "      --metrics-file PATH          Prometheus text metrics, rewritten atomically every\n"
    "                                   --metrics-interval (for node_exporter's textfile\n"
    "                                   collector; default: none)\n"
    "      --metrics-interval DURATION  how often: 1s .. 1h (default 15s)\n"
    "      --heap-trim-interval DURATION  how often memory freed after a burst (connections,\n"
    "                                   streams) goes back to the system: 1s .. 1h, or 0\n"
    "                                   for never (default 30s)\n"
    "  -h, --help                       this text\n"
    "\n"
    "SIZE takes K, M, G, T or KiB, MiB, GiB, TiB (x1024), or KB, MB, GB, TB (x1000), as the\n"
    "client does. Make certificates with 'runjob certs'.\n";

enum {
    OPT_CLIENT_PEM = 256,
    OPT_SERVER_CERT,
    OPT_SERVER_KEY,
    OPT_DEF_CPU,
    OPT_DEF_BYTES,
    OPT_DEF_IOPS,
    OPT_DEF_PIDS,
    OPT_MAX_CPU,
    OPT_MAX_BYTES,
    OPT_MAX_IOPS,
    OPT_MAX_PIDS,
    OPT_STATE_DIR,
    OPT_ADMIN_CN,
    OPT_JOB_USER,
    OPT_JOB_UID_RANGE,
    OPT_HOST_NET,
    OPT_MAX_OUTPUT,
    OPT_KEEP_OUTPUT,
    OPT_RETAIN_ENDED,
    OPT_MAX_STATE,
    OPT_MAX_USER_OUTPUT,
    OPT_STOP_GRACE,
    OPT_STOP_SIGNAL,
    OPT_MAX_RUNNING,
    OPT_LOG_FORMAT,
    OPT_LOG_LEVEL,
    OPT_AUDIT_LOG,
    OPT_METRICS_FILE,
    OPT_METRICS_INTERVAL,
    OPT_HEAP_TRIM_INTERVAL,
};

static const struct option long_opts[] = {
    {"server-host", required_argument, NULL, 'H'},
    {"server-port", required_argument, NULL, 'P'},
    {"client-pem-path", required_argument, NULL, OPT_CLIENT_PEM},
    {"server-cert-path", required_argument, NULL, OPT_SERVER_CERT},
    {"server-key-path", required_argument, NULL, OPT_SERVER_KEY},
    {"default-limits-cpu", required_argument, NULL, OPT_DEF_CPU},
    {"default-limits-bytes", required_argument, NULL, OPT_DEF_BYTES},
    {"default-limits-iops", required_argument, NULL, OPT_DEF_IOPS},
    {"default-limits-pids", required_argument, NULL, OPT_DEF_PIDS},
    {"max-limits-cpu", required_argument, NULL, OPT_MAX_CPU},
    {"max-limits-bytes", required_argument, NULL, OPT_MAX_BYTES},
    {"max-limits-iops", required_argument, NULL, OPT_MAX_IOPS},
    {"max-limits-pids", required_argument, NULL, OPT_MAX_PIDS},
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"admin-cn", required_argument, NULL, OPT_ADMIN_CN},
    {"job-user", required_argument, NULL, OPT_JOB_USER},
    {"job-uid-range", required_argument, NULL, OPT_JOB_UID_RANGE},
    {"allow-host-network", no_argument, NULL, OPT_HOST_NET},
    {"max-output-bytes", required_argument, NULL, OPT_MAX_OUTPUT},
    {"keep-output", required_argument, NULL, OPT_KEEP_OUTPUT},
    {"retain-ended", required_argument, NULL, OPT_RETAIN_ENDED},
    {"max-state-bytes", required_argument, NULL, OPT_MAX_STATE},
    {"max-user-output-bytes", required_argument, NULL, OPT_MAX_USER_OUTPUT},
    {"stop-grace", required_argument, NULL, OPT_STOP_GRACE},
    {"stop-signal", required_argument, NULL, OPT_STOP_SIGNAL},
    {"max-running-jobs-per-user", required_argument, NULL, OPT_MAX_RUNNING},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"audit-log", required_argument, NULL, OPT_AUDIT_LOG},
    {"metrics-file", required_argument, NULL, OPT_METRICS_FILE},
    {"metrics-interval", required_argument, NULL, OPT_METRICS_INTERVAL},
    {"heap-trim-interval", required_argument, NULL, OPT_HEAP_TRIM_INTERVAL},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Digits only, no sign, no overflow. */
static int parse_u64(const char *s, const char **ret_end, uint64_t *ret)
{
    uint64_t v = 0;
    const char *p = s;

    if (*p < '0' || *p > '9')
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            return -ERANGE;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *ret_end = p;
    *ret = v;
    return 0;
}

int serve_parse_ids(const char *s, uid_t *ret_uid, gid_t *ret_gid)
{
    const char *end;
    uint64_t uid, gid;

    if (parse_u64(s, &end, &uid) < 0 || (*end != '\0' && *end != ':'))
        return -ENOENT;
    gid = uid;
    if (*end == ':' && (parse_u64(end + 1, &end, &gid) < 0 || *end))
        return -EINVAL;
    if (uid >= UINT32_MAX || gid >= UINT32_MAX)
        return -ERANGE;
    *ret_uid = (uid_t)uid;
    *ret_gid = (gid_t)gid;
    return 0;
}

/* USER as a name in /etc/passwd (read directly: no NSS in a static binary) or UID[:GID]. */
static int resolve_user(const char *user, uid_t *ret_uid, gid_t *ret_gid)
{
    _cleanup_fclose_ FILE *f = NULL;
    struct passwd *pw;
    int r;

    r = serve_parse_ids(user, ret_uid, ret_gid);
    if (r != -ENOENT)
        return r;
    f = fopen("/etc/passwd", "re");
    if (!f)
        return -errno;
    while ((pw = fgetpwent(f)))
        if (strcmp(pw->pw_name, user) == 0) {
            *ret_uid = pw->pw_uid;
            *ret_gid = pw->pw_gid;
            return 0;
        }
    return -ENOENT;
}

static int bad(const char *flag, const char *value, const char *want)
{
    fprintf(stderr, "runjob serve: invalid %s '%s': %s\n", flag, value, want);
    return 2;
}

/* Reads a PEM file; on failure prints one line naming it and the fix. */
static int load_pem(const char *flag, const char *path, char **ret)
{
    int r = tls_read_pem(path, ret);

    if (r == -EBADMSG)
        fprintf(stderr,
                "runjob serve: %s '%s' holds no PEM data; make certificates with 'runjob certs'\n",
                flag, path);
    else if (r < 0)
        fprintf(stderr,
                "runjob serve: cannot read %s '%s': %s; make certificates with 'runjob certs' "
                "(or pass %s)\n",
                flag, path, strerror(-r), flag);
    return r;
}

/* A running job holds about a dozen fds (pipes, pidfd, status fd, cgroup folders) and every
 * kept job its output log: under the usual soft limit of 1024 (systemd's default) Start would
 * fail with EMFILE from about the 90th concurrent job. The hard limit is ours to take. */
static void raise_nofile_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        log_warn("cannot raise the open files limit to %llu: %s, ignoring",
                 (unsigned long long)rl.rlim_max, strerror(errno));
}

/* The flags into *o: CONTINUE, or the exit code (0 after --help, 2 for a bad flag). */
static int parse_flags(int argc, char **argv, struct serve_opts *o)
{
    int c;

    optind = 1;
    opterr = 0; /* our own one-line messages below */
    while ((c = getopt_long(argc, argv, ":H:P:h", long_opts, NULL)) != -1) {
        uint64_t v = 0;
        switch (c) {
        case 'H':
            if (!*optarg)
                return bad("--server-host", optarg, "empty");
            o->host = optarg;
            break;
        case 'P':
            if (fmt_parse_uint(optarg, &v) < 0 || v > 65535)
                return bad("--server-port", optarg, "want 0..65535");
            o->port = (int)v;
            break;
        case OPT_CLIENT_PEM:
            o->ca_path = optarg;
            break;
        case OPT_SERVER_CERT:
            o->cert_path = optarg;
            break;
        case OPT_SERVER_KEY:
            o->key_path = optarg;
            break;
        case OPT_DEF_CPU:
        case OPT_MAX_CPU:
        case OPT_DEF_PIDS:
        case OPT_MAX_PIDS:
        case OPT_DEF_IOPS:
        case OPT_MAX_IOPS:
            if (fmt_parse_uint(optarg, &v) < 0 || v == 0)
                return bad(argv[optind - 1][1] == '-' ? argv[optind - 1] : "limit", optarg,
                           "want a positive integer");
            if (c == OPT_DEF_CPU)
                o->policy.defaults.cpu_millis = v;
            else if (c == OPT_MAX_CPU)
                o->policy.maxima.cpu_millis = v;
            else if (c == OPT_DEF_PIDS)
                o->policy.defaults.pids = v;
            else if (c == OPT_MAX_PIDS)
                o->policy.maxima.pids = v;
            else if (c == OPT_DEF_IOPS)
                o->policy.defaults.io_riops = o->policy.defaults.io_wiops = v;
            else
                o->policy.maxima.io_riops = o->policy.maxima.io_wiops = v;
            break;
        case OPT_DEF_BYTES:
        case OPT_MAX_BYTES:
            if (fmt_parse_size(optarg, &v) < 0 || v < 4096)
                return bad(c == OPT_DEF_BYTES ? "--default-limits-bytes" : "--max-limits-bytes",
                           optarg, "want a size of at least 4096, e.g. 512000000 or 512MiB");
            if (c == OPT_DEF_BYTES)
                o->policy.defaults.memory_bytes = v;
            else
                o->policy.maxima.memory_bytes = v;
            break;
        case OPT_STATE_DIR:
            if (optarg[0] != '/')
                return bad("--state-dir", optarg, "want an absolute path");
            o->state_dir = optarg;
            break;
        case OPT_ADMIN_CN:
            if (!*optarg || strlen(optarg) > 255)
                return bad("--admin-cn", optarg, "want 1..255 bytes");
            if (o->n_admins == MAX_ADMINS)
                return bad("--admin-cn", optarg, "too many (at most 64)");
            o->admins[o->n_admins++] = optarg;
            break;
        case OPT_JOB_UID_RANGE: {
            const char *end;
            uint64_t first, last;
            if (parse_u64(optarg, &end, &first) < 0 || *end != '-' ||
                parse_u64(end + 1, &end, &last) < 0 || *end || first == 0 || last < first ||
                last >= UINT32_MAX || last - first >= (1u << 24))
                return bad("--job-uid-range", optarg,
                           "want FIRST-LAST, 1 <= FIRST <= LAST, at most 16777216 uids");
            o->uid_range = optarg;
            o->uid_first = (uid_t)first;
            o->uid_last = (uid_t)last;
            break;
        }
        case OPT_JOB_USER:
            o->job_user = optarg;
            break;
        case OPT_HOST_NET:
            o->policy.allow_host_network = true;
            break;
        case OPT_MAX_OUTPUT:
            if (fmt_parse_size(optarg, &v) < 0 || v == 0)
                return bad("--max-output-bytes", optarg, "want a size, e.g. 1GiB");
            o->max_output_bytes = v;
            break;
        case OPT_KEEP_OUTPUT:
            if (strcmp(optarg, "ends") == 0)
                o->keep_output_head = false;
            else if (strcmp(optarg, "head") == 0)
                o->keep_output_head = true;
            else
                return bad("--keep-output", optarg, "want ends or head");
            break;
        case OPT_RETAIN_ENDED:
            if (fmt_parse_duration(optarg, &o->retain_ended_ms) < 0 || o->retain_ended_ms < 0)
                return bad("--retain-ended", optarg, "want a duration, e.g. 1h, 7d (0 = forever)");
            break;
        case OPT_MAX_USER_OUTPUT:
            if (fmt_parse_size(optarg, &v) < 0)
                return bad("--max-user-output-bytes", optarg,
                           "want a size, e.g. 10GiB (0 = no quota)");
            o->max_user_output_bytes = v;
            break;
        case OPT_MAX_STATE:
            if (fmt_parse_size(optarg, &v) < 0)
                return bad("--max-state-bytes", optarg, "want a size, e.g. 50GiB (0 = no cap)");
            o->max_state_bytes = v;
            break;
        case OPT_STOP_SIGNAL:
            if (fmt_parse_signal(optarg, &o->policy.default_signal) < 0)
                return bad("--stop-signal", optarg, "want a signal: TERM, QUIT, INT, 15 ...");
            break;
        case OPT_STOP_GRACE:
            if (fmt_parse_duration(optarg, &o->policy.default_grace_ms) < 0 ||
                o->policy.default_grace_ms > RPC_MAX_GRACE_MS)
                return bad("--stop-grace", optarg, "want a duration up to 1h, e.g. 500ms, 10s, 1m");
            break;
        case OPT_MAX_RUNNING:
            if (fmt_parse_uint(optarg, &v) < 0 || v > 1000000)
                return bad("--max-running-jobs-per-user", optarg, "want 0..1000000");
            o->max_running = (unsigned)v;
            break;
        case OPT_LOG_FORMAT:
            if (log_parse_format(optarg, &o->log_format) < 0)
                return bad("--log-format", optarg, "want text or json");
            break;
        case OPT_LOG_LEVEL:
            if (log_parse_level(optarg, &o->log_level) < 0)
                return bad("--log-level", optarg, "want error, warn, info or debug");
            break;
        case OPT_METRICS_FILE:
            if (!*optarg)
                return bad("--metrics-file", optarg, "want a path");
            o->metrics_file = optarg;
            break;
        case OPT_METRICS_INTERVAL:
            if (fmt_parse_duration(optarg, &o->metrics_interval_ms) < 0 ||
                o->metrics_interval_ms < 1000 || o->metrics_interval_ms > 3600 * 1000)
                return bad("--metrics-interval", optarg, "want a duration from 1s to 1h, e.g. 15s");
            break;
        case OPT_HEAP_TRIM_INTERVAL:
            if (fmt_parse_duration(optarg, &o->heap_trim_interval_ms) < 0 ||
                (o->heap_trim_interval_ms != 0 &&
                 (o->heap_trim_interval_ms < 1000 || o->heap_trim_interval_ms > 3600 * 1000)))
                return bad("--heap-trim-interval", optarg,
                           "want 0 (never) or a duration from 1s to 1h, e.g. 30s");
            if (o->heap_trim_interval_ms == 0)
                o->heap_trim_interval_ms = -1;
            break;
        case OPT_AUDIT_LOG:
            o->audit_log = optarg;
            break;
        case 'h':
            printf(usage, "runjob");
            return 0;
        case ':':
            fprintf(stderr, "runjob serve: flag '%s' needs a value (see 'runjob serve --help')\n",
                    argv[optind - 1]);
            return 2;
        default:
            if (optopt)
                fprintf(stderr, "runjob serve: unknown flag '-%c' (see 'runjob serve --help')\n",
                        optopt);
            else
                fprintf(stderr, "runjob serve: unknown flag '%s' (see 'runjob serve --help')\n",
                        argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "runjob serve: unexpected argument '%s' (see 'runjob serve --help')\n",
                argv[optind]);
        return 2;
    }
    return CONTINUE;
}

/* What no single flag can say wrong: defaults above maxima or below the floors, the job user.
 * CONTINUE with o->admins terminated and o->uid/gid set, or the exit code (2). */
static int check_opts(struct serve_opts *o)
{
#define CHECK_MAX(f, flag)                                                                         \
    if (o->policy.defaults.f > o->policy.maxima.f) {                                               \
        fprintf(stderr,                                                                            \
                "runjob serve: --default-limits-" flag " %" PRIu64 " is above --max-limits-" flag  \
                " %" PRIu64 "\n",                                                                  \
                o->policy.defaults.f, o->policy.maxima.f);                                         \
        return 2;                                                                                  \
    }
    CHECK_MAX(cpu_millis, "cpu")
    CHECK_MAX(memory_bytes, "bytes")
    CHECK_MAX(io_riops, "iops")
    CHECK_MAX(pids, "pids")
#undef CHECK_MAX
    /* the floors a request is held to (core/rpc.h) hold for the defaults and maxima too: a
     * default below them would make every job fail at its first fork or page */
#define CHECK_MIN(f, flag, min, why)                                                               \
    if (o->policy.defaults.f < (min) || o->policy.maxima.f < (min)) {                              \
        fprintf(stderr,                                                                            \
                "runjob serve: --default-limits-" flag " and --max-limits-" flag                   \
                " must be at least %" PRIu64 " (" why ")\n",                                       \
                (uint64_t)(min));                                                                  \
        return 2;                                                                                  \
    }
    CHECK_MIN(cpu_millis, "cpu", RPC_MIN_CPU_MILLIS, "the kernel's smallest CPU quota")
    CHECK_MIN(memory_bytes, "bytes", RPC_MIN_MEMORY_BYTES, "below it no job can start")
    CHECK_MIN(pids, "pids", RPC_MIN_PIDS, "the job's init and its command")
#undef CHECK_MIN
    if (o->n_admins == 0)
        o->admins[o->n_admins++] = "administrator";
    o->admins[o->n_admins] = NULL;
    if (o->job_user && o->uid_range) {
        fprintf(stderr, "runjob serve: --job-user and --job-uid-range: choose one (one user for "
                        "every job, or a uid of its own for each)\n");
        return 2;
    }
    if (!o->job_user)
        return CONTINUE; /* the uid range */
    o->uid_first = o->uid_last = 0;
    if (resolve_user(o->job_user, &o->uid, &o->gid) < 0)
        return bad("--job-user", o->job_user, "no such user (a name in /etc/passwd or UID[:GID])");
    if (o->uid == 0) {
        fprintf(stderr, "runjob serve: --job-user '%s' is root; jobs may not run as root\n",
                o->job_user);
        return 2;
    }
    /* The job runner refuses group 0 as well (root's files writable by the group): say so now,
     * not at every Start. */
    if (o->gid == 0) {
        fprintf(stderr,
                "runjob serve: --job-user '%s' has group 0 (root's); give another group: "
                "USER:GID or UID:GID\n",
                o->job_user);
        return 2;
    }
    return CONTINUE;
}

/* Credentials, the audit log, signals, the job manager and the server; serves until SIGTERM or
 * SIGINT. The exit code. */
static int serve(const struct serve_opts *o)
{
    _cleanup_free_ char *ca = NULL, *cert = NULL, *key = NULL;
    _cleanup_close_ int audit_fd = -1;
    _cleanup_close_ int sigfd = -1;
    struct server_config cfg = {0};
    struct jm_config jc = {0};
    struct jm *jm = NULL;
    struct server *srv = NULL;
    char errbuf[256] = "";
    sigset_t mask;
    int r;

    if (load_pem("--client-pem-path", o->ca_path, &ca) < 0 ||
        load_pem("--server-cert-path", o->cert_path, &cert) < 0 ||
        load_pem("--server-key-path", o->key_path, &key) < 0)
        return 1;
    if (tls_count_certs(ca) < 0) {
        fprintf(stderr,
                "runjob serve: --client-pem-path '%s' holds no certificate; make "
                "certificates with 'runjob certs'\n",
                o->ca_path);
        return 1;
    }
    r = tls_check_key_pair(cert, key);
    if (r < 0) {
        fprintf(stderr,
                "runjob serve: %s: --server-cert-path '%s' and --server-key-path '%s'%s; "
                "make certificates with 'runjob certs'\n",
                r == -EKEYREJECTED ? "key mismatch" : "unreadable", o->cert_path, o->key_path,
                r == -EKEYREJECTED ? " do not belong together" : " do not parse");
        return 1;
    }
    if (o->audit_log) {
        audit_fd = open(o->audit_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
        if (audit_fd < 0) {
            fprintf(stderr, "runjob serve: cannot open --audit-log '%s': %s\n", o->audit_log,
                    strerror(errno));
            return 1;
        }
    }

    /* Every thread inherits this mask (they are all created below): SIGTERM/SIGINT arrive only
     * through the signalfd that server_run watches. */
    (void)signal(SIGPIPE, SIG_IGN);
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    (void)sigprocmask(SIG_BLOCK, &mask, NULL);
    sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (sigfd < 0) {
        log_errno(-errno, "signalfd");
        return 1;
    }

    raise_nofile_limit();
    /* Before any thread starts. glibc gives memory back (madvise, brk) once 128 KiB lie free at
     * the top of an arena, and a stream frees about that much after every message (gRPC's 8 KiB
     * TLS staging slices of a 1 MiB message): each message's memory was faulted in again, page
     * by page, and each madvise shot down TLB entries on the other CPU. 4 MiB covers the
     * messages in flight (core/server-stream.c: a 2 MiB budget) and their encrypted copies.
     * Measured: server CPU for a 1 GiB stream 1.4-1.6 s -> 0.7-0.8 s (bench/RESULTS.md
     * "Stream rate"). Setting it also fixes the mmap threshold at 128 KiB (no dynamic growth):
     * the chunk buffers above that are pooled (core/rpc-pool.c). */
    (void)mallopt(M_TRIM_THRESHOLD, 4 << 20);
    if (server_port_is_taken(o->host, o->port)) {
        log_error("cannot listen on %s:%d: the port is taken (by another runjob serve?)", o->host,
                  o->port);
        return 1;
    }
    jc.state_dir = o->state_dir;
    jc.admin_cns = o->admins;
    jc.max_running_per_user = o->max_running;
    jc.job_uid = o->uid;
    jc.job_gid = o->gid;
    jc.uid_first = o->uid_first;
    jc.uid_last = o->uid_last;
    jc.max_output_bytes = o->max_output_bytes;
    jc.keep_output_head = o->keep_output_head;
    jc.retain_ended_ms = o->retain_ended_ms;
    jc.max_state_bytes = o->max_state_bytes;
    jc.max_user_output_bytes = o->max_user_output_bytes;
    jc.default_limits = o->policy.defaults;
    jc.stop_grace_ms = o->policy.default_grace_ms;
    jc.stop_signal = o->policy.default_signal;
    jc.spares = JM_SPARES_DEFAULT;
    jc.runner.prespawn_shims = JOB_PRESPAWN_DEFAULT;
    r = jm_new(&jc, &jm, errbuf, sizeof(errbuf));
    if (r < 0) {
        log_errno(r, "cannot %s", errbuf[0] ? errbuf : "start the job manager");
        return 1;
    }
    cfg.host = o->host;
    cfg.port = o->port;
    cfg.ca_pem = ca;
    cfg.cert_pem = cert;
    cfg.key_pem = key;
    cfg.policy = o->policy;
    cfg.manager = jm;
    cfg.audit_fd = audit_fd >= 0 ? audit_fd : STDERR_FILENO;
    cfg.audit_path = audit_fd >= 0 ? o->audit_log : NULL;
    cfg.audit_json = o->log_format == LOG_FORMAT_JSON;
    cfg.metrics_path = o->metrics_file;
    cfg.metrics_interval_ms = o->metrics_interval_ms;
    cfg.heap_trim_interval_ms = o->heap_trim_interval_ms;
    r = server_new(&cfg, &srv, errbuf, sizeof(errbuf));
    if (r < 0) {
        log_errno(r, "cannot %s", errbuf[0] ? errbuf : "start the server");
        jm_free(jm);
        return 1;
    }
    log_info("listening on %s:%d (TLS 1.3 only, client certificates required; %s)", o->host,
             server_port(srv), tls_openssl_version());
    notify_systemd("READY=1");
    r = server_run(srv, sigfd);
    notify_systemd("STOPPING=1");
    server_free(srv);
    jm_free(jm);
    return r < 0 ? 1 : 0;
}

int applet_serve_main(int argc, char **argv)
{
    struct serve_opts o = {
        .host = "localhost",
        .port = 8080,
        .ca_path = "certs/ca-clients-bundle.pem",
        .cert_path = "certs/server-cert.pem",
        .key_path = "certs/server-key.pem",
        .policy = {.defaults = {.cpu_millis = 1000,
                                .memory_bytes = 512000000,
                                .io_riops = 400000,
                                .io_wiops = 400000,
                                .pids = 1024},
                   .maxima = {.memory_bytes = 4ull << 30,
                              .io_riops = 1000000,
                              .io_wiops = 1000000,
                              .pids = 32768},
                   .default_grace_ms = 10000},
        .state_dir = "/var/lib/runjob",
        .uid_first = 1879048192, /* 0x70000000: past systemd's container range */
        .uid_last = 1879048192 + 65535,
        .max_output_bytes = 1ull << 30,
        .retain_ended_ms = JM_RETAIN_ENDED_DEFAULT_MS,
        .max_running = 64,
        .log_format = LOG_FORMAT_TEXT,
        .log_level = LOG_INFO,
        .metrics_interval_ms = SERVER_METRICS_PERIOD_MS,
        .heap_trim_interval_ms = SERVER_HEAP_TRIM_PERIOD_MS,
    };
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int r;

    o.policy.maxima.cpu_millis = (uint64_t)(ncpu > 0 ? ncpu : 1) * 1000;
    r = parse_flags(argc, argv, &o);
    if (r == CONTINUE)
        r = check_opts(&o);
    if (r != CONTINUE)
        return r;
    log_setup("runjob", o.log_level, o.log_format);
    return serve(&o);
}
