/* The jobctl personality: `jobctl [--hostPort host:port] [-u user] <verb> ...`, the command
 * line of the older tool, translated into runjob's own verbs (no second copy of any). */
#include <stdlib.h>
#include <string.h>

#include "applets/applets.h"
#include "applets/client.h"

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
    "  -u, --user USER        use certs/USER-cert.pem and certs/USER-key.pem (client1)\n"
    "  -h, --help             this help; `jobctl <command> --help` for a command's flags\n"
    "\n"
    "Example:\n"
    "  jobctl --hostPort 127.0.0.1:8080 -u alice start -j hello -c /bin/echo -- hello world\n";

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
    const char *user = NULL, *hostport = NULL, *applet = NULL;
    char host[256] = "", port[8] = "", name[32];
    int opt, r;

    client_init(&o, argc, argv);
    (void)snprintf(o.prog, sizeof(o.prog), "jobctl");
    (void)snprintf(o.verb, sizeof(o.verb), "jobctl");
    while ((opt = getopt_long(argc, argv, "+:u:h", longopts, NULL)) != -1) {
        if (opt == 'p')
            hostport = optarg;
        else if (opt == 'u')
            user = optarg;
        else if ((r = client_option(&o, opt, optarg, usage)) != CLIENT_OPT_DONE)
            return r == CLIENT_OPT_OTHER ? client_usage_error(&o, "unknown flag") : r;
    }
    if (optind >= argc) {
        fputs(usage, stderr);
        return 2;
    }
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (strcmp(argv[optind], verbs[i][0]) == 0)
            applet = verbs[i][1];
    if (!applet) {
        fprintf(stderr, "jobctl: unknown command '%s' (see 'jobctl --help')\n", argv[optind]);
        return 2;
    }
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
    /* jobctl's user defaults to client1, unless the environment names one. */
    if (!user && !getenv("RUNJOB_USER") && !getenv("RUNJOB_CLIENT_CERT_PATH"))
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
