/* The contexts file (applets/context-store.c): its format both ways, the errors a hand edit
 * can make with their line, the store's operations, and the atomic, private save. */
#include <criterion/criterion.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "applets/context-store.h"

static char tmpdir[] = "/tmp/test_context_store.XXXXXX";

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

TestSuite(cstore, .init = setup, .fini = teardown);

static const char sample[] = "# a comment\n"
                             "current = prod\n"
                             "\n"
                             "[prod]\n"
                             "server-host = build.example.com\n"
                             "  server-port=8443  \n"
                             "ca-cert-path = /c/root ca.pem\n"
                             "client-cert-path = /c/alice-cert.pem\n"
                             "client-key-path = /c/alice-key.pem\n"
                             "certs-dir = /c\n"
                             "[lab]\n"
                             "server-host = ::1\n";

Test(cstore, parse_reads_every_key)
{
    struct cstore *s = NULL;
    char msg[128];
    int line = -1;

    cr_assert_eq(cstore_parse(sample, &s, &line, msg, sizeof(msg)), 0, "%d: %s", line, msg);
    cr_assert_eq(cstore_count(s), 2);
    cr_expect_str_eq(cstore_current(s), "prod");
    /* sorted by name */
    cr_expect_str_eq(cstore_at(s, 0)->name, "lab");
    const struct cstore_context *c = cstore_find(s, "prod");
    cr_assert_not_null(c);
    cr_expect_str_eq(c->host, "build.example.com");
    cr_expect_eq(c->port, 8443);
    cr_expect_str_eq(c->ca_path, "/c/root ca.pem"); /* blanks inside a value are kept */
    cr_expect_str_eq(c->cert_path, "/c/alice-cert.pem");
    cr_expect_str_eq(c->key_path, "/c/alice-key.pem");
    cr_expect_str_eq(c->certs_dir, "/c");
    c = cstore_find(s, "lab");
    cr_expect_str_eq(c->host, "::1");
    cr_expect_eq(c->port, 0);
    cr_expect_null(c->ca_path);
    cr_expect_null(cstore_find(s, "nope"));
    cstore_free(s);
}

Test(cstore, format_then_parse_gives_the_same_store)
{
    struct cstore *s = NULL, *t = NULL;
    char *text = NULL, *again = NULL, msg[128];
    int line;

    cr_assert_eq(cstore_parse(sample, &s, &line, msg, sizeof(msg)), 0);
    cr_assert_eq(cstore_format(s, &text), 0);
    cr_assert_eq(cstore_parse(text, &t, &line, msg, sizeof(msg)), 0, "%s", text);
    cr_assert_eq(cstore_format(t, &again), 0);
    cr_expect_str_eq(text, again);
    cr_expect_str_eq(cstore_current(t), "prod");
    cr_expect_eq(cstore_find(t, "prod")->port, 8443);
    free(text);
    free(again);
    cstore_free(s);
    cstore_free(t);
}

