/* runjob certs as a command: what it does to a folder that already holds a CA (refuses,
 * --force, --reuse-ca, --clients-only), what it prints, and its exit codes (2 for usage
 * errors, 1 for the rest). What one run writes: test_certs.c. */
#include "test_certs.h"

#include <criterion/parameterized.h>

Test(certs, refuses_to_overwrite_a_ca_without_force)
{
    const char *out = path_in("out");

    cr_assert_eq(run("-q", "-o", out, NULL), 0);
    X509 *before = load_cert(out, "root-ca-cert.pem");
    cr_expect_eq(run("-q", "-o", out, NULL), 1);
    X509 *after = load_cert(out, "root-ca-cert.pem");
    cr_expect_eq(X509_cmp(before, after), 0, "the CA was left alone");
    X509_free(before);
    X509_free(after);
}

Test(certs, refuses_when_only_the_ca_key_is_there)
{
    const char *out = path_in("out");
    char p[600];

    cr_assert_eq(mkdir(out, 0755), 0);
    snprintf(p, sizeof(p), "%s/root-ca-key.pem", out);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs("precious\n", f);
    fclose(f);
    cr_expect_eq(run("-q", "-o", out, NULL), 1);
    cr_expect(!exists(out, "root-ca-cert.pem"));
}

Test(certs, force_replaces_the_ca)
{
    const char *out = path_in("out");

    cr_assert_eq(run("-q", "-o", out, NULL), 0);
    X509 *before = load_cert(out, "root-ca-cert.pem");
    cr_assert_eq(run("-q", "-o", out, "--force", NULL), 0);
    X509 *after = load_cert(out, "root-ca-cert.pem");
    X509 *srv = load_cert(out, "server-cert.pem");
    cr_expect_neq(X509_cmp(before, after), 0, "a new CA");
    cr_expect_eq(verify(after, srv, X509_PURPOSE_SSL_SERVER), X509_V_OK);
    cr_expect_neq(verify(before, srv, X509_PURPOSE_SSL_SERVER), X509_V_OK);
    assert_same_file(out, "root-ca-cert.pem", "ca-clients-bundle.pem", true);
    cr_expect_eq(mode_of(out, "root-ca-key.pem"), 0600);
    X509_free(before);
    X509_free(after);
    X509_free(srv);
}

