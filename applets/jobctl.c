/* The jobctl personality: `jobctl [--hostPort host:port] [-u user] <verb> ...`, the command
 * line of the older tool, translated into runjob's own verbs (no second copy of any). */
#include <stdlib.h>
#include <string.h>

#include "applets/applets.h"
#include "applets/client.h"
#include "applets/suggest.h"

static const char usage[] =
    "Usage: jobctl [--hostPort HOST:PORT] [-u USER] <command> [flags] [args...]\n"
    "\n"
    "Commands:\n"
    "  start -j NAME -c /path -- args...   start a job, print its id\n"
    "  stop ID                             stop a job, print its final status\n"
    "  query ID                            a job's status\n"
    "  list                                your jobs\n"
    "  stream [-s stdout|stderr] ID        a job's output (stdout unless -s says otherwise)\n"
    "  completion bash|zsh                 a shell completion script\n"
    "\n"
    "Flags:\n"
    "  --hostPort HOST:PORT   the server (localhost:8080)\n"
    "  -u, --user USER        use certs/USER-cert.pem and certs/USER-key.pem (client1,\n"
    "                         unless RUNJOB_USER or a context says otherwise: runjob context)\n"
    "  -h, --help             this help; `jobctl <command> --help` for a command's flags\n"
    "\n"
    "Example:\n"
    "  jobctl --hostPort 127.0.0.1:8080 -u alice start -j hello -c /bin/echo -- hello world\n";

/* jobctl's own flags, before its verb; passed on to the verb as runjob's. */
struct jobctl_flags {
    const char *hostport, *user;
};

static int take_jobctl_flag(struct client_opts *o, int opt, const char *arg, void *ctx)
{
    struct jobctl_flags *f = ctx;

    (void)o;
    switch (opt) {
    case 'p':
        f->hostport = arg;
        return CLIENT_OPT_DONE;
    case 'u': /* as typed: the verb judges it (completion takes none) */
        f->user = arg;
        return CLIENT_OPT_DONE;
    default:
        return CLIENT_OPT_OTHER;
    }
}

int applet_jobctl_main(int argc, char **argv)
{
    static const struct option longopts[] = {{"hostPort", required_argument, NULL, 'p'},
                                             {"user", required_argument, NULL, 'u'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    static const char *const verbs[][2] = {
        {"start", "start"}, {"stop", "stop"},     {"query", "query"},          {"status", "status"},
        {"list", "list"},   {"stream", "stream"}, {"completion", "completion"}};
    struct client_opts o;
    struct jobctl_flags f = {0};
    const char *applet = NULL;
    char host[256] = "", port[8] = "", name[32];
    int r;

    client_init(&o, argc, argv);
    (void)snprintf(o.prog, sizeof(o.prog), "jobctl");
    o.verb[0] = '\0'; /* jobctl's own flags, before its verb */
    /* '+': flags end at the verb; the verb's own are the verb's. */
    if ((r = client_parse_flags(&o, "+u:h", longopts, usage, take_jobctl_flag, &f)) !=
        CLIENT_OPT_DONE)
        return r;
    if (optind >= argc) {
        fputs(usage, stderr);
        return 2;
    }
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (strcmp(argv[optind], verbs[i][0]) == 0)
            applet = verbs[i][1];
    if (!applet) {
        const char *names[ELEMENTSOF(verbs)];
        char hint[128];
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
            names[i] = verbs[i][0];
        (void)suggest_text(argv[optind], names, ELEMENTSOF(verbs), "", hint, sizeof(hint));
        return client_usage_error(&o, "unknown command '%s'%s", argv[optind], hint);
    }
    const char *hostport = f.hostport, *user = f.user;
    if (hostport) { /* host:port, [v6]:port */
        const char *colon = strrchr(hostport, ':');
        const char *h = hostport;
        size_t hl = colon ? (size_t)(colon - hostport) : strlen(hostport);
        if (!colon || !colon[1] || strlen(colon + 1) >= sizeof(port) || hl >= sizeof(host))
            return client_usage_error(&o, "--hostPort '%s' is not HOST:PORT", hostport);
        if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
            h++;
            hl -= 2;
        }
        memcpy(host, h, hl);
        host[hl] = '\0';
        (void)snprintf(port, sizeof(port), "%s", colon + 1);
    }
    /* jobctl's user defaults to client1, unless the environment or a context names one. */
    if (!user && !getenv("RUNJOB_USER") && !getenv("RUNJOB_CLIENT_CERT_PATH") &&
        !client_context_active(&o))
        user = "client1";

    /* argv for the verb: "jobctl <verb>", the translated globals, then the verb's own words. */
    char **nargv = calloc((size_t)argc + 10, sizeof(*nargv));
    int n = 0;
    if (!nargv)
        return client_usage_error(&o, "out of memory");
    (void)snprintf(name, sizeof(name), "jobctl %s", argv[optind]);
    nargv[n++] = name;
    if (*host) {
        nargv[n++] = (char *)"--server-host";
        nargv[n++] = host;
    }
    if (*port) {
        nargv[n++] = (char *)"--server-port";
        nargv[n++] = port;
    }
    if (user && strcmp(applet, "completion") != 0) {
        nargv[n++] = (char *)"--user";
        nargv[n++] = (char *)user;
    }
    if (strcmp(applet, "stream") == 0) { /* jobctl streams stdout unless told otherwise */
        nargv[n++] = (char *)"--select";
        nargv[n++] = (char *)"stdout";
    }
    for (int i = optind + 1; i < argc; i++)
        nargv[n++] = argv[i];
    nargv[n] = NULL;
    r = applet_find(applet)->main(n, nargv);
    free(nargv);
    return r;
}
