/* A small stand-in for Criterion, used only by the TSan variant (make tsan).
 *
 * Why: Criterion 2.4.1 (Debian 12) aborts at start-up under ThreadSanitizer ("Could not
 * initialize inheritable arena", Snaipe/Criterion#274): its BoxFort arena cannot be mapped
 * where TSan reserves its shadow memory. The TSan build compiles the same test files against
 * this header instead, so every unit and host test still runs under TSan.
 *
 * Supported: Test(suite, name, .init/.fini/.timeout/.disabled), TestSuite(suite, ...),
 * cr_assert*, cr_expect*, cr_skip_test, cr_log_*. Each test runs in a forked child, like
 * Criterion. Output: TAP lines ("ok - suite::name", "not ok - ...", "# SKIP") to the file given
 * by --tap=FILE (or stdout), which test/run.sh counts. CRSHIM_EXCLUDE="suite::name ..." skips
 * the tests named there (test/run.sh lists them, each with its reason). */
#pragma once
/* Criterion compares through typed helpers; our plain == meets enum-vs-int in tests. */
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct criterion_test_extra_data {
    void (*init)(void);
    void (*fini)(void);
    double timeout;
    bool disabled;
    const char *description;
};

struct crshim_test {
    const char *suite;
    const char *name;
    void (*fn)(void);
    struct criterion_test_extra_data extra;
};

struct crshim_suite {
    const char *name;
    struct criterion_test_extra_data extra;
};

#define CRSHIM_MAX 512
__attribute__((weak)) struct crshim_test crshim_tests[CRSHIM_MAX];
__attribute__((weak)) int crshim_n;
__attribute__((weak)) struct crshim_suite crshim_suites[32];
__attribute__((weak)) int crshim_n_suites;
__attribute__((weak)) int crshim_failed_expect;

#define CRSHIM_SKIP_CODE 77

#define cr_log_info(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr))
#define cr_log_warn cr_log_info
#define cr_log_error cr_log_info

__attribute__((format(printf, 1, 2))) static inline void crshim_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* The optional message arguments are always evaluated for their format check (so a variable
 * used only in a message is used here too), and printed on failure. */
#define crshim_check_(fatal, cond, expr, ...)                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s:", __FILE__, __LINE__, expr);             \
            crshim_printf(__VA_ARGS__);                                                            \
            if (fatal)                                                                             \
                _exit(1);                                                                          \
            crshim_failed_expect = 1;                                                              \
        }                                                                                          \
    } while (0)

