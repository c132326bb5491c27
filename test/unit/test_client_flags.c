/* The client applets' flags: usage errors exit 2 with one line; accepted flags get as far as
 * reading the certificates; --help, environment, precedence, the jobctl personality and the
 * completion scripts. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "applets/applets.h"
#include "applets/client.h"
#include "applets/format.h"
#include "core/rpc-client-internal.h"
#include "core/rpc.h"
#include "test_client.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static char *slurp_fd(int fd)
{
    off_t n = lseek(fd, 0, SEEK_END);
    char *buf = calloc(1, (size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(pread(fd, buf, (size_t)n, 0), n);
    return buf;
}

/* Runs applet `name` (argv[0] = argv0) with stdout and stderr captured. */
static int run_applet(char **ret_out, char **ret_err, const char *argv0, ...)
{
    char *argv[64];
    int argc = 0;
    va_list ap;
    const char *a;
    char name[32];

    (void)snprintf(name, sizeof(name), "%s", strrchr(argv0, ' ') ? strrchr(argv0, ' ') + 1 : argv0);
    if (strncmp(argv0, "jobctl", 6) == 0 && !strchr(argv0, ' '))
        (void)snprintf(name, sizeof(name), "jobctl");
    argv[argc++] = (char *)argv0;
    va_start(ap, argv0);
    while ((a = va_arg(ap, const char *)) && argc < 63)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;

    const struct applet *ap_ = applet_find(name);
    cr_assert_not_null(ap_, "no applet %s", name);
    int out = memfd_create("out", 0), err = memfd_create("err", 0);
    int so = dup(1), se = dup(2);
    fflush(stdout);
    fflush(stderr);
    dup2(out, 1);
    dup2(err, 2);
    int r = ap_->main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    char *o = slurp_fd(out), *e = slurp_fd(err);
    close(out);
    close(err);
    if (ret_out)
        *ret_out = o;
    else
        free(o);
    if (ret_err)
        *ret_err = e;
    else
        free(e);
    return r;
}

static void no_certs(void)
{
    /* Accepted flags reach client_dial, which fails at once reading this. */
    setenv("RUNJOB_CA_CERT_PATH", "/nonexistent/runjob-test-ca.pem", 1);
    unsetenv("RUNJOB_SERVER_HOST");
    unsetenv("RUNJOB_SERVER_PORT");
    unsetenv("RUNJOB_USER");
    unsetenv("RUNJOB_CLIENT_CERT_PATH");
    unsetenv("RUNJOB_CLIENT_KEY_PATH");
    /* No context from the real home directory. */
    unsetenv("RUNJOB_CONTEXT");
    setenv("XDG_CONFIG_HOME", "/nonexistent/runjob-test-config", 1);
}

/* Exit code 2 with exactly one line on stderr that names the verb and points to --help. */
static void expect_usage(const char *verb, ...)
{
    char *argv[32];
    int n = 0;
    va_list ap;
    const char *a;

    va_start(ap, verb);
    while ((a = va_arg(ap, const char *)))
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;

    const struct applet *app = applet_find(verb);
    cr_assert_not_null(app);
    char *full[34] = {(char *)verb};
    for (int i = 0; i < n; i++)
        full[i + 1] = argv[i];
    int out = memfd_create("err", 0), se = dup(2);
    fflush(stderr);
    dup2(out, 2);
    int r = app->main(n + 1, full);
    fflush(stderr);
    dup2(se, 2);
    close(se);
    char *e = slurp_fd(out);
    close(out);
    cr_expect_eq(r, 2, "%s %s...: exit %d, stderr '%s'", verb, n ? argv[0] : "", r, e);
    char *nl = strchr(e, '\n');
    cr_expect(nl && nl[1] == '\0', "%s: want one line, got '%s'", verb, e);
    cr_expect(strstr(e, verb) && strstr(e, "--help"), "%s: '%s'", verb, e);
    free(e);
}

/* Parses, then stops at the certificates: exit 255 "cannot read CA certificate". */
static void expect_parsed(const char *verb, ...)
{
    char *argv[32] = {(char *)verb};
    int n = 1;
    va_list ap;
    const char *a;

    va_start(ap, verb);
    while ((a = va_arg(ap, const char *)))
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    const struct applet *app = applet_find(verb);
    int out = memfd_create("err", 0), se = dup(2);
    fflush(stderr);
    dup2(out, 2);
    int r = app->main(n, argv);
    fflush(stderr);
    dup2(se, 2);
    close(se);
    char *e = slurp_fd(out);
    close(out);
    cr_expect_eq(r, 255, "%s %s: exit %d, stderr '%s'", verb, n > 1 ? argv[1] : "", r, e);
    cr_expect(strstr(e, "cannot read CA certificate"), "%s: '%s'", verb, e);
    cr_expect(strstr(e, "(FAILED_PRECONDITION)"), "%s: '%s'", verb, e);
    free(e);
}

/* ---- flags --------------------------------------------------------------------------------- */

