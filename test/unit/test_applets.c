/* The applet table (applets/applets.def) and the front-door dispatch in applets/applets.c.
 * main.c only calls applet_find/applet_run_front, so those are what is tested here. */
#include <criterion/criterion.h>

#include <ftw.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "applets/applets.h"

static char tmpdir[] = "/tmp/test_applets.XXXXXX";

static void setup(void)
{
    cr_assert_not_null(mkdtemp(tmpdir));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void teardown(void)
{
    (void)nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(applets, .init = setup, .fini = teardown);

/* Runs applet_run_front(front, argv) in a child whose stdout and stderr go to files in tmpdir
 * (so that this process's streams stay clean); returns the exit code and fills out/err. */
static int run_front(const char *front, char **argv, char *out, size_t out_cap, char *err,
                     size_t err_cap)
{
    char out_path[256], err_path[256];
    int argc = 0, status;
    pid_t pid;

    while (argv[argc])
        argc++;
    snprintf(out_path, sizeof(out_path), "%s/stdout", tmpdir);
    snprintf(err_path, sizeof(err_path), "%s/stderr", tmpdir);
    fflush(NULL);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (!freopen(out_path, "w", stdout) || !freopen(err_path, "w", stderr))
            _exit(99);
        alarm(30); /* a hung --help must fail the test, not stall the run */
        int r = applet_run_front(front, argc, argv);
        fflush(NULL);
        _exit(r);
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "'%s %s' died (signal %d)", front, argc > 1 ? argv[1] : "",
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    const char *paths[] = {out_path, err_path};
    char *bufs[] = {out, err};
    size_t caps[] = {out_cap, err_cap};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(paths[i], "r");
        cr_assert_not_null(f);
        size_t n = fread(bufs[i], 1, caps[i] - 1, f);
        bufs[i][n] = '\0';
        fclose(f);
    }
    return WEXITSTATUS(status);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

Test(applets, table_is_sorted_by_name_and_complete)
{
    size_t n;
    const struct applet *t = applet_table_get(&n);

    cr_assert_gt(n, 0, "the table is empty");
    cr_expect_null(t[n].name, "the table ends with a NULL sentinel");
    for (size_t i = 0; i < n; i++) {
        cr_assert_not_null(t[i].name);
        cr_expect_gt(strlen(t[i].name), 0);
        cr_expect_null(strchr(t[i].name, ' '), "'%s': no spaces in a command", t[i].name);
        cr_expect_not_null(t[i].main, "%s: no main", t[i].name);
        cr_assert_not_null(t[i].help, "%s: no help line", t[i].name);
        cr_expect_gt(strlen(t[i].help), 0, "%s: empty help line", t[i].name);
        cr_expect_null(strchr(t[i].help, '\n'), "%s: help is one line", t[i].name);
        cr_expect_neq(t[i].flags, 0, "%s: in no front", t[i].name);
        cr_expect_eq(t[i].flags & ~(unsigned)(AP_RUNJOB | AP_JOBMANAGER | AP_INTERNAL), 0,
                     "%s: unknown flags", t[i].name);
        if (i > 0)
            cr_expect_lt(strcmp(t[i - 1].name, t[i].name), 0,
                         "applets.def is not sorted (or has a duplicate): '%s' before '%s'",
                         t[i - 1].name, t[i].name);
    }
}

Test(applets, find_returns_the_entry_or_null)
{
    size_t n;
    const struct applet *t = applet_table_get(&n);

    for (size_t i = 0; i < n; i++)
        cr_expect_eq(applet_find(t[i].name), &t[i], "%s", t[i].name);
    cr_expect_null(applet_find("no-such-applet"));
    cr_expect_null(applet_find(""));
    cr_expect_null(applet_find("--help"));
    cr_expect_null(applet_find("CERTS"), "names are case-sensitive");
    const struct applet *c = applet_find("certs");
    cr_assert_not_null(c);
    cr_expect_eq(c->main, applet_certs_main);
    cr_expect(c->flags & AP_RUNJOB);
    cr_expect(c->flags & AP_JOBMANAGER);
}

Test(applets, unknown_command_or_flag_exits_2_with_one_line)
{
    char out[4096], err[4096];
    char *cmd[] = {"runjob", "no-such-command", NULL};
    char *flag[] = {"runjob", "--no-such-flag", NULL};
    char *bare[] = {"runjob", NULL};

    cr_expect_eq(run_front("runjob", cmd, out, sizeof(out), err, sizeof(err)), 2);
    cr_expect_eq(count_lines(err), 1, "%s", err);
    cr_expect_not_null(strstr(err, "no-such-command"));
    cr_expect_eq(run_front("runjob", flag, out, sizeof(out), err, sizeof(err)), 2);
    cr_expect_eq(count_lines(err), 1, "%s", err);
    cr_expect_not_null(strstr(err, "--no-such-flag"));
    cr_expect_eq(run_front("jobmanager", cmd, out, sizeof(out), err, sizeof(err)), 2);
    cr_expect_eq(run_front("runjob", bare, out, sizeof(out), err, sizeof(err)), 2,
                 "no command at all is a usage error");
    cr_expect_not_null(strstr(err, "Usage"), "and prints the command list: %s", err);
}

Test(applets, help_lists_the_commands_of_each_front_and_exits_0)
{
    static char out[65536], err[4096];
    const char *fronts[] = {"runjob", "jobmanager"};
    const unsigned masks[] = {AP_RUNJOB, AP_JOBMANAGER};
    size_t n;
    const struct applet *t = applet_table_get(&n);

    for (int f = 0; f < 2; f++) {
        char *argv[] = {(char *)fronts[f], "--help", NULL};
        char *argv_h[] = {(char *)fronts[f], "-h", NULL};
        cr_expect_eq(run_front(fronts[f], argv_h, out, sizeof(out), err, sizeof(err)), 0);
        cr_expect_eq(run_front(fronts[f], argv, out, sizeof(out), err, sizeof(err)), 0);
        cr_expect_str_empty(err);
        for (size_t i = 0; i < n; i++) {
            char line[256];
            snprintf(line, sizeof(line), "  %-12s %s\n", t[i].name, t[i].help);
            bool listed = strstr(out, line) != NULL;
            /* an internal applet too when it carries the front's flag (jobmanager's run-job) */
            bool want = t[i].flags & masks[f];
            cr_expect_eq(listed, want, "%s --help: '%s' %s", fronts[f], t[i].name,
                         want ? "missing" : "must not be listed");
        }
    }
}

Test(applets, version_with_an_argument_is_a_usage_error)
{
    static char out[4096], err[4096];
    char *version[] = {"runjob", "--version", "extra", NULL};

    cr_expect_eq(run_front("runjob", version, out, sizeof(out), err, sizeof(err)), 2);
    cr_expect_str_eq(out, "");
    cr_expect_not_null(strstr(err, "unexpected argument 'extra' after --version"), "%s", err);
}

Test(applets, version_and_list_exit_0)
{
    static char out[65536], err[4096];
    char *version[] = {"runjob", "--version", NULL};
    char *list[] = {"runjob", "--list", NULL};
    size_t n, visible = 0;
    const struct applet *t = applet_table_get(&n);

    cr_expect_eq(run_front("runjob", version, out, sizeof(out), err, sizeof(err)), 0);
    cr_expect_eq(strncmp(out, "runjob " RUNJOB_VERSION " ", strlen("runjob " RUNJOB_VERSION " ")),
                 0, "%s", out);
    cr_expect_eq(count_lines(out), 1);
    /* Leading newline, so that every name can be searched as "\nname\n". */
    out[0] = '\n';
    cr_expect_eq(run_front("runjob", list, out + 1, sizeof(out) - 1, err, sizeof(err)), 0);
    for (size_t i = 0; i < n; i++) {
        char line[128];
        snprintf(line, sizeof(line), "\n%s\n", t[i].name);
        if (t[i].flags & AP_INTERNAL) {
            cr_expect_null(strstr(out, line), "--list shows internal '%s'", t[i].name);
        } else {
            cr_expect_not_null(strstr(out, line), "--list lacks '%s'", t[i].name);
            visible++;
        }
    }
    cr_expect_eq((size_t)count_lines(out + 1), visible);
}

/* docs/STYLE.md "Applets": every applet has a usage text. Each listed applet's --help exits 0
 * and prints something (run in a child, so an applet that misbehaves fails only this test). */
Test(applets, every_listed_applet_answers_help_with_exit_0)
{
    static char out[65536], err[4096];
    size_t n;
    const struct applet *t = applet_table_get(&n);

    for (size_t i = 0; i < n; i++) {
        if (t[i].flags & AP_INTERNAL)
            continue;
        char *argv[] = {"runjob", (char *)t[i].name, "--help", NULL};
        cr_expect_eq(run_front("runjob", argv, out, sizeof(out), err, sizeof(err)), 0,
                     "runjob %s --help", t[i].name);
        cr_expect_gt(strlen(out), 0, "runjob %s --help printed nothing", t[i].name);
    }
}

Test(applets, jobmanager_help_shows_serve_and_run_job)
{
    static char out[65536], err[4096];
    char *jm[] = {"jobmanager", "--help", NULL};
    char *rj[] = {"runjob", "--help", NULL};

    cr_expect_eq(run_front("jobmanager", jm, out, sizeof(out), err, sizeof(err)), 0);
    cr_expect(strstr(out, "\n  serve        "), "%s", out);
    cr_expect(strstr(out, "\n  run-job      internal: "), "%s", out);
    cr_expect_null(strstr(out, "\n  shim "), "%s", out);
    cr_expect_eq(run_front("runjob", rj, out, sizeof(out), err, sizeof(err)), 0);
    cr_expect_null(strstr(out, "run-job"), "runjob --help lists run-job: %s", out);
}

/* The shim's door says what it is on --help (exit 0, one line), and nothing more without the
 * server's fds (exit 2). */
Test(applets, internal_shim_answers_help_and_refuses_a_hand_start)
{
    static char out[65536], err[4096];
    char *jm_help[] = {"jobmanager", "run-job", "--help", NULL};
    char *shim_h[] = {"runjob", "shim", "-h", NULL};
    char *shim[] = {"runjob", "shim", NULL};
    char *shim_none[] = {"runjob", "shim", "none", NULL};
    char *jm_run_job[] = {"jobmanager", "run-job", NULL};

    cr_expect_eq(run_front("jobmanager", jm_help, out, sizeof(out), err, sizeof(err)), 0);
    cr_expect_eq(count_lines(out), 1, "%s", out);
    cr_expect(strncmp(out, "jobmanager run-job: internal command", 36) == 0, "%s", out);
    cr_expect(strstr(out, "started by the job server"), "%s", out);
    cr_expect_str_empty(err);
    cr_expect_eq(run_front("runjob", shim_h, out, sizeof(out), err, sizeof(err)), 0);
    cr_expect(strncmp(out, "runjob shim: internal command", 29) == 0, "%s", out);
    char **hand[] = {shim, shim_none, jm_run_job};
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(run_front(hand[i][0], hand[i], out, sizeof(out), err, sizeof(err)), 2);
        cr_expect_str_eq(err, "runjob shim: internal command, started by the job server only\n");
        cr_expect_str_empty(out);
    }
}

Test(applets, dispatch_passes_the_command_as_argv0)
{
    static char out[65536], err[4096];
    char *argv[] = {"runjob", "certs", "--no-such-flag", NULL};

    /* certs reports a usage error for its own flag: the front handed it argv from "certs". */
    cr_expect_eq(run_front("runjob", argv, out, sizeof(out), err, sizeof(err)), 2);
    cr_expect_not_null(strstr(err, "--no-such-flag"), "%s", err);
}

Test(applets, unknown_command_says_what_was_meant)
{
    char out[4096], err[4096];
    char *typo[] = {"runjob", "stauts", NULL};
    char *flag[] = {"runjob", "--verison", NULL};
    char *internal[] = {"runjob", "shmi", NULL};
    char *far[] = {"runjob", "xyzzy", NULL};

    cr_expect_eq(run_front("runjob", typo, out, sizeof(out), err, sizeof(err)), 2);
    cr_expect_str_eq(err, "runjob: unknown command 'stauts'; did you mean 'status'? (see "
                          "'runjob --help')\n");
    cr_expect_eq(run_front("runjob", flag, out, sizeof(out), err, sizeof(err)), 2);
    cr_expect_not_null(strstr(err, "unknown flag '--verison'; did you mean '--version'?"), "%s",
                       err);
    /* internal applets are never offered */
    cr_expect_eq(run_front("runjob", internal, out, sizeof(out), err, sizeof(err)), 2);
    cr_expect_null(strstr(err, "did you mean"), "%s", err);
    cr_expect_eq(run_front("runjob", far, out, sizeof(out), err, sizeof(err)), 2);
    cr_expect_null(strstr(err, "did you mean"), "%s", err);
}
