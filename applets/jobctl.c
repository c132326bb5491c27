/* The jobctl personality: the published second design's command-line client, speaking that
 * design's service (jobmanager.v1.JobManager, core/server-jobmanager.c) end to end, with its
 * flags and defaults: --hostPort :24482, -u/--userID client1. It shares runjob's flag parser,
 * certificate lookup, dial and error lines (applets/client.h); only the calls differ. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "applets/applets.h"
#include "applets/client.h"
#include "applets/format.h"
#include "applets/suggest.h"

#define JOBCTL_DEFAULT_PORT "24482"
#define JOBCTL_DEFAULT_USER "client1"

/* clang-format off */
#define JOBCTL_USAGE_CONNECTION                                                                    \
    "Connection:\n"                                                                                \
    "      --hostPort HOST:PORT   the server (:" JOBCTL_DEFAULT_PORT ", that is localhost:"           \
    JOBCTL_DEFAULT_PORT "); [::1]:PORT for IPv6\n"                                                 \
    "  -u, --userID USER          use certs/USER-cert.pem and certs/USER-key.pem of the\n"        \
    "                             working directory (" JOBCTL_DEFAULT_USER ", unless RUNJOB_USER\n" \
    "                             or a context says otherwise: runjob context)\n"                \
    "      --context NAME         the saved settings to use (runjob context) [RUNJOB_CONTEXT]\n" \
    "      --ca-cert-path FILE, --client-cert-path FILE, --client-key-path FILE\n"                 \
    "                             other certificate files (as runjob's; the RUNJOB_*\n"           \
    "                             variables of `runjob --help` apply too)\n"
/* clang-format on */

static const char usage[] =
    "Usage: jobctl [--hostPort HOST:PORT] [-u USER] <command> [flags] [args...]\n"
    "\n"
    "The command-line client of the jobmanager.v1.JobManager service, which `runjob serve`\n"
    "serves beside its own (start a server for jobctl with `runjob serve -P 24482`).\n"
    "\n"
    "Commands:\n"
    "  start -j NAME -c /path -- args...   start a job, print its id\n"
    "  stop ID                             kill a job (SIGKILL), print its status\n"
    "  query ID                            a job's status\n"
    "  list                                your jobs (everyone's for an administrator)\n"
    "  stream [-s stdout|stderr|all] ID    a job's output from its first byte, until it ends\n"
    "  completion bash|zsh                 a shell completion script\n"
    "\n" JOBCTL_USAGE_CONNECTION
    "  -h, --help                 this help; `jobctl <command> --help` for a command's\n"
    "\n"
    "Example:\n"
    "  jobctl --hostPort 127.0.0.1:24482 -u alice start -j hello -c /bin/echo -- hello world\n";

/* Connection flags, before the verb and after it alike. */
#define JOBCTL_SHORTOPTS "u:h"
enum { JOBCTL_OPT_HOSTPORT = CLIENT_OPT_APPLET + 0x10, JOBCTL_OPT_DRY_RUN };
/* clang-format off */
#define JOBCTL_LONGOPTS                                                                            \
    {"hostPort", required_argument, NULL, JOBCTL_OPT_HOSTPORT},                                    \
        {"userID", required_argument, NULL, 'u'}, {"user", required_argument, NULL, 'u'},         \
        {"help", no_argument, NULL, 'h'},                                                          \
        {"ca-cert-path", required_argument, NULL, CLIENT_OPT_CA},                                  \
        {"client-cert-path", required_argument, NULL, CLIENT_OPT_CERT},                            \
        {"client-key-path", required_argument, NULL, CLIENT_OPT_KEY},                              \
        {"context", required_argument, NULL, CLIENT_OPT_CONTEXT}
/* clang-format on */

struct jobctl {
    struct client_opts o;
    char host[256], port[8];
    bool user_given;
    /* start */
    const char *name, *command;
    bool dry_run;
    /* stream */
    Jobmanager__V1__OutputStream select;
};