Test(client, usage_errors_exit_2, .init = no_certs)
{
    /* shared flags, on every verb */
    const char *verbs[] = {"start", "run", "stop", "status", "query", "list", "stream", "ping"};
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        const char *v = verbs[i];
        expect_usage(v, "--bogus", NULL);
        expect_usage(v, "-Z", NULL);
        expect_usage(v, "-P", "0", NULL);
        expect_usage(v, "-P", "65536", NULL);
        expect_usage(v, "--server-port", "80x", NULL);
        expect_usage(v, "-H", "", NULL);
        expect_usage(v, "-o", "yaml", NULL);
        expect_usage(v, "-u", "../etc", NULL);
        expect_usage(v, "--ca-cert-path", NULL); /* missing value */
    }
    /* start and run */
    const char *starts[] = {"start", "run"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = starts[i];
        expect_usage(v, NULL);
        expect_usage(v, "ls", NULL);
        expect_usage(v, "-j", "x", NULL);
        expect_usage(v, "-j", "", "/bin/ls", NULL);
        expect_usage(v, "--memory", "12X", "/bin/ls", NULL);
        expect_usage(v, "--memory", "-1", "/bin/ls", NULL);
        expect_usage(v, "--memory", "99999999999999999999", "/bin/ls", NULL);
        expect_usage(v, "--cpu", "half", "/bin/ls", NULL);
        expect_usage(v, "--riops", "1K", "/bin/ls", NULL);
        expect_usage(v, "--wiops", "x", "/bin/ls", NULL);
        expect_usage(v, "--rbps", "fast", "/bin/ls", NULL);
        expect_usage(v, "--wbps", "1Q", "/bin/ls", NULL);
        expect_usage(v, "--pids", "-5", "/bin/ls", NULL);
        expect_usage(v, "--network", "bridge", "/bin/ls", NULL);
        expect_usage(v, "-c", "relative/path", NULL);
        expect_usage(v, "--", "ls", "-l", NULL);
    }
    expect_usage("stop", NULL);
    expect_usage("stop", "--all", "a", NULL);
    expect_usage("stop", "--signal", "FOO", "id", NULL);
    expect_usage("stop", "-s", "0", "id", NULL);
    expect_usage("stop", "--grace", "soon", "id", NULL);
    expect_usage("stop", "-g", "-1", "id", NULL);
    expect_usage("stop", "", NULL);
    expect_usage("status", NULL);
    expect_usage("status", "a", "b", NULL);
    expect_usage("query", NULL);
    expect_usage("list", "extra", NULL);
    expect_usage("list", "--state", "done", NULL);
    expect_usage("list", "--state", ",", NULL);
    expect_usage("list", "--name", NULL);
    expect_usage("stream", NULL);
    expect_usage("stream", "-s", "both", "id", NULL);
    expect_usage("stream", "--offset", "-1", "id", NULL);
    expect_usage("stream", "--offset", "1K", "id", NULL);
    expect_usage("stream", "a", "b", NULL);
    expect_usage("stream", "-o", "json", "id", NULL); /* no formats: not silently ignored */
    expect_usage("stream", "--output=table", "id", NULL);
    expect_usage("ping", "extra", NULL);
    expect_usage("completion", NULL);
    expect_usage("completion", "fish", NULL);
    expect_usage("completion", "bash", "zsh", NULL);
    expect_usage("completion", "--bogus", NULL);
}

Test(client, bad_environment_exit_2, .init = no_certs)
{
    setenv("RUNJOB_SERVER_PORT", "http", 1);
    expect_usage("ping", NULL);
    unsetenv("RUNJOB_SERVER_PORT");
    setenv("RUNJOB_USER", "a/b", 1);
    expect_usage("ping", NULL);
}

Test(client, accepted_flags_reach_the_dial, .init = no_certs)
{
    expect_parsed("ping", NULL);
    expect_parsed("ping", "-H", "127.0.0.1", "-P", "1", "-u", "alice", "-o", "json", NULL);
    expect_parsed("ping", "--server-host=::1", "--server-port=9", "--output=wide", NULL);
    expect_parsed("start", "-j", "n", "--cpu", "500", "--memory", "1G", "--riops", "10", "--wiops",
                  "20", "--rbps", "1M", "--wbps", "2M", "--pids", "10", "--network", "host",
                  "/bin/ls", "-l", NULL);
    expect_parsed("start", "-A", "-l", "-c", "/bin/ls", NULL);
    expect_parsed("run", "/bin/sh", "-c", "exit 3", NULL);
    expect_parsed("stop", "--signal", "INT", "--grace", "1m30s", "some-id", NULL);
    expect_parsed("stop", "-s", "9", "-g", "0", "some-id", NULL);
    expect_parsed("status", "-o", "wide", "some-id", NULL);
    expect_parsed("query", "some-id", NULL);
    expect_parsed("list", "--state", "running,exited", "--name", "b*", "-q", NULL);
    expect_parsed("stream", "-s", "stderr", "--offset", "100", "--no-follow", "some-id", NULL);
    expect_parsed("stream", "--select=all", "some-id", NULL);
}

Test(client, help_for_every_verb, .init = no_certs)
{
    const char *verbs[] = {"start", "run",    "stop", "status",    "query",
                           "list",  "stream", "ping", "completion"};
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        char *out;
        cr_expect_eq(run_applet(&out, NULL, verbs[i], "--help", NULL), 0, "%s", verbs[i]);
        cr_expect(strstr(out, "Usage: runjob"), "%s: %s", verbs[i], out);
        cr_expect(strstr(out, "Example"), "%s --help has no example", verbs[i]);
        free(out);
    }
    char *out;
    cr_expect_eq(run_applet(&out, NULL, "jobctl", "--help", NULL), 0);
    cr_expect(strstr(out, "--hostPort"));
    free(out);
}

Test(client, start_arguments, .init = no_certs)
{
    char *out;
    cr_assert_eq(run_applet(&out, NULL, "start", "--dry-run", "/usr/bin/find", "--", "/var",
                            "-name", "*.log", NULL),
                 0);
    cr_expect(json_check(out, "d[\"command\"]==\"/usr/bin/find\" and "
                              "d[\"args\"]==[\"/var\",\"-name\",\"*.log\"]"),
              "%s", out);
    free(out);
    cr_assert_eq(run_applet(&out, NULL, "start", "--dry-run", "/bin/ls", "-l", NULL), 0);
    cr_expect(json_check(out, "d[\"command\"]==\"/bin/ls\" and d[\"args\"]==[\"-l\"]"), "%s", out);
    free(out);
    cr_assert_eq(run_applet(&out, NULL, "run", "--dry-run", "-j", "n", "-A", "a", "--memory",
                            "512M", "--cpu", "250", "--network", "host", "--pids", "7", "--rbps",
                            "1K", "/bin/echo", "b", "--", "c", NULL),
                 0);
    cr_expect(json_check(out,
                         "d[\"name\"]==\"n\" and d[\"args\"]==[\"a\",\"b\",\"--\",\"c\"] and "
                         "d[\"limits\"][\"memory_bytes\"]==536870912 and "
                         "d[\"limits\"][\"cpu_millis\"]==250 and d[\"limits\"][\"pids\"]==7 and "
                         "d[\"limits\"][\"io_rbps\"]==1024 and "
                         "d[\"network\"]==\"NETWORK_MODE_HOST\""),
              "%s", out);
    free(out);
    /* -c and -- : everything after -- is an argument, even another -- */
    cr_assert_eq(
        run_applet(&out, NULL, "start", "--dry-run", "-c", "/bin/echo", "--", "--", "x", NULL), 0);
    cr_expect(json_check(out, "d[\"args\"]==[\"--\",\"x\"]"), "%s", out);
    free(out);
}