Test(certs, reuse_ca_signs_new_certificates_with_the_existing_ca)
{
    const char *out = path_in("out");

    cr_assert_eq(run("-q", "-o", out, NULL), 0);
    X509 *ca = load_cert(out, "root-ca-cert.pem");
    X509 *old_srv = load_cert(out, "server-cert.pem");
    cr_assert_eq(run("-q", "-o", out, "--reuse-ca", "--user", "carol", NULL), 0);
    X509 *ca2 = load_cert(out, "root-ca-cert.pem");
    X509 *srv = load_cert(out, "server-cert.pem");
    X509 *carol = load_cert(out, "carol-cert.pem");
    cr_expect_eq(X509_cmp(ca, ca2), 0, "same CA");
    cr_expect_neq(X509_cmp(old_srv, srv), 0, "a new server certificate");
    cr_expect_eq(verify(ca, srv, X509_PURPOSE_SSL_SERVER), X509_V_OK);
    cr_expect_eq(verify(ca, carol, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
    cr_expect_str_eq(cn_of(carol), "carol");
    assert_same_file(out, "client-cert.pem", "carol-cert.pem", true);
    cr_expect(exists(out, "alice-cert.pem"), "earlier users stay");
    X509_free(ca);
    X509_free(ca2);
    X509_free(old_srv);
    X509_free(srv);
    X509_free(carol);
}

Test(certs, clients_only_adds_a_user_and_leaves_the_rest)
{
    const char *out = path_in("out");

    cr_assert_eq(run("-q", "-o", out, NULL), 0);
    X509 *srv = load_cert(out, "server-cert.pem");
    cr_assert_eq(run("-q", "-o", out, "--clients-only", "--user", "erin", "--days", "3", NULL), 0);
    X509 *srv2 = load_cert(out, "server-cert.pem");
    X509 *ca = load_cert(out, "root-ca-cert.pem");
    X509 *erin = load_cert(out, "erin-cert.pem");
    cr_expect_eq(X509_cmp(srv, srv2), 0, "server certificate untouched");
    assert_same_file(out, "client-cert.pem", "alice-cert.pem", true);
    cr_expect_eq(verify(ca, erin, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
    cr_expect(seconds_left(erin) <= 3 * DAY);
    cr_expect_eq(mode_of(out, "erin-key.pem"), 0600);
    X509_free(srv);
    X509_free(srv2);
    X509_free(ca);
    X509_free(erin);
}

Test(certs, reuse_ca_keeps_an_extended_bundle)
{
    const char *out = path_in("out"), *other = path_in("other");
    char cmd[2048];

    cr_assert_eq(run("-q", "-o", out, NULL), 0);
    cr_assert_eq(run("-q", "-o", other, NULL), 0);
    snprintf(cmd, sizeof(cmd), "cat %s/root-ca-cert.pem >> %s/ca-clients-bundle.pem", other, out);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(run("-q", "-o", out, "--clients-only", "--user", "frank", NULL), 0);
    snprintf(cmd, sizeof(cmd), "test $(grep -c 'BEGIN CERTIFICATE' %s/ca-clients-bundle.pem) = 2",
             out);
    cr_expect_eq(system(cmd), 0, "the appended CA is still in the bundle");
}

Test(certs, reuse_ca_without_a_ca_fails)
{
    const char *out = path_in("out");

    cr_expect_eq(run("-q", "-o", out, "--reuse-ca", NULL), 1);
    cr_expect_eq(run("-q", "-o", out, "--clients-only", "--user", "x", NULL), 1);
    cr_expect(!exists(out, "root-ca-cert.pem"));
    /* The folder it made for nothing is gone again. */
    cr_expect_eq(access(out, F_OK), -1, "'%s' is left behind", out);
}

/* Runs certs in a child with stdout to a file; returns the exit code, fills buf. */
static int run_captured(char *buf, size_t cap, char **argv, int argc)
{
    const char *outp = path_in("stdout.txt");
    pid_t pid = fork();
    int status;

    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (!freopen(outp, "w", stdout))
            _exit(99);
        int r = applet_certs_main(argc, argv);
        fflush(stdout);
        _exit(r);
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    FILE *f = fopen(outp, "r");
    cr_assert_not_null(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    return WEXITSTATUS(status);
}

Test(certs, help_lists_every_flag_and_exits_0)
{
    static char buf[16384];
    char *argv[] = {"certs", "--help", NULL};
    const char *flags[] = {"--out",         "--user",     "--host",         "--days",   "--ca-days",
                           "--server-days", "--reuse-ca", "--clients-only", "--force",  "--quiet",
                           "--expired",     "--no-cn",    "default",        "Examples", "testing"};

    cr_assert_eq(run_captured(buf, sizeof(buf), argv, 2), 0);
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        cr_expect_not_null(strstr(buf, flags[i]), "--help does not mention %s", flags[i]);
}

Test(certs, prints_one_line_per_file_written_unless_quiet)
{
    static char buf[16384];
    const char *out = path_in("out");
    char *argv[] = {"certs", "-o", (char *)out, NULL};
    int lines = 0;

    cr_assert_eq(run_captured(buf, sizeof(buf), argv, 3), 0);
    for (size_t i = 0; i < sizeof(all_files) / sizeof(all_files[0]); i++) {
        char want[600];
        snprintf(want, sizeof(want), "%s/%s:", out, all_files[i]);
        cr_expect_not_null(strstr(buf, want), "summary lacks %s", all_files[i]);
    }
    for (char *p = buf; *p; p++)
        lines += *p == '\n';
    cr_expect_eq(lines, (int)(sizeof(all_files) / sizeof(all_files[0])) + 1, "%s", buf);
    cr_expect_not_null(strstr(buf, "verified"));
}

/* Every usage error exits 2, writes nothing, and creates no folder. */
struct bad_args {
    int n;
    char a[4][80]; /* arrays, not pointers: parameters are copied into each test's process */
};

ParameterizedTestParameters(certs, usage_errors_exit_2)
{
    static struct bad_args params[] = {
        {1, {"--bogus"}},
        {1, {"-x"}},
        {1, {"extra-argument"}},
        {1, {"--days"}},
        {2, {"--days", "0"}},
        {2, {"--days", "-1"}},
        {2, {"--days", "abc"}},
        {2, {"--days", "12x"}},
        {2, {"--days", ""}},
        {2, {"--days", "99999999999999999999"}},
        {2, {"--days", "36501"}},
        {2, {"--ca-days", "0"}},
        {2, {"--server-days", "-5"}},
        {2, {"--user", ""}},
        {2, {"--user", "a/b"}},
        {2, {"--user", "../evil"}},
        {2, {"--user", ".."}},
        {2, {"--user", ".hidden"}},
        {2, {"--user", "-dash"}},
        {2, {"--user", "sp ace"}},
        {2, {"--user", "new\nline"}},
        {2, {"--user", "semi;colon"}},
        {4, {"--user", "x", "--user", "x"}},
        {2, {"--user", "root-ca"}},
        {2, {"--user", "server"}},
        {2, {"--user", "client"}},
        {2, {"--user", "a12345678901234567890123456789012345678901234567890123456789012345"}},
        {2, {"--host", ""}},
        {2, {"--host", "a,DNS:evil.com"}},
        {2, {"--host", "-bad.example"}},
        {2, {"--host", "10.1"}},
        {2, {"--host", "bad..example"}},
        {2, {"--host", "[::1]"}},
        {2, {"--force", "--reuse-ca"}},
        {2, {"--force", "--clients-only"}},
        {2, {"--out", ""}},
    };
    return cr_make_param_array(struct bad_args, params, sizeof(params) / sizeof(params[0]));
}

ParameterizedTest(struct bad_args *p, certs, usage_errors_exit_2)
{
    const char *out = path_in("out");
    char *argv[16] = {"certs", "-q", "-o", (char *)out};
    int argc = 4;

    for (int i = 0; i < p->n; i++)
        argv[argc++] = p->a[i];
    argv[argc] = NULL;
    cr_expect_eq(applet_certs_main(argc, argv), 2, "'%s %s': expected exit 2", p->a[0], p->a[1]);
    cr_expect(access(out, F_OK) != 0, "a usage error created '%s'", out);
}

Test(certs, runtime_errors_exit_1)
{
    const char *file = path_in("a-file");
    char sub[600];
    FILE *f = fopen(file, "w");

    cr_assert_not_null(f);
    fclose(f);
    cr_expect_eq(run("-q", "-o", file, NULL), 1, "out is a regular file");
    snprintf(sub, sizeof(sub), "%s/missing/deeper", tmpdir);
    cr_expect_eq(run("-q", "-o", sub, NULL), 1, "parent folder missing");
}

Test(certs, reuse_ca_refuses_a_mismatched_key)
{
    const char *a = path_in("a"), *b = path_in("b");
    char cmd[2048];

    cr_assert_eq(run("-q", "-o", a, NULL), 0);
    cr_assert_eq(run("-q", "-o", b, NULL), 0);
    snprintf(cmd, sizeof(cmd), "cp %s/root-ca-key.pem %s/root-ca-key.pem", b, a);
    cr_assert_eq(system(cmd), 0);
    cr_expect_eq(run("-q", "-o", a, "--reuse-ca", NULL), 1);
}