#define cr_assert(e, ...) crshim_check_(1, (e), #e, " " __VA_ARGS__)
#define cr_expect(e, ...) crshim_check_(0, (e), #e, " " __VA_ARGS__)
#define cr_assert_not(e, ...) crshim_check_(1, !(e), "!(" #e ")", " " __VA_ARGS__)
#define cr_expect_not(e, ...) crshim_check_(0, !(e), "!(" #e ")", " " __VA_ARGS__)
#define cr_assert_fail(...) crshim_check_(1, 0, "cr_assert_fail", " " __VA_ARGS__)
#define cr_expect_fail(...) crshim_check_(0, 0, "cr_expect_fail", " " __VA_ARGS__)
#define CRSHIM_CMP_(f, a, op, b, ...) crshim_check_(f, (a)op(b), #a " " #op " " #b, " " __VA_ARGS__)
#define cr_assert_eq(a, b, ...) CRSHIM_CMP_(1, a, ==, b, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) CRSHIM_CMP_(0, a, ==, b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) CRSHIM_CMP_(1, a, !=, b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...) CRSHIM_CMP_(0, a, !=, b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) CRSHIM_CMP_(1, a, <, b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...) CRSHIM_CMP_(0, a, <, b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) CRSHIM_CMP_(1, a, <=, b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...) CRSHIM_CMP_(0, a, <=, b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) CRSHIM_CMP_(1, a, >, b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...) CRSHIM_CMP_(0, a, >, b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) CRSHIM_CMP_(1, a, >=, b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...) CRSHIM_CMP_(0, a, >=, b, __VA_ARGS__)
#define cr_assert_null(a, ...) crshim_check_(1, (a) == NULL, #a " == NULL", " " __VA_ARGS__)
#define cr_expect_null(a, ...) crshim_check_(0, (a) == NULL, #a " == NULL", " " __VA_ARGS__)
#define cr_assert_not_null(a, ...) crshim_check_(1, (a) != NULL, #a " != NULL", " " __VA_ARGS__)
#define cr_expect_not_null(a, ...) crshim_check_(0, (a) != NULL, #a " != NULL", " " __VA_ARGS__)
#define CRSHIM_STR_(f, a, op, b, ...)                                                              \
    crshim_check_(f, strcmp((a), (b)) op 0, #a " " #op " " #b, " " __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) CRSHIM_STR_(1, a, ==, b, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) CRSHIM_STR_(0, a, ==, b, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) CRSHIM_STR_(1, a, !=, b, __VA_ARGS__)
#define cr_expect_str_neq(a, b, ...) CRSHIM_STR_(0, a, !=, b, __VA_ARGS__)
#define cr_assert_str_empty(a, ...) crshim_check_(1, (a)[0] == '\0', #a " empty", " " __VA_ARGS__)
#define cr_expect_str_empty(a, ...) crshim_check_(0, (a)[0] == '\0', #a " empty", " " __VA_ARGS__)
#define cr_assert_str_not_empty(a, ...)                                                            \
    crshim_check_(1, (a)[0] != '\0', #a " not empty", " " __VA_ARGS__)
#define cr_expect_str_not_empty(a, ...)                                                            \
    crshim_check_(0, (a)[0] != '\0', #a " not empty", " " __VA_ARGS__)

/* The reason goes to stderr and, through crshim_skip_fd, to the runner, whose TAP line carries
 * it as Criterion's does ("ok - suite::name # SKIP reason"). */
__attribute__((weak)) int crshim_skip_fd = -1;

__attribute__((format(printf, 1, 2), noreturn)) static inline void crshim_skip_(const char *fmt,
                                                                                ...)
{
    char why[512];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    why[strcspn(why, "\n")] = '\0'; /* one TAP line */
    fprintf(stderr, "skipped: %s\n", why);
    if (crshim_skip_fd >= 0)
        (void)!write(crshim_skip_fd, why, strlen(why));
    _exit(CRSHIM_SKIP_CODE);
}

#define cr_skip_test(...) crshim_skip_(__VA_ARGS__)

#define TestSuite(s, ...)                                                                          \
    __attribute__((constructor)) static void crshim_suite_##s(void)                                \
    {                                                                                              \
        struct criterion_test_extra_data e = {__VA_ARGS__};                                        \
        crshim_suites[crshim_n_suites++] = (struct crshim_suite){#s, e};                           \
    }

#define Test(s, n, ...)                                                                            \
    static void s##_##n(void);                                                                     \
    __attribute__((constructor)) static void crshim_reg_##s##_##n(void)                            \
    {                                                                                              \
        struct criterion_test_extra_data e = {__VA_ARGS__};                                        \
        crshim_tests[crshim_n++] = (struct crshim_test){#s, #n, s##_##n, e};                       \
    }                                                                                              \
    static void s##_##n(void)

static inline bool crshim_excluded(const struct crshim_test *t)
{
    const char *list = getenv("CRSHIM_EXCLUDE");
    char name[256];
    size_t n;

    (void)snprintf(name, sizeof(name), "%s::%s", t->suite, t->name);
    n = strlen(name);
    for (const char *p = list ? strstr(list, name) : NULL; p; p = strstr(p + 1, name))
        if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
            return true;
    return false;
}

/* 0 passed, 1 failed, 2 skipped (the reason in why, "" if none came). */
static inline int crshim_run_one(const struct crshim_test *t, char *why, size_t len)
{
    struct criterion_test_extra_data e = t->extra;
    unsigned timeout;
    int skip[2] = {-1, -1};
    ssize_t n;
    pid_t pid;
    int st;

    for (int i = 0; i < crshim_n_suites; i++)
        if (strcmp(crshim_suites[i].name, t->suite) == 0) {
            if (!e.init)
                e.init = crshim_suites[i].extra.init;
            if (!e.fini)
                e.fini = crshim_suites[i].extra.fini;
            if (e.timeout <= 0)
                e.timeout = crshim_suites[i].extra.timeout;
        }
    timeout = e.timeout > 0 ? (unsigned)(e.timeout * 3) + 1 : 0; /* TSan is ~5-15x slower */
    fflush(NULL);
    why[0] = '\0';
    if (pipe2(skip, O_CLOEXEC | O_NONBLOCK) < 0)
        skip[0] = skip[1] = -1;
    pid = fork();
    if (pid == 0) {
        crshim_skip_fd = skip[1];
        if (timeout)
            alarm(timeout);
        if (e.init)
            e.init();
        t->fn();
        if (e.fini)
            e.fini();
        _exit(crshim_failed_expect ? 1 : 0);
    }
    if (skip[1] >= 0)
        close(skip[1]);
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        st = -1;
    if (skip[0] >= 0) {
        n = read(skip[0], why, len - 1);
        why[n > 0 ? n : 0] = '\0';
        close(skip[0]);
    }
    if (st == -1)
        return 1;
    if (WIFEXITED(st) && WEXITSTATUS(st) == CRSHIM_SKIP_CODE)
        return 2;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    FILE *tap = stdout;
    int failed = 0;

    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--tap=", 6) == 0) {
            tap = fopen(argv[i] + 6, "w");
            if (!tap)
                return 2;
        }
    fprintf(tap, "TAP version 13\n1..%d\n# criterion stand-in (TSan build)\n", crshim_n);
    for (int i = 0; i < crshim_n; i++) {
        const struct crshim_test *t = &crshim_tests[i];
        bool excluded = crshim_excluded(t);
        char why[512] = "";
        int r = t->extra.disabled || excluded ? 2 : crshim_run_one(t, why, sizeof(why));
        if (r == 2)
            fprintf(tap, "ok - %s::%s # SKIP %s\n", t->suite, t->name,
                    excluded ? "excluded under TSan (test/run.sh says why)" : why);
        else
            fprintf(tap, "%s - %s::%s\n", r ? "not ok" : "ok", t->suite, t->name);
        fflush(tap);
        failed += r == 1;
    }
    fprintf(stderr, "%d tests, %d failed\n", crshim_n, failed);
    return failed != 0;
}