Test(client, connection_settings_precedence, .init = no_certs)
{
    struct client_opts o;
    char *argv[] = {"ping", NULL};

    client_init(&o, 1, argv);
    cr_assert_eq(client_opts_finish(&o), 0);
    cr_expect_str_eq(o.host, "localhost");
    cr_expect_eq(o.port, 8080);
    cr_expect_str_eq(o.cert_path, "certs/client-cert.pem");
    cr_expect_str_eq(o.key_path, "certs/client-key.pem");

    setenv("RUNJOB_SERVER_HOST", "envhost", 1);
    setenv("RUNJOB_SERVER_PORT", "9000", 1);
    setenv("RUNJOB_USER", "bob", 1);
    client_init(&o, 1, argv);
    cr_assert_eq(client_opts_finish(&o), 0);
    cr_expect_str_eq(o.host, "envhost");
    cr_expect_eq(o.port, 9000);
    cr_expect_str_eq(o.cert_path, "certs/bob-cert.pem");
    cr_expect_str_eq(o.key_path, "certs/bob-key.pem");

    setenv("RUNJOB_CLIENT_CERT_PATH", "/env/cert.pem", 1);
    client_init(&o, 1, argv);
    cr_assert_eq(client_opts_finish(&o), 0);
    cr_expect_str_eq(o.cert_path, "/env/cert.pem"); /* an explicit path beats a user name */

    /* flags beat the environment */
    client_init(&o, 1, argv);
    cr_assert_eq(client_option(&o, 'H', "flaghost", ""), CLIENT_OPT_DONE);
    cr_assert_eq(client_option(&o, 'P', "7", ""), CLIENT_OPT_DONE);
    cr_assert_eq(client_option(&o, 'u', "carol", ""), CLIENT_OPT_DONE);
    cr_assert_eq(client_opts_finish(&o), 0);
    cr_expect_str_eq(o.host, "flaghost");
    cr_expect_eq(o.port, 7);
    cr_expect_str_eq(o.cert_path, "certs/carol-cert.pem");
    cr_expect_str_eq(o.key_path, "certs/carol-key.pem");
    cr_expect_str_eq(o.ca_path, "/nonexistent/runjob-test-ca.pem");

    client_init(&o, 1, argv);
    cr_assert_eq(client_option(&o, 'u', "carol", ""), CLIENT_OPT_DONE);
    cr_assert_eq(client_option(&o, CLIENT_OPT_CERT, "/flag/cert.pem", ""), CLIENT_OPT_DONE);
    cr_assert_eq(client_opts_finish(&o), 0);
    cr_expect_str_eq(o.cert_path, "/flag/cert.pem");
    cr_expect_str_eq(o.key_path, "certs/carol-key.pem");
}

Test(client, jobctl_personality, .init = no_certs)
{
    char *out, *err;
    cr_assert_eq(run_applet(&out, &err, "jobctl", "--hostPort", "127.0.0.1:1", "-u", "alice",
                            "start", "--dry-run", "-j", "hello", "-c", "/bin/echo", "--", "hi",
                            "there", NULL),
                 0, "%s", err);
    cr_expect(json_check(out, "d[\"name\"]==\"hello\" and d[\"programPath\"]==\"/bin/echo\" and "
                              "d[\"arguments\"]==[\"hi\",\"there\"]"),
              "%s", out);
    free(out);
    free(err);
    /* messages name jobctl */
    cr_expect_eq(run_applet(NULL, &err, "jobctl", "stream", NULL), 2);
    cr_expect(strstr(err, "jobctl: stream: missing the job id"), "%s", err);
    free(err);
    cr_expect_eq(run_applet(NULL, &err, "jobctl", "frobnicate", NULL), 2);
    cr_expect(strstr(err, "unknown command 'frobnicate'"), "%s", err);
    free(err);
    cr_expect_eq(run_applet(NULL, &err, "jobctl", "--hostPort", "nocolon", "list", NULL), 2);
    cr_expect(strstr(err, "HOST:PORT"), "%s", err);
    free(err);
    cr_expect_eq(run_applet(NULL, &err, "jobctl", "--hostPort", "h:99999", "list", NULL), 2);
    free(err);
    cr_expect_eq(run_applet(NULL, &err, "jobctl", NULL), 2);
    free(err);
    /* accepted: reaches the dial, as jobctl, with client1's certificate by default */
    cr_expect_eq(run_applet(NULL, &err, "jobctl", "--hostPort", "[::1]:9", "query", "id", NULL),
                 255);
    cr_expect(strstr(err, "jobctl: query: cannot read CA certificate"), "%s", err);
    free(err);
}

Test(client, completion_scripts_load, .init = no_certs)
{
    char *out;
    const char *shells[] = {"bash", "zsh"};
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(run_applet(&out, NULL, "completion", shells[i], NULL), 0);
        cr_expect(strstr(out, "_runjob"), "%s", out);
        cr_expect(strstr(out, "start") && strstr(out, "stream"));
        if (i == 0) {
            FILE *p = popen("bash -n", "w");
            fputs(out, p);
            cr_expect_eq(pclose(p), 0, "bash -n rejects the script");
            /* Loaded and asked to complete "runjob st": start status stop stream. */
            char path[] = "/tmp/runjob-test-comp.XXXXXX";
            int fd = mkstemp(path);
            cr_assert_eq(write(fd, out, strlen(out)), (ssize_t)strlen(out));
            close(fd);
            char cmd[512];
            (void)snprintf(cmd, sizeof(cmd),
                           "bash -c 'source %s; COMP_WORDS=(runjob st); COMP_CWORD=1; _runjob; "
                           "echo ${COMPREPLY[*]}'",
                           path);
            FILE *q = popen(cmd, "r");
            char line[256] = "";
            (void)!fgets(line, sizeof(line), q);
            pclose(q);
            unlink(path);
            cr_expect_str_eq(line, "start status stop stream\n");
        }
        free(out);
    }
    cr_assert_eq(run_applet(&out, NULL, "jobctl", "completion", "bash", NULL), 0);
    cr_expect(strstr(out, "complete -F _jobctl jobctl") && strstr(out, "query"), "%s", out);
    free(out);
}