/* host:port, [v6]:port, :port (localhost). */
static int take_hostport(struct jobctl *jc, const char *hostport)
{
    const char *colon = strrchr(hostport, ':');
    const char *h = hostport;
    size_t hl = colon ? (size_t)(colon - hostport) : strlen(hostport);
    uint64_t port;

    if (!colon || fmt_parse_uint(colon + 1, &port) < 0 || port < 1 || port > 65535 ||
        hl >= sizeof(jc->host))
        return client_usage_error(&jc->o, "--hostPort '%s' is not HOST:PORT (like :24482)",
                                  hostport);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    memcpy(jc->host, h, hl);
    jc->host[hl] = '\0';
    (void)snprintf(jc->port, sizeof(jc->port), "%u", (unsigned)port);
    jc->o.host = jc->host[0] ? jc->host : "localhost";
    jc->o.port = (int)port;
    return CLIENT_OPT_DONE;
}

static int take_flag(struct client_opts *o, int opt, const char *arg, void *ctx)
{
    struct jobctl *jc = ctx;

    switch (opt) {
    case JOBCTL_OPT_HOSTPORT:
        return take_hostport(jc, arg);
    case 'u':
        jc->user_given = true;
        return CLIENT_OPT_OTHER; /* client_option checks and takes it */
    case 'j':
        jc->name = arg;
        return CLIENT_OPT_DONE;
    case 'c':
        jc->command = arg;
        return CLIENT_OPT_DONE;
    case JOBCTL_OPT_DRY_RUN:
        jc->dry_run = true;
        return CLIENT_OPT_DONE;
    case 's':
        if (strcmp(arg, "stdout") == 0)
            jc->select = JOBMANAGER__V1__OUTPUT_STREAM__STDOUT;
        else if (strcmp(arg, "stderr") == 0)
            jc->select = JOBMANAGER__V1__OUTPUT_STREAM__STDERR;
        else if (strcmp(arg, "all") == 0 || strcmp(arg, "both") == 0)
            jc->select = JOBMANAGER__V1__OUTPUT_STREAM__UNSPECIFIED;
        else
            return client_usage_error(o, "-s '%s': choose stdout, stderr or all", arg);
        return CLIENT_OPT_DONE;
    default:
        (void)o;
        return CLIENT_OPT_OTHER;
    }
}

/* ---- the status table ------------------------------------------------------------------- */

static const char *state_of(const Jobmanager__V1__JobStatus *st)
{
    if (st->isrunning)
        return "running";
    if (st->signalnumber)
        return "killed";
    if (st->exitcode >= 0)
        return "exited";
    return "failed";
}

/* NAME, ID, [OWNER,] STATE, EXIT, SIGNAL, PID, ERROR. OWNER when the jobs are not all the
 * caller's (an administrator's list). */
