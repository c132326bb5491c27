/* core/tls: TLS 1.3-only enforcement in a dynamic link (the interposer in core/tls-interpose.c
 * plus the config loaded by tls_init), and the PEM helpers. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "core/tls.h"

Test(tls, init_leaves_only_tls13)
{
    struct tls_probe_result p;

    cr_assert_eq(tls_init(), 0);
    cr_assert_eq(tls_probe(&p), 0);
    cr_expect(p.config_no_tls12, "config did not set SSL_OP_NO_TLSv1_2");
    cr_expect(p.min_is_tls13, "a new SSL_CTX does not start at TLS 1.3 (interposer)");
    cr_expect(p.lowering_refused, "SSL_CTX_set_min_proto_version(TLS1_2) was obeyed");
    cr_expect(p.ssl_lowering_refused, "SSL_set_min_proto_version(TLS1_2) was obeyed");
    cr_expect(tls_probe_ok(&p));
}

Test(tls, interposer_works_without_config)
{
    /* Without tls_init the config layer is absent, but the interposer alone holds. */
    struct tls_probe_result p;

    cr_assert_eq(tls_probe(&p), 0);
    cr_expect(p.min_is_tls13);
    cr_expect(p.lowering_refused);
}

Test(tls, openssl_conf_env_cannot_weaken)
{
    struct tls_probe_result p;
    char path[] = "/tmp/test_tls_conf.XXXXXX";
    int fd = mkstemp(path);
    const char *weak = "openssl_conf = c\n[c]\nssl_conf = s\n[s]\nsystem_default = t\n"
                       "[t]\nProtocol = ALL\nMinProtocol = TLSv1\n";

    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, weak, strlen(weak)), (ssize_t)strlen(weak));
    close(fd);
    setenv("OPENSSL_CONF", path, 1);
    cr_assert_eq(tls_init(), 0);
    cr_assert_eq(tls_probe(&p), 0);
    cr_expect(tls_probe_ok(&p));
    unlink(path);
}

static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/test_tls_pem.XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

Test(tls, read_pem_errors)
{
    char *pem = NULL;
    char *p = write_tmp("not a pem file\n");

    cr_expect_eq(tls_read_pem("/nonexistent/x.pem", &pem), -ENOENT);
    cr_expect_eq(tls_read_pem(p, &pem), -EBADMSG);
    cr_expect_eq(tls_read_pem("/tmp", &pem), -EISDIR);
    cr_expect_null(pem);
    unlink(p);
    free(p);
}

Test(tls, bundle_and_key_pair)
{
    /* A throwaway self-signed P-256 pair made by the openssl tool, if present. */
    char dir[] = "/tmp/test_tls_kp.XXXXXX";
    char cmd[2048], cert[128], key[128], key2[128];
    char *cp = NULL, *kp = NULL, *kp2 = NULL;

    if (system("command -v openssl >/dev/null 2>&1") != 0)
        cr_skip_test("the openssl command is not installed");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cert, sizeof(cert), "%s/c.pem", dir);
    snprintf(key, sizeof(key), "%s/k.pem", dir);
    snprintf(key2, sizeof(key2), "%s/k2.pem", dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=t "
             "-days 1 -keyout %s -out %s >/dev/null 2>&1 && "
             "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s 2>/dev/null",
             key, cert, key2);
    cr_assert_eq(system(cmd), 0, "the openssl command failed: %s", cmd);
    cr_assert_eq(tls_read_pem(cert, &cp), 0);
    cr_assert_eq(tls_read_pem(key, &kp), 0);
    cr_assert_eq(tls_read_pem(key2, &kp2), 0);
    cr_expect_eq(tls_count_certs(cp), 1);
    cr_expect_eq(tls_count_certs(kp), -EBADMSG);
    cr_expect_eq(tls_check_key_pair(cp, kp), 0);
    cr_expect_eq(tls_check_key_pair(cp, kp2), -EKEYREJECTED);
    cr_expect_eq(tls_check_key_pair(kp, kp), -EBADMSG);
    free(cp);
    free(kp);
    free(kp2);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    (void)!system(cmd);
}

/* The CNs in a certificate's subject by the full parse, for comparison. */
static int reference_cn_count(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    int n = 0, i = -1;

    cr_assert_not_null(x);
    while ((i = X509_NAME_get_index_by_NID(X509_get_subject_name(x), NID_commonName, i)) >= 0)
        n++;
    X509_free(x);
    BIO_free(b);
    return n;
}