/* ---- the one flag parser ---------------------------------------------------------------- */

struct seen {
    int q, u;
    const char *u_arg;
};

/* Takes -q and -u; leaves everything else to the shared flags. */
static int take_q_u(struct client_opts *o, int opt, const char *arg, void *ctx)
{
    struct seen *s = ctx;

    (void)o;
    if (opt == 'q')
        s->q++;
    else if (opt == 'u')
        s->u++, s->u_arg = arg;
    else
        return CLIENT_OPT_OTHER;
    return CLIENT_OPT_DONE;
}

Test(client, parser_order_and_precedence, .init = no_certs)
{
    static const struct option longopts[] = {CLIENT_LONGOPTS, {NULL, 0, NULL, 0}};
    struct client_opts o;
    struct seen s = {0};

    /* '+': flags stop at the first argument; what follows is not parsed */
    char *a1[] = {"x", "-q", "-H", "h1", "cmd", "-q", "-u", "z", NULL};
    client_init(&o, 8, a1);
    cr_assert_eq(client_parse_flags(&o, "+" CLIENT_SHORTOPTS "q", longopts, "", take_q_u, &s),
                 CLIENT_OPT_DONE);
    cr_expect_eq(s.q, 1);
    cr_expect_eq(s.u, 0);
    cr_expect_str_eq(o.host, "h1");
    cr_expect_str_eq(a1[optind], "cmd");

    /* without '+', flags after arguments count too (getopt moves the arguments last) */
    char *a2[] = {"x", "cmd", "-q", "-u", "raw/name", NULL};
    s = (struct seen){0};
    client_init(&o, 5, a2);
    cr_assert_eq(client_parse_flags(&o, CLIENT_SHORTOPTS "q", longopts, "", take_q_u, &s),
                 CLIENT_OPT_DONE);
    cr_expect_eq(s.q, 1);
    cr_expect_str_eq(a2[optind], "cmd");
    /* the applet's own flag goes first: -u is the applet's here, taken as typed */
    cr_expect_eq(s.u, 1);
    cr_expect_str_eq(s.u_arg, "raw/name");
    cr_expect_null(o.user);

    /* no flags of its own: the shared ones still parse */
    char *a3[] = {"x", "--user", "bob", "-o", "json", NULL};
    client_init(&o, 5, a3);
    cr_assert_eq(client_parse_flags(&o, CLIENT_SHORTOPTS, longopts, "", NULL, NULL),
                 CLIENT_OPT_DONE);
    cr_expect_str_eq(o.user, "bob");
    cr_expect_eq(o.output, CLIENT_OUTPUT_JSON);
    cr_expect_eq(optind, 5);
}

Test(client, parser_messages, .init = no_certs)
{
    char *err;

    /* a program's own flags: no verb in the line */
    cr_expect_eq(run_applet(NULL, &err, "jobctl", "--bogus", NULL), 2);
    cr_expect_str_eq(err, "jobctl: unknown flag '--bogus' (see 'jobctl --help')\n");
    free(err);
    cr_expect_eq(run_applet(NULL, &err, "jobctl", "--hostPort", NULL), 2);
    cr_expect_str_eq(err, "jobctl: flag '--hostPort' needs a value (see 'jobctl --help')\n");
    free(err);
    /* jobctl's -u, before the verb, is jobctl's */
    cr_expect_eq(run_applet(NULL, &err, "jobctl", "-u", "a/b", "list", NULL), 2);
    cr_expect_str_eq(err, "jobctl: --user 'a/b' is not a user name (see 'jobctl --help')\n");
    free(err);
    /* certs escapes what it quotes; the client verbs quote as typed */
    cr_expect_eq(run_applet(NULL, &err, "certs", "--a\nb", NULL), 2);
    cr_expect_str_eq(err, "runjob certs: unknown flag '--a\\u000ab' (see 'runjob certs --help')\n");
    free(err);
    cr_expect_eq(run_applet(NULL, &err, "certs", "-o", NULL), 2);
    cr_expect_str_eq(err, "runjob certs: flag '-o' needs a value (see 'runjob certs --help')\n");
    free(err);
    cr_expect_eq(run_applet(NULL, &err, "list", "--a\"b", NULL), 2);
    cr_expect_str_eq(err, "runjob: list: unknown flag '--a\"b' (see 'runjob list --help')\n");
    free(err);
}

/* ---- flags after the command ------------------------------------------------------------ */

/* start --dry-run with argv: the request's args must be want (a Python list) and its other
 * fields pass extra (a Python expression over d, or NULL). */
static void expect_dry_args(const char *want, const char *extra, ...)
{
    char *argv[40] = {"start", "--dry-run"};
    int n = 2;
    va_list ap;
    const char *a;
    char expr[512];

    va_start(ap, extra);
    while ((a = va_arg(ap, const char *)) && n < 39)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    int out = memfd_create("out", 0), so = dup(1);
    fflush(stdout);
    dup2(out, 1);
    int r = applet_find("start")->main(n, argv);
    fflush(stdout);
    dup2(so, 1);
    close(so);
    char *o = slurp_fd(out);
    close(out);
    cr_expect_eq(r, 0, "start --dry-run %s %s ...: exit %d", argv[2], n > 3 ? argv[3] : "", r);
    (void)snprintf(expr, sizeof(expr), "d[\"args\"]==%s%s%s", want, extra ? " and " : "",
                   extra ? extra : "");
    cr_expect(json_check(o, expr), "%s ... %s: want %s, got %s", argv[2], argv[n - 1], expr, o);
    free(o);
}