Test(cstore, parse_errors_name_their_line)
{
    static const struct {
        const char *text;
        int line;
        const char *words;
    } cases[] = {
        {"[a]\nserver-hots = x\n", 2, "unknown key 'server-hots'"},
        {"[a]\nserver-port = 0\n", 2, "not a port"},
        {"[a]\nserver-port = 70000\n", 2, "not a port"},
        {"[a]\nserver-port = 80x\n", 2, "not a port"},
        {"\n\n[a]\n[a]\n", 4, "defined twice"},
        {"server-host = x\n", 1, "before any [NAME]"},
        {"current = a\ncurrent = b\n", 2, "set twice"},
        {"[a]\nserver-host = x\nserver-host = y\n", 3, "set twice"},
        {"[a b]\n", 1, "not a context name"},
        {"[a\n", 1, "[NAME]"},
        {"[a]\njust words\n", 2, "KEY = VALUE"},
        {"[a]\nserver-host =\n", 2, "no value"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cstore *s = NULL;
        char msg[256] = "";
        int line = 0;
        cr_expect_eq(cstore_parse(cases[i].text, &s, &line, msg, sizeof(msg)), -EBADMSG, "%zu", i);
        cr_expect_eq(line, cases[i].line, "case %zu: line %d: %s", i, line, msg);
        cr_expect(strstr(msg, cases[i].words), "case %zu: '%s'", i, msg);
        cr_expect_null(s);
    }
}

Test(cstore, empty_text_is_an_empty_store)
{
    struct cstore *s = NULL;
    char msg[64];
    int line;

    cr_assert_eq(cstore_parse("", &s, &line, msg, sizeof(msg)), 0);
    cr_expect_eq(cstore_count(s), 0);
    cr_expect_null(cstore_current(s));
    cstore_free(s);
}

static void note_bad(void *ctx, int line, const char *msg)
{
    char *seen = ctx;
    (void)msg;
    (void)snprintf(seen + strlen(seen), 64 - strlen(seen), "%d,", line);
}

Test(cstore, salvage_drops_bad_lines_and_keeps_the_rest)
{
    static const char text[] = "garbage\n"           /* 1 */
                               "current = b\n"       /* 2 */
                               "[a]\n"               /* 3 */
                               "server-port = 0\n"   /* 4: dropped alone */
                               "server-host = ha\n"  /* 5 */
                               "[bad name]\n"        /* 6: dropped with what follows */
                               "server-host = x\n"   /* 7 */
                               "[b]\n"               /* 8 */
                               "server-host = hb\n"; /* 9 */
    struct cstore *s = NULL;
    char seen[64] = "";

    cr_assert_eq(cstore_parse_salvage(text, &s, note_bad, seen), 0);
    cr_expect_str_eq(seen, "1,4,6,");
    cr_assert_eq(cstore_count(s), 2);
    cr_expect_str_eq(cstore_find(s, "a")->host, "ha");
    cr_expect_eq(cstore_find(s, "a")->port, 0);
    cr_expect_str_eq(cstore_find(s, "b")->host, "hb");
    cr_expect_str_eq(cstore_current(s), "b");
    cstore_free(s);
}

Test(cstore, names_listed_in_order)
{
    cr_expect(cstore_name_is_valid("prod"));
    cr_expect(cstore_name_is_valid("lab-2.eu_west"));
    cr_expect_not(cstore_name_is_valid(""));
    cr_expect_not(cstore_name_is_valid("-x"));
    cr_expect_not(cstore_name_is_valid(".x"));
    cr_expect_not(cstore_name_is_valid("a b"));
    cr_expect_not(cstore_name_is_valid("a/b"));
    cr_expect_not(cstore_name_is_valid("a]"));
    char longname[CSTORE_NAME_MAX + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    cr_expect_not(cstore_name_is_valid(longname));
    longname[CSTORE_NAME_MAX] = '\0';
    cr_expect(cstore_name_is_valid(longname));
}

Test(cstore, put_replace_remove_current)
{
    struct cstore *s = NULL;
    char names[64];

    cr_assert_eq(cstore_new(&s), 0);
    struct cstore_context b = {.name = "b", .host = "hb", .port = 1};
    struct cstore_context a = {.name = "a", .host = "ha"};
    cr_expect_eq(cstore_put(s, &b, false), 0);
    cr_expect_eq(cstore_put(s, &a, false), 0);
    cr_expect_str_eq(cstore_names(s, names, sizeof(names)), "a, b");
    cr_expect_eq(cstore_put(s, &a, false), -EEXIST);
    a.host = "ha2";
    cr_expect_eq(cstore_put(s, &a, true), 0);
    cr_expect_str_eq(cstore_find(s, "a")->host, "ha2");
    cr_expect_eq(cstore_count(s), 2);

    struct cstore_context bad = {.name = "c", .host = "two\nlines"};
    cr_expect_eq(cstore_put(s, &bad, false), -EINVAL);
    bad.host = " x";
    cr_expect_eq(cstore_put(s, &bad, false), -EINVAL);
    bad.host = "x";
    bad.port = 65536;
    cr_expect_eq(cstore_put(s, &bad, false), -EINVAL);
    bad.port = 0;
    bad.name = "no way";
    cr_expect_eq(cstore_put(s, &bad, false), -EINVAL);

    cr_expect_eq(cstore_set_current(s, "zzz"), -ENOENT);
    cr_expect_null(cstore_current(s));
    cr_expect_eq(cstore_set_current(s, "b"), 0);
    cr_expect_str_eq(cstore_current(s), "b");
    cr_expect_eq(cstore_remove(s, "a"), 0); /* not the current one */
    cr_expect_str_eq(cstore_current(s), "b");
    cr_expect_eq(cstore_remove(s, "b"), 1); /* the current one: none is current now */
    cr_expect_null(cstore_current(s));
    cr_expect_eq(cstore_remove(s, "b"), -ENOENT);
    cr_expect_str_eq(cstore_names(s, names, sizeof(names)), "");
    cstore_free(s);
}

Test(cstore, save_is_private_and_atomic_and_loads_back)
{
    struct cstore *s = NULL, *t = NULL;
    char dir[256], path[300], msg[128];
    struct stat st;
    int line;

    (void)snprintf(dir, sizeof(dir), "%s/config/runjob", tmpdir);
    cr_assert_eq(cstore_load(dir, &t, &line, msg, sizeof(msg)), 0); /* missing: empty */
    cr_expect_eq(cstore_count(t), 0);
    cstore_free(t);

    cr_assert_eq(cstore_parse(sample, &s, &line, msg, sizeof(msg)), 0);
    cr_assert_eq(cstore_save(s, dir), 0);
    cr_assert_eq(stat(dir, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0700);
    (void)snprintf(path, sizeof(path), "%s/config", tmpdir);
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0700);
    (void)snprintf(path, sizeof(path), "%s/%s", dir, CSTORE_FILE);
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0600);

    /* a second save replaces the file; no temporary file stays behind */
    cr_assert_eq(cstore_remove(s, "lab"), 0);
    cr_assert_eq(cstore_save(s, dir), 0);
    char cmd[400];
    (void)snprintf(cmd, sizeof(cmd), "test \"$(ls -A %s)\" = %s", dir, CSTORE_FILE);
    cr_expect_eq(system(cmd), 0, "files left in %s", dir);

    cr_assert_eq(cstore_load(dir, &t, &line, msg, sizeof(msg)), 0);
    cr_expect_eq(cstore_count(t), 1);
    cr_expect_str_eq(cstore_current(t), "prod");
    cr_expect_str_eq(cstore_find(t, "prod")->ca_path, "/c/root ca.pem");
    cstore_free(t);
    cstore_free(s);

    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("[x]\nserver-port = nope\n", f);
    fclose(f);
    cr_expect_eq(cstore_load(dir, &t, &line, msg, sizeof(msg)), -EBADMSG);
    cr_expect_eq(line, 2);
}

Test(cstore, dir_from_the_environment)
{
    char buf[256];

    setenv("HOME", "/home/u", 1);
    setenv("XDG_CONFIG_HOME", "/xdg", 1);
    cr_assert_eq(cstore_dir(buf, sizeof(buf)), 0);
    cr_expect_str_eq(buf, "/xdg/runjob");
    setenv("XDG_CONFIG_HOME", "relative", 1); /* ignored, as the XDG spec says */
    cr_assert_eq(cstore_dir(buf, sizeof(buf)), 0);
    cr_expect_str_eq(buf, "/home/u/.config/runjob");
    unsetenv("XDG_CONFIG_HOME");
    cr_assert_eq(cstore_dir(buf, sizeof(buf)), 0);
    cr_expect_str_eq(buf, "/home/u/.config/runjob");
    cr_expect_eq(cstore_dir(buf, 8), -ENAMETOOLONG);
    unsetenv("HOME");
    cr_expect_eq(cstore_dir(buf, sizeof(buf)), -ENOENT);
}