/* The CNs of a certificate's subject, as many as there are: the server refuses more than one.
 * Self-signed v3 certificates (a [0] version field) and CA-signed v1 ones (none), both as the
 * full parse counts them. */
Test(tls, subject_cns_are_counted)
{
    static const struct {
        const char *subj, *flags;
        int want;
    } cases[] = {
        {"/CN=alice", "", 1},
        {"/CN=alice/CN=administrator", "", 2},
        {"/CN=administrator/O=x/CN=alice", "", 2},
        {"/CN=alice+CN=administrator", "-multivalue-rdn", 2},
        {"/O=nocn", "", 0},
    };
    char dir[] = "/tmp/test_tls_cn.XXXXXX";
    char cmd[1024], path[128];

    if (system("command -v openssl >/dev/null 2>&1") != 0)
        cr_skip_test("the openssl command is not installed");
    cr_assert_not_null(mkdtemp(dir));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        for (int v1 = 0; v1 < 2; v1++) {
            char *pem = NULL;
            if (!v1)
                snprintf(cmd, sizeof(cmd),
                         "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes %s "
                         "-subj '%s' -days 1 -keyout %s/k.pem -out %s/c.pem >/dev/null 2>&1",
                         cases[i].flags, cases[i].subj, dir, dir);
            else
                snprintf(cmd, sizeof(cmd),
                         "cd %s && openssl req -new -key k.pem %s -subj '%s' -out r.csr "
                         ">/dev/null 2>&1 && openssl x509 -req -in r.csr -signkey k.pem -days 1 "
                         "-out c.pem >/dev/null 2>&1",
                         dir, cases[i].flags, cases[i].subj);
            cr_assert_eq(system(cmd), 0, "the openssl command failed: %s", cmd);
            snprintf(path, sizeof(path), "%s/c.pem", dir);
            cr_assert_eq(tls_read_pem(path, &pem), 0);
            cr_expect_eq(tls_subject_cn_count(pem, strlen(pem)), cases[i].want, "%s (v%d)",
                         cases[i].subj, v1 ? 1 : 3);
            cr_expect_eq(reference_cn_count(pem), cases[i].want, "%s (v%d), full parse",
                         cases[i].subj, v1 ? 1 : 3);
            free(pem);
        }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    (void)!system(cmd);
}

/* What is not a certificate is refused, never counted: no PEM, another PEM type, DER that is
 * not a certificate, a certificate cut short. */