/* Exit 2 with one line that names `--` and what was refused. */
static void expect_refused(const char *what, const char *verb, ...)
{
    char *argv[40] = {(char *)verb};
    int n = 1;
    va_list ap;
    const char *a;

    va_start(ap, verb);
    while ((a = va_arg(ap, const char *)) && n < 39)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    int err = memfd_create("err", 0), se = dup(2);
    fflush(stderr);
    dup2(err, 2);
    int r = applet_find(verb)->main(n, argv);
    fflush(stderr);
    dup2(se, 2);
    close(se);
    char *e = slurp_fd(err);
    close(err);
    cr_expect_eq(r, 2, "%s %s ...: exit %d, stderr '%s'", verb, argv[1], r, e);
    char *nl = strchr(e, '\n');
    cr_expect(nl && nl[1] == '\0', "want one line, got '%s'", e);
    cr_expect(strstr(e, " -- "), "the message names --: '%s'", e);
    cr_expect(strstr(e, what), "the message names '%s': '%s'", what, e);
    free(e);
}

Test(client, first_designs_example_verbatim, .init = no_certs)
{
    char *err;

    /* As its own documentation writes it: the flags after the command are runjob's. */
    expect_dry_args("[\"hello world\"]", NULL, "/usr/bin/echo", "-A", "hello world",
                    "--server-host=localhost", "--ca-cert-path=certs/root-ca-cert.pem",
                    "--client-cert-path=certs/client-cert.pem",
                    "--client-key-path=certs/client-key.pem", NULL);
    /* and they take effect: the CA path named after the command is the one read */
    cr_expect_eq(run_applet(NULL, &err, "start", "/usr/bin/echo", "-A", "hello world",
                            "--server-host=localhost", "--ca-cert-path=/nonexistent/after-ca.pem",
                            "--client-cert-path=certs/client-cert.pem",
                            "--client-key-path=certs/client-key.pem", NULL),
                 255);
    cr_expect(strstr(err, "cannot read CA certificate '/nonexistent/after-ca.pem'"), "%s", err);
    free(err);
    /* -A values keep their order, before and after the command; values as separate words */
    expect_dry_args("[\"a\",\"b c\",\"-l\"]",
                    "d[\"name\"]==\"n\" and d[\"limits\"][\"memory_bytes\"]==1048576", "-A", "a",
                    "/bin/echo", "--command-args", "b c", "-A", "-l", "--name", "n", "--memory=1M",
                    "-P", "9", NULL);
    /* run takes them too */
    cr_expect_eq(run_applet(NULL, &err, "run", "/usr/bin/echo", "-A", "x", "--server-port=1",
                            "--ca-cert-path", "/nonexistent/run-ca.pem", NULL),
                 255);
    cr_expect(strstr(err, "runjob: run: cannot read CA certificate '/nonexistent/run-ca.pem'"),
              "%s", err);
    free(err);
}

Test(client, after_the_command_the_commands_own_words, .init = no_certs)
{
    expect_dry_args("[\"-l\",\"/tmp\"]", NULL, "/bin/ls", "-l", "/tmp", NULL);
    expect_dry_args("[\"-c\",\"exit 3\"]", NULL, "/bin/sh", "-c", "exit 3", NULL);
    /* one-letter runjob flags among the command's words are the command's (-j4 here) */
    expect_dry_args("[\"-C\",\"/src\",\"-j4\"]", "d[\"name\"]==\"\"", "/usr/bin/make", "-C", "/src",
                    "-j4", NULL);
    expect_dry_args("[\"-f\",\"/var/log/syslog\"]", NULL, "/usr/bin/tail", "-f", "/var/log/syslog",
                    NULL);
    /* a one-letter flag without its value: `id -u` */
    expect_dry_args("[\"-u\"]", NULL, "/usr/bin/id", "-u", NULL);
    /* -c and -h are always the command's after it, long or short */
    expect_dry_args("[\"--help\"]", NULL, "/bin/echo", "--help", NULL);
    expect_dry_args("[\"-h\"]", NULL, "/usr/bin/du", "-h", NULL);
    expect_dry_args("[\"--command=/bin/x\"]", "d[\"command\"]==\"/bin/echo\"", "/bin/echo",
                    "--command=/bin/x", NULL);
    /* long flags count only in full: an abbreviation is the command's word */
    expect_dry_args("[\"--net\",\"host\"]", "d[\"network\"]==\"NETWORK_MODE_NONE\"", "/bin/echo",
                    "--net", "host", NULL);
    expect_dry_args("[\"-\"]", NULL, "/bin/cat", "-", NULL);
    expect_dry_args("[\"\"]", NULL, "/bin/echo", "", NULL);
}

Test(client, after_the_command_refused_when_ambiguous, .init = no_certs)
{
    const char *verbs[] = {"start", "run"};

    for (int i = 0; i < 2; i++) {
        const char *v = verbs[i];
        /* a runjob flag in full among the command's words */
        expect_refused("'--server-host=x' after the command is a runjob flag but 'hello' is not", v,
                       "/bin/echo", "hello", "--server-host=x", NULL);
        expect_refused("'--name'", v, "/bin/echo", "--name", "n", "hello", NULL);
        expect_refused("'--dry-run'", v, "/usr/bin/rsync", "--dry-run", "-a", "/a", "/b", NULL);
        /* nothing but one-letter runjob flags: the command may have them too */
        expect_refused("'-A' after the command could be a runjob flag or the command's own", v,
                       "/bin/ls", "-A", "/tmp", NULL);
        expect_refused("'-j4'", v, "/usr/bin/make", "-j4", NULL);
        expect_refused("'-P'", v, "/bin/echo", "-P", "8080", NULL);
        expect_refused("'-fA'", v, "/bin/echo", "-fA", "x", NULL);
        expect_refused("'-f'", v, "/usr/bin/tail", "-f", NULL);
        /* with -c the words after the flags are the command's; a full runjob flag among them */
        expect_refused("'--server-host=x'", v, "-c", "/bin/echo", "hi", "--server-host=x", NULL);
    }
    /* a runjob flag after the command is judged as before it */
    expect_usage("start", "/bin/echo", "--server-port=http", "--name=x", NULL);
    expect_usage("start", "/bin/echo", "--memory", "lots", "--name=x", NULL);
    expect_usage("start", "/bin/echo", "--server-host", NULL); /* needs a value */
    expect_usage("run", "/bin/echo", "--follow=yes", NULL);
}