static int print_jobs(const struct jobctl *jc, Jobmanager__V1__JobStatus *const *jobs, size_t n)
{
    static const char *const headers[] = {"NAME", "ID",  "OWNER", "STATE",
                                          "EXIT", "SIG", "PID",   "ERROR"};
    const char *me = jc->o.user;
    bool owner = false;
    struct table *t;

    for (size_t i = 0; i < n; i++)
        if ((me && strcmp(jobs[i]->owner, me) != 0) || strcmp(jobs[i]->owner, jobs[0]->owner))
            owner = true;
    t = table_new(owner ? 8 : 7, owner ? headers
                                       : (const char *const[]){"NAME", "ID", "STATE", "EXIT", "SIG",
                                                               "PID", "ERROR"});
    if (!t)
        return 1;
    for (size_t i = 0; i < n; i++) {
        const Jobmanager__V1__JobStatus *st = jobs[i];
        char exit_s[16], sig_s[32], pid_s[16];
        const char *cells[8];
        size_t c = 0;

        (void)snprintf(exit_s, sizeof(exit_s), "%d", (int)st->exitcode);
        (void)fmt_signal_name(sig_s, sizeof(sig_s), st->signalnumber);
        (void)snprintf(pid_s, sizeof(pid_s), "%d", (int)st->pid);
        cells[c++] = st->job && st->job->name && st->job->name[0] ? st->job->name : NULL;
        cells[c++] = st->job && st->job->id ? st->job->id->id : NULL;
        if (owner)
            cells[c++] = st->owner;
        cells[c++] = state_of(st);
        cells[c++] = st->exitcode >= 0 ? exit_s : NULL;
        cells[c++] = st->signalnumber ? sig_s : NULL;
        cells[c++] = st->pid > 0 ? pid_s : NULL;
        cells[c++] = st->errormessage && st->errormessage[0] ? st->errormessage : NULL;
        if (table_add_row(t, cells, -1, NULL) < 0) {
            table_free(t);
            return 1;
        }
    }
    table_print(t, stdout, false);
    table_free(t);
    return 0;
}

/* ---- the commands ----------------------------------------------------------------------- */

static int do_start(struct jobctl *jc, int argc, char **argv, struct rpc_client *c)
{
    Jobmanager__V1__JobCreationRequest req = JOBMANAGER__V1__JOB_CREATION_REQUEST__INIT;
    Jobmanager__V1__Job *job = NULL;
    struct rpc_error err = {0};
    int first = optind;

    if (!jc->command && first < argc)
        jc->command = argv[first++];
    if (!jc->command)
        return client_usage_error(&jc->o, "missing the command: -c /path/to/program");
    if (jc->command[0] != '/')
        return client_usage_error(&jc->o, "the command '%s' is not an absolute path", jc->command);
    req.name = (char *)(jc->name ? jc->name : "");
    req.programpath = (char *)jc->command;
    req.arguments = argv + first;
    req.n_arguments = (size_t)(argc - first);
    if (!c) /* --dry-run */
        return client_print_json(&req.base);
    if (rpc_client_jobmanager_start(c, &req, &job, &err) < 0)
        return client_fail(&jc->o, &err);
    printf("%s\n", job->id && job->id->id ? job->id->id : "");
    protobuf_c_message_free_unpacked(&job->base, NULL);
    return 0;
}

static int do_query(struct jobctl *jc, const char *id, struct rpc_client *c)
{
    Jobmanager__V1__JobId req = JOBMANAGER__V1__JOB_ID__INIT;
    Jobmanager__V1__JobStatus *st = NULL;
    struct rpc_error err = {0};
    int r;

    req.id = (char *)id;
    if (rpc_client_jobmanager_query(c, &req, &st, &err) < 0)
        return client_fail(&jc->o, &err);
    r = print_jobs(jc, &st, 1);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    return r;
}

static int do_stop(struct jobctl *jc, const char *id, struct rpc_client *c)
{
    Jobmanager__V1__JobId req = JOBMANAGER__V1__JOB_ID__INIT;
    struct rpc_error err = {0};

    req.id = (char *)id;
    if (rpc_client_jobmanager_stop(c, &req, &err) < 0)
        return client_fail(&jc->o, &err);
    return do_query(jc, id, c); /* Stop answers nothing: show what became of the job */
}

static int do_list(struct jobctl *jc, struct rpc_client *c)
{
    Jobmanager__V1__JobStatusList *l = NULL;
    struct rpc_error err = {0};
    int r;

    if (rpc_client_jobmanager_list(c, &l, &err) < 0)
        return client_fail(&jc->o, &err);
    r = print_jobs(jc, l->jobstatuslist, l->n_jobstatuslist);
    protobuf_c_message_free_unpacked(&l->base, NULL);
    return r;
}