Test(tls, subject_cn_count_refuses_what_is_not_a_certificate)
{
    static const char *const bad[] = {
        "no pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        /* SEQUENCE { INTEGER 1 } */
        "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n",
        /* SEQUENCE { SEQUENCE { INTEGER 1 } }: a tbsCertificate that ends at its serial */
        "-----BEGIN CERTIFICATE-----\nMAUwAwIBAQ==\n-----END CERTIFICATE-----\n",
        /* a length past the end */
        "-----BEGIN CERTIFICATE-----\nMBAwAwIBAQ==\n-----END CERTIFICATE-----\n",
        /* an indefinite length: BER, not DER */
        "-----BEGIN CERTIFICATE-----\nMIAwAwIBAQAA\n-----END CERTIFICATE-----\n",
        "-----BEGIN PRIVATE KEY-----\nMAMCAQE=\n-----END PRIVATE KEY-----\n",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(tls_subject_cn_count(bad[i], strlen(bad[i])), -EBADMSG, "case %zu", i);
    cr_expect_eq(tls_subject_cn_count("", 0), -EBADMSG);
}

/* ---- exit with a thread still on its way out ------------------------------------------------
 * gRPC's EventEngine threads are detached: one that ran a TLS handshake step may still be
 * exiting when the process exits. If OpenSSL's exit-time cleanup ran first, it deleted OpenSSL's
 * thread-local keys, so that thread's error queue and private DRBG were never freed
 * (LeakSanitizer: 944 bytes in 2 objects + 6.6 KiB indirect, from CRYPTO_zalloc).
 * tls_process_init() turns that cleanup off. The child below registers its exit handler before
 * OpenSSL registers its own, so it runs after OpenSSL's would: it lets the thread finish, then
 * has LeakSanitizer check at once (its own at-exit check may come earlier than this handler).
 * Only the sanitizer builds can see the leak; elsewhere this runs as a smoke test. */
void __lsan_do_leak_check(void) __attribute__((weak));

static int late_go[2] = {-1, -1}, late_ready[2] = {-1, -1};
static pthread_t late_thread;

static void *late_thread_main(void *arg)
{
    unsigned char b[16];
    char c;

    (void)arg;
    /* What a handshake step leaves on a thread: its private DRBG and an error queue entry. */
    (void)RAND_priv_bytes(b, sizeof(b));
    ERR_raise_data(ERR_LIB_SYS, ECONNRESET, "calling read()");
    (void)!write(late_ready[1], "x", 1);
    (void)!read(late_go[0], &c, 1);
    return NULL;
}

static void late_at_exit(void)
{
    (void)!write(late_go[1], "x", 1);
    (void)pthread_join(late_thread, NULL);
    if (__lsan_do_leak_check)
        __lsan_do_leak_check(); /* exits 23 on a leak */
}

/* The child: this binary run again with TEST_TLS_LATE_CHILD set (a fresh process, not a fork
 * of a Criterion worker: a forked ASan child that exits normally warns about its parent's
 * threads). */
__attribute__((constructor)) static void late_child(void)
{
    if (!getenv("TEST_TLS_LATE_CHILD"))
        return;
    char c;

    if (pipe(late_go) < 0 || pipe(late_ready) < 0 || atexit(late_at_exit) != 0 ||
        tls_process_init() < 0 || pthread_create(&late_thread, NULL, late_thread_main, NULL) != 0 ||
        read(late_ready[0], &c, 1) != 1)
        _exit(2);
    exit(0); /* the thread is still running */
}

Test(tls, process_init_keeps_openssl_for_threads_still_exiting)
{
    int st = 0;
    pid_t pid = fork();

    cr_assert_geq(pid, 0);
    if (pid == 0) {
        (void)setenv("TEST_TLS_LATE_CHILD", "1", 1);
        execl("/proc/self/exe", "test_tls", (char *)NULL);
        _exit(127);
    }
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    /* LeakSanitizer's exit status is 23. */
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child ended with wait status 0x%x", st);
}

/* A self-signed P-256 certificate valid from not_before to not_after (epoch seconds), as PEM. */
static char *cert_with_dates(time_t not_before, time_t not_after)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *pem;
    long n;

    cr_assert(key && x && b);
    cr_assert_eq(X509_set_version(x, 2), 1);
    cr_assert_eq(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
    cr_assert_not_null(ASN1_TIME_set(X509_getm_notBefore(x), not_before));
    cr_assert_not_null(ASN1_TIME_set(X509_getm_notAfter(x), not_after));
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"dates", -1, -1, 0);
    cr_assert_eq(X509_set_issuer_name(x, X509_get_subject_name(x)), 1);
    cr_assert_eq(X509_set_pubkey(x, key), 1);
    cr_assert_gt(X509_sign(x, key, EVP_sha256()), 0);
    cr_assert_eq(PEM_write_bio_X509(b, x), 1);
    n = BIO_get_mem_data(b, &data);
    pem = strndup(data, (size_t)n);
    BIO_free(b);
    X509_free(x);
    EVP_PKEY_free(key);
    return pem;
}

Test(tls, cert_dates_read_back)
{
    /* UTCTime before 2050, GeneralizedTime from 2050 on: both forms. */
    static const time_t cases[][2] = {
        {1790000000, 1795000000},
        {0, 86400},
        {2524608000, 2556144000},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *pem = cert_with_dates(cases[i][0], cases[i][1]);
        int64_t nb = -1, na = -1;
        cr_assert_eq(tls_cert_dates(pem, &nb, &na), 0, "case %zu", i);
        cr_expect_eq(nb, (int64_t)cases[i][0], "case %zu", i);
        cr_expect_eq(na, (int64_t)cases[i][1], "case %zu", i);
        free(pem);
    }
    int64_t nb, na;
    cr_expect_eq(tls_cert_dates("not a certificate", &nb, &na), -EBADMSG);
    cr_expect_eq(
        tls_cert_dates("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", &nb, &na),
        -EBADMSG);
}