Test(client, after_the_command_dashdash, .init = no_certs)
{
    /* right after the command: ends runjob's flags, not passed on */
    expect_dry_args("[\"hi\"]", NULL, "/bin/echo", "--", "hi", NULL);
    expect_dry_args("[\"-n\",\"hi\"]", NULL, "/bin/echo", "--", "-n", "hi", NULL);
    expect_dry_args("[\"--server-host=x\"]", NULL, "/bin/echo", "--", "--server-host=x", NULL);
    expect_dry_args("[\"-A\",\"/tmp\"]", NULL, "/bin/ls", "--", "-A", "/tmp", NULL);
    /* twice: the second is the command's */
    expect_dry_args("[\"--\",\"hi\"]", NULL, "/bin/echo", "--", "--", "hi", NULL);
    /* after runjob's flags there: the same */
    expect_dry_args("[\"a\",\"-n\",\"hi\"]", "d[\"name\"]==\"n\"", "/bin/echo", "-A", "a",
                    "--name=n", "--", "-n", "hi", NULL);
    /* among the command's words: one of them, and what follows is not judged */
    expect_dry_args("[\"hi\",\"--\",\"--server-host=x\"]", NULL, "/bin/echo", "hi", "--",
                    "--server-host=x", NULL);
    /* before the command: everything after it is the command's, as typed */
    expect_dry_args("[\"--server-host=x\",\"--\",\"y\"]", "d[\"command\"]==\"/bin/echo\"", "--",
                    "/bin/echo", "--server-host=x", "--", "y", NULL);
    expect_dry_args("[\"--\",\"x\"]", NULL, "-c", "/bin/echo", "--", "--", "x", NULL);
    /* a `--` that is a flag's value ends nothing */
    expect_dry_args("[\"--\",\"-l\"]", "d[\"command\"]==\"/bin/ls\"", "-A", "--", "/bin/ls", "-l",
                    NULL);
    /* after the command, `--` is never a flag's value: -A lacks one, so it is the command's */
    expect_dry_args("[\"-A\",\"--\",\"x\"]", NULL, "/bin/echo", "-A", "--", "x", NULL);
}