static int do_stream(struct jobctl *jc, const char *id, struct rpc_client *c)
{
    Jobmanager__V1__StreamOutputRequest req = JOBMANAGER__V1__STREAM_OUTPUT_REQUEST__INIT;
    Jobmanager__V1__JobId jid = JOBMANAGER__V1__JOB_ID__INIT;
    _cleanup_(rpc_client_stream_freep) struct rpc_stream *s = NULL;
    struct rpc_error err = {0};
    struct rpc_chunk chunk;
    int r;

    jid.id = (char *)id;
    req.jobid = &jid;
    req.outputstream = jc->select;
    if (rpc_client_output_open(c, &req, &s, &err) < 0)
        return client_fail(&jc->o, &err);
    while ((r = rpc_client_stream_next(s, &chunk, &err)) > 0) {
        for (size_t off = 0; off < chunk.len;) {
            ssize_t n = write(STDOUT_FILENO, chunk.data + off, chunk.len - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                if (errno == EPIPE)
                    return CLIENT_EXIT_SIGPIPE;
                fprintf(stderr, "%s: %s: writing the output: %s\n", jc->o.prog, jc->o.verb,
                        strerror(errno));
                return CLIENT_EXIT_FAILED;
            }
            off += (size_t)n;
        }
    }
    return r < 0 ? client_fail(&jc->o, &err) : 0;
}

/* ---- entry ------------------------------------------------------------------------------ */

static const struct {
    const char *name, *shortopts, *usage;
} verbs[] = {
    {"start", "+j:c:",
     "Usage: jobctl start [-j NAME] -c /path/to/program [-- args...]\n"
     "       jobctl start [-j NAME] /path/to/program [args...]\n"
     "\n"
     "Start a job under the server's default limits and print its id. The name is optional\n"
     "and unique among your running jobs. Words after `--` are the program's.\n"
     "\n"
     "  -j, --name NAME            a name for the job\n"
     "  -c, --command PATH         the program, an absolute path\n"
     "      --dry-run              print the request as JSON and send nothing\n"},
    {"stop", "",
     "Usage: jobctl stop ID\n\nKill every process of the job at once (SIGKILL) and "
     "print its status; a job that\nhas already ended is left as it was.\n"},
    {"query", "",
     "Usage: jobctl query ID\n\nA job's status: NAME, ID, STATE (running, exited, "
     "killed, failed), EXIT, SIG,\nPID and ERROR; OWNER too for an "
     "administrator's jobs of other users.\n"},
    {"status", "", "Usage: jobctl status ID\n\nThe same as `jobctl query ID`.\n"},
    {"list", "",
     "Usage: jobctl list\n\nYour jobs (every user's for an administrator), as "
     "`jobctl query` prints one.\n"},
    {"stream", "s:",
     "Usage: jobctl stream [-s stdout|stderr|all] ID\n"
     "\n"
     "A job's output from its first byte, live until the job ends, to stdout.\n"
     "\n"
     "  -s, --stream WHICH         stdout (the default), stderr, or all: both as written\n"},
};