/* Takes -q, -u, --quiet, --user (and leaves -h to the shared flags). */
Test(client, parser_after_command, .init = no_certs)
{
    static const struct option longopts[] = {{"quiet", no_argument, NULL, 'q'},
                                             {"user", required_argument, NULL, 'u'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    struct client_opts o;
    struct seen s;
    int next;

#define AFTER(argv, own, want_r)                                                                   \
    do {                                                                                           \
        s = (struct seen){0};                                                                      \
        next = -7;                                                                                 \
        client_init(&o, (int)(sizeof(argv) / sizeof(argv[0])) - 1, argv);                          \
        cr_assert_eq(                                                                              \
            client_parse_after_command(&o, "+hqu:", longopts, "", take_q_u, &s, own, 2, &next),    \
            want_r, "after the command: '%s'...", argv[2] ? argv[2] : "");                         \
    } while (0)

    /* ours: every word a flag or a value, one written in full; applied in order */
    char *a1[] = {"x", "cmd", "-q", "--user", "bob", "-qq", NULL};
    AFTER(a1, "", CLIENT_OPT_DONE);
    cr_expect_eq(next, 6);
    cr_expect_eq(s.q, 3);
    cr_expect_str_eq(s.u_arg, "bob");
    /* then `--`: the words after it are the command's */
    char *a2[] = {"x", "cmd", "--user=al", "--", "--user", "z", NULL};
    AFTER(a2, "", CLIENT_OPT_DONE);
    cr_expect_eq(next, 4);
    cr_expect_str_eq(s.u_arg, "al");
    cr_expect(o.dashdash);
    cr_expect_eq(o.argv, a2, "argv is given back");
    /* the command's: no flag of ours, or one-letter ones among words that are not */
    char *a3[] = {"x", "cmd", "file", "-q", "-u", "v", NULL};
    AFTER(a3, "", CLIENT_OPT_DONE);
    cr_expect_eq(next, 2);
    cr_expect_eq(s.q + s.u, 0, "nothing applied");
    char *a4[] = {"x", "cmd", "--quie", "--users", "-x", NULL};
    AFTER(a4, "", CLIENT_OPT_DONE);
    cr_expect_eq(next, 2);
    /* own: -h and --help are the command's */
    char *a5[] = {"x", "cmd", "-h", NULL};
    AFTER(a5, "h", CLIENT_OPT_DONE);
    cr_expect_eq(next, 2);
    char *a6[] = {"x", "cmd", "--help", "--quiet", NULL};
    AFTER(a6, "h", 2); /* a full flag of ours among the command's words */
    /* without own, --help is ours: the usage, exit 0 */
    char *a7[] = {"x", "cmd", "--help", NULL};
    AFTER(a7, "", 0);
    /* nothing at all, or only `--` */
    char *a8[] = {"x", "cmd", NULL};
    AFTER(a8, "", CLIENT_OPT_DONE);
    cr_expect_eq(next, 2);
    char *a9[] = {"x", "cmd", "--", NULL};
    AFTER(a9, "", CLIENT_OPT_DONE);
    cr_expect_eq(next, 3);
    /* refused: one-letter flags only, or a full one among other words */
    char *a10[] = {"x", "cmd", "-q", "-u", "v", NULL};
    AFTER(a10, "", 2);
    cr_expect_eq(s.q + s.u, 0, "nothing applied before the refusal");
    char *a11[] = {"x", "cmd", "--quiet", "file", NULL};
    AFTER(a11, "", 2);
    char *a12[] = {"x", "cmd", "--user", NULL}; /* its value missing: the parser says so */
    AFTER(a12, "", 2);
#undef AFTER
}

Test(client, parser_notes_a_dashdash, .init = no_certs)
{
    static const struct option longopts[] = {CLIENT_LONGOPTS, {NULL, 0, NULL, 0}};
    struct client_opts o;
    struct seen s = {0};

    char *a1[] = {"x", "-q", "--", "cmd", NULL};
    client_init(&o, 4, a1);
    cr_assert_eq(client_parse_flags(&o, "+" CLIENT_SHORTOPTS "q", longopts, "", take_q_u, &s),
                 CLIENT_OPT_DONE);
    cr_expect(o.dashdash);
    cr_expect_eq(optind, 3);
    /* a `--` that is a value does not end the flags */
    char *a2[] = {"x", "-u", "--", "cmd", NULL};
    client_init(&o, 4, a2);
    cr_assert_eq(client_parse_flags(&o, "+" CLIENT_SHORTOPTS "q", longopts, "", take_q_u, &s),
                 CLIENT_OPT_DONE);
    cr_expect_not(o.dashdash);
    cr_expect_str_eq(s.u_arg, "--");
    char *a3[] = {"x", "-q", "cmd", "--", NULL};
    client_init(&o, 4, a3);
    cr_assert_eq(client_parse_flags(&o, "+" CLIENT_SHORTOPTS "q", longopts, "", take_q_u, &s),
                 CLIENT_OPT_DONE);
    cr_expect_not(o.dashdash);
    char *a4[] = {"x", "--", NULL};
    client_init(&o, 2, a4);
    cr_assert_eq(client_parse_flags(&o, "+" CLIENT_SHORTOPTS "q", longopts, "", take_q_u, &s),
                 CLIENT_OPT_DONE);
    cr_expect(o.dashdash);
}

Test(client, help_says_where_runjobs_flags_end, .init = no_certs)
{
    const char *verbs[] = {"start", "run"};

    for (int i = 0; i < 2; i++) {
        char *out, want[128];
        cr_assert_eq(run_applet(&out, NULL, verbs[i], "--help", NULL), 0);
        (void)snprintf(want, sizeof(want),
                       "runjob %s /usr/bin/echo -A \"hello world\" --server-host=localhost",
                       verbs[i]);
        cr_expect(strstr(out, want), "%s --help: %s", verbs[i], out);
        (void)snprintf(want, sizeof(want), "`runjob %s /bin/echo -- -n hi` runs", verbs[i]);
        cr_expect(strstr(out, want), "%s --help: %s", verbs[i], out);
        cr_expect(strstr(out, "runjob does not guess"), "%s", out);
        free(out);
    }
}

/* ---- contexts and -H HOST:PORT ----------------------------------------------------------- */

Test(client, split_host_port)
{
    static const struct {
        const char *in, *host;
        int port, r;
    } cases[] = {
        {"example.com", "example.com", 0, 0},
        {"example.com:8443", "example.com", 8443, 0},
        {"127.0.0.1:1", "127.0.0.1", 1, 0},
        {"::1", "::1", 0, 0},
        {"fe80::1:2", "fe80::1:2", 0, 0},
        {"[::1]:9000", "::1", 9000, 0},
        {"[::1]", "::1", 0, 0},
        {"host:0", NULL, 0, -EINVAL},
        {"host:65536", NULL, 0, -EINVAL},
        {"host:", NULL, 0, -EINVAL},
        {":80", NULL, 0, -EINVAL},
        {"[::1]:", NULL, 0, -EINVAL},
        {"[::1]x", NULL, 0, -EINVAL},
        {"[]:80", NULL, 0, -EINVAL},
        {"[::1", NULL, 0, -EINVAL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[64];
        const char *host = NULL;
        int port = -1;
        int r = client_split_host_port(cases[i].in, buf, sizeof(buf), &host, &port);
        cr_expect_eq(r, cases[i].r, "%s: %d", cases[i].in, r);
        if (r == 0) {
            cr_expect_str_eq(host, cases[i].host, "%s", cases[i].in);
            cr_expect_eq(port, cases[i].port, "%s", cases[i].in);
        }
    }
}

Test(client, host_flag_with_port, .init = no_certs)
{
    struct client_opts o;
    char *argv[] = {"ping", NULL};

    client_init(&o, 1, argv);
    cr_assert_eq(client_option(&o, 'H', "[::1]:9001", ""), CLIENT_OPT_DONE);
    cr_assert_eq(client_opts_finish(&o), 0);
    cr_expect_str_eq(o.host, "::1");
    cr_expect_eq(o.port, 9001);

    client_init(&o, 1, argv); /* the same port both ways is fine */
    cr_assert_eq(client_option(&o, 'P', "9001", ""), CLIENT_OPT_DONE);
    cr_assert_eq(client_option(&o, 'H', "h:9001", ""), CLIENT_OPT_DONE);
    cr_assert_eq(client_opts_finish(&o), 0);
    cr_expect_eq(o.port, 9001);

    expect_usage("ping", "-H", "h:9001", "-P", "9002", NULL);
    expect_usage("ping", "--server-host", "h:99999", NULL);
    setenv("RUNJOB_SERVER_HOST", "envhost:7000", 1);
    client_init(&o, 1, argv);
    cr_assert_eq(client_opts_finish(&o), 0);
    cr_expect_str_eq(o.host, "envhost");
    cr_expect_eq(o.port, 7000);
    setenv("RUNJOB_SERVER_PORT", "7001", 1);
    client_init(&o, 1, argv);
    cr_expect_eq(client_opts_finish(&o), 2);
}

static char ctx_home[] = "/tmp/test_client_ctx.XXXXXX";

static void with_context(void)
{
    no_certs();
    unsetenv("RUNJOB_CA_CERT_PATH");
    cr_assert_not_null(mkdtemp(ctx_home));
    setenv("XDG_CONFIG_HOME", ctx_home, 1);
    char path[256];
    (void)snprintf(path, sizeof(path), "%s/runjob", ctx_home);
    cr_assert_eq(mkdir(path, 0700), 0);
    (void)snprintf(path, sizeof(path), "%s/runjob/contexts", ctx_home);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("current = one\n"
          "[one]\nserver-host = ctxhost\nserver-port = 6000\nca-cert-path = /ctx/ca.pem\n"
          "client-cert-path = /ctx/cert.pem\nclient-key-path = /ctx/key.pem\n"
          "certs-dir = /ctx\n"
          "[two]\nserver-host = twohost\n",
          f);
    fclose(f);
}

static void drop_context(void)
{
    char cmd[300];
    (void)snprintf(cmd, sizeof(cmd), "rm -rf %s", ctx_home);
    (void)system(cmd);
}

Test(client, context_precedence, .init = with_context, .fini = drop_context)
{
    struct client_opts o;
    char *argv[] = {"ping", NULL};

    /* the current context, for everything */
    client_init(&o, 1, argv);
    cr_assert_eq(client_opts_finish(&o), 0);
    cr_expect_str_eq(o.ctx_name, "one");
    cr_expect_str_eq(o.host, "ctxhost");
    cr_expect_eq(o.port, 6000);
    cr_expect_str_eq(o.ca_path, "/ctx/ca.pem");
    cr_expect_str_eq(o.cert_path, "/ctx/cert.pem");
    cr_expect_str_eq(o.key_path, "/ctx/key.pem");

    /* -u takes the user's files from the context's certs-dir */
    client_init(&o, 1, argv);
    cr_assert_eq(client_option(&o, 'u', "bob", ""), CLIENT_OPT_DONE);
    cr_assert_eq(client_opts_finish(&o), 0);
    cr_expect_str_eq(o.cert_path, "/ctx/bob-cert.pem");
    cr_expect_str_eq(o.key_path, "/ctx/bob-key.pem");

    /* the environment beats the context, setting by setting */
    setenv("RUNJOB_SERVER_HOST", "envhost", 1);
    client_init(&o, 1, argv);
    cr_assert_eq(client_opts_finish(&o), 0);
    cr_expect_str_eq(o.host, "envhost");
    cr_expect_eq(o.port, 6000);
    cr_expect_str_eq(o.ca_path, "/ctx/ca.pem");

    /* a flag beats the environment */
    client_init(&o, 1, argv);
    cr_assert_eq(client_option(&o, 'H', "flaghost", ""), CLIENT_OPT_DONE);
    cr_assert_eq(client_opts_finish(&o), 0);
    cr_expect_str_eq(o.host, "flaghost");
    unsetenv("RUNJOB_SERVER_HOST");

    /* RUNJOB_CONTEXT beats the current one, --context beats RUNJOB_CONTEXT; what a context
     * leaves out comes from the defaults */
    setenv("RUNJOB_CONTEXT", "two", 1);
    client_init(&o, 1, argv);
    cr_assert_eq(client_opts_finish(&o), 0);
    cr_expect_str_eq(o.host, "twohost");
    cr_expect_eq(o.port, 8080);
    cr_expect_str_eq(o.cert_path, "certs/client-cert.pem");
    client_init(&o, 1, argv);
    cr_assert_eq(client_option(&o, CLIENT_OPT_CONTEXT, "one", ""), CLIENT_OPT_DONE);
    cr_assert_eq(client_opts_finish(&o), 0);
    cr_expect_str_eq(o.host, "ctxhost");

    /* an unknown one is an error that lists the known ones */
    setenv("RUNJOB_CONTEXT", "three", 1);
    char *err = NULL;
    cr_expect_eq(run_applet(NULL, &err, "ping", NULL), 2);
    cr_expect(strstr(err, "no context 'three' (RUNJOB_CONTEXT); there are: one, two"), "%s", err);
    free(err);
    /* jobctl's client1 default gives way to the context's certificate */
    unsetenv("RUNJOB_CONTEXT");
    char ca[300];
    (void)snprintf(ca, sizeof(ca), "%s/ca.pem", ctx_home);
    FILE *f = fopen(ca, "w");
    cr_assert_not_null(f);
    fputs("-----BEGIN CERTIFICATE-----\n", f);
    fclose(f);
    setenv("RUNJOB_CA_CERT_PATH", ca, 1);
    cr_expect_eq(run_applet(NULL, &err, "jobctl", "list", NULL), 255);
    cr_expect(strstr(err, "cannot read client certificate '/ctx/cert.pem'"), "%s", err);
    unsetenv("RUNJOB_CA_CERT_PATH");
    free(err);
    unsetenv("RUNJOB_CONTEXT");
    cr_expect_eq(run_applet(NULL, &err, "ping", "--context", "a/b", NULL), 2);
    cr_expect(strstr(err, "not a context name"), "%s", err);
    free(err);
}

Test(client, unknown_flags_and_values_say_what_was_meant, .init = no_certs)
{
    char *err = NULL;

    cr_expect_eq(run_applet(NULL, &err, "ping", "--server-hots", "h", NULL), 2);
    cr_expect_str_eq(err, "runjob: ping: unknown flag '--server-hots'; did you mean "
                          "'--server-host'? (see 'runjob ping --help')\n");
    free(err);
    cr_expect_eq(run_applet(NULL, &err, "ping", "--server", "h", NULL), 2);
    cr_expect(strstr(err, "did you mean '--server-host' or '--server-port'?"), "%s", err);
    free(err);
    cr_expect_eq(run_applet(NULL, &err, "start", "--memroy=1G", "/bin/true", NULL), 2);
    cr_expect(strstr(err, "unknown flag '--memroy=1G'; did you mean '--memory'?"), "%s", err);
    free(err);
    cr_expect_eq(run_applet(NULL, &err, "list", "--state", "runing", NULL), 2);
    cr_expect_str_eq(err, "runjob: list: --state 'runing' is not a job state (starting, running, "
                          "exited, killed, failed, lost); did you mean 'running'? (see 'runjob "
                          "list --help')\n");
    free(err);
    cr_expect_eq(run_applet(NULL, &err, "context", "uze", "x", NULL), 2);
    cr_expect(strstr(err, "unknown command 'uze' (add, use, list, rm, show); did you mean 'use'?"),
              "%s", err);
    free(err);
    cr_expect_eq(run_applet(NULL, &err, "jobctl", "qeury", NULL), 2);
    cr_expect(strstr(err, "unknown command 'qeury'; did you mean 'query'?"), "%s", err);
    free(err);
}