int applet_jobctl_main(int argc, char **argv)
{
    static const struct option longopts[] = {JOBCTL_LONGOPTS, {NULL, 0, NULL, 0}};
    static const struct option verb_longopts[] = {
        JOBCTL_LONGOPTS,
        {"name", required_argument, NULL, 'j'},
        {"command", required_argument, NULL, 'c'},
        {"stream", required_argument, NULL, 's'},
        {"dry-run", no_argument, NULL, JOBCTL_OPT_DRY_RUN},
        {NULL, 0, NULL, 0}};
    _cleanup_(rpc_client_freep) struct rpc_client *c = NULL;
    struct jobctl jc = {.select = JOBMANAGER__V1__OUTPUT_STREAM__STDOUT};
    char vname[48], shortopts[32], vusage[2048];
    const char *verb, *id = NULL;
    size_t v;
    int r;

    client_init(&jc.o, argc, argv);
    (void)snprintf(jc.o.prog, sizeof(jc.o.prog), "jobctl");
    jc.o.verb[0] = '\0'; /* jobctl's own flags, before its verb */
    /* '+': flags end at the verb; the verb's own follow it. */
    if ((r = client_parse_flags(&jc.o, "+" JOBCTL_SHORTOPTS, longopts, usage, take_flag, &jc)) !=
        CLIENT_OPT_DONE)
        return r;
    if (optind >= argc) {
        fputs(usage, stderr);
        return 2;
    }
    verb = argv[optind];
    if (strcmp(verb, "completion") == 0) {
        char name[] = "jobctl completion";
        argv[optind] = name;
        return applet_find("completion")->main(argc - optind, argv + optind);
    }
    for (v = 0; v < sizeof(verbs) / sizeof(verbs[0]); v++)
        if (strcmp(verb, verbs[v].name) == 0)
            break;
    if (v == sizeof(verbs) / sizeof(verbs[0])) {
        const char *names[ELEMENTSOF(verbs) + 1];
        char hint[128];
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
            names[i] = verbs[i].name;
        names[ELEMENTSOF(verbs)] = "completion";
        (void)suggest_text(verb, names, ELEMENTSOF(verbs) + 1, "", hint, sizeof(hint));
        return client_usage_error(&jc.o, "unknown command '%s'%s", verb, hint);
    }

    /* The verb's words, parsed as "jobctl <verb>" with the connection flags allowed again. */
    (void)snprintf(vname, sizeof(vname), "jobctl %s", verb);
    argv[optind] = vname;
    argc -= optind;
    argv += optind;
    {
        struct client_opts keep = jc.o;
        client_init(&jc.o, argc, argv);
        jc.o.host = keep.host;
        jc.o.port = keep.port;
        jc.o.user = keep.user;
        jc.o.ca_path = keep.ca_path;
        jc.o.cert_path = keep.cert_path;
        jc.o.key_path = keep.key_path;
        jc.o.context = keep.context;
    }
    (void)snprintf(vusage, sizeof(vusage), "%s\n" JOBCTL_USAGE_CONNECTION, verbs[v].usage);
    (void)snprintf(shortopts, sizeof(shortopts), "%s" JOBCTL_SHORTOPTS, verbs[v].shortopts);
    if ((r = client_parse_flags(&jc.o, shortopts, verb_longopts, vusage, take_flag, &jc)) !=
        CLIENT_OPT_DONE)
        return r;
    if (strcmp(verb, "start") != 0 && strcmp(verb, "list") != 0 &&
        (r = client_job_id_arg(&jc.o, argc, argv, &id)))
        return r;
    if (strcmp(verb, "list") == 0 && optind < argc)
        return client_usage_error(&jc.o, "unexpected argument '%s'", argv[optind]);

    /* jobctl's defaults: localhost:24482 and client1, unless flags or the environment say. */
    bool context = client_context_active(&jc.o);
    if (!jc.o.port && !getenv("RUNJOB_SERVER_PORT") && !context)
        jc.o.port = atoi(JOBCTL_DEFAULT_PORT);
    if (!jc.user_given && !getenv("RUNJOB_USER") && !getenv("RUNJOB_CLIENT_CERT_PATH") &&
        !jc.o.cert_path && !context)
        jc.o.user = JOBCTL_DEFAULT_USER;
    if (jc.dry_run && strcmp(verb, "start") == 0)
        return do_start(&jc, argc, argv, NULL);
    if ((r = client_connect(&jc.o, &c)))
        return r;
    if (strcmp(verb, "start") == 0)
        return do_start(&jc, argc, argv, c);
    if (strcmp(verb, "stop") == 0)
        return do_stop(&jc, id, c);
    if (strcmp(verb, "list") == 0)
        return do_list(&jc, c);
    if (strcmp(verb, "stream") == 0)
        return do_stream(&jc, id, c);
    return do_query(&jc, id, c);
}
