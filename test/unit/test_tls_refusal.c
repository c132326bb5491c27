/* core/tls-refusal.c: the words a refused handshake is logged with, from real handshakes in
 * memory against certificates made by runjob certs; the line with the peer's address, through
 * this program's interposed SSL_do_handshake (core/tls-interpose.c) and a loopback socket; the
 * rate limit. TLS 1.2 is not here: the interposer keeps every context of this process at TLS
 * 1.3, the client's too (test/host/test_server_tls.sh refuses TLS 1.2 from outside). */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "applets/applets.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/tls-internal.h"
#include "core/tls.h"

static char dir[] = "/tmp/test_tls_refusal.XXXXXX";

static const char *in_dir(const char *sub)
{
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];

    (void)snprintf(b, sizeof(bufs[0]), "%s/%s", dir, sub);
    return b;
}

static void certs(const char *out, const char *user, const char *extra1, const char *extra2)
{
    char *argv[] = {"certs",      "-q",           "-o",           (char *)out, "--user",
                    (char *)user, (char *)extra1, (char *)extra2, NULL};
    int argc = extra2 ? 8 : extra1 ? 7 : 6;

    cr_assert_eq(applet_certs_main(argc, argv), 0, "runjob certs -o %s --user %s", out, user);
}

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    certs(in_dir("ours"), "alice", NULL, NULL);
    certs(in_dir("ours"), "old", "--clients-only", "--expired");
    certs(in_dir("other"), "eve", NULL, NULL);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void teardown(void)
{
    (void)nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A self-signed client certificate with Common Name cn, as PEM files in dir. */
static void self_signed(const char *cn, const char *cert_path, const char *key_path)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    FILE *f;

    cr_assert(key && x);
    cr_assert_eq(X509_set_version(x, 2), 1);
    cr_assert_eq(ASN1_INTEGER_set(X509_get_serialNumber(x), 7), 1);
    cr_assert_not_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
    cr_assert_not_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
    cr_assert_eq(X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                            (const unsigned char *)cn, -1, -1, 0),
                 1);
    cr_assert_eq(X509_set_issuer_name(x, X509_get_subject_name(x)), 1);
    cr_assert_eq(X509_set_pubkey(x, key), 1);
    cr_assert_gt(X509_sign(x, key, EVP_sha256()), 0);
    cr_assert_not_null(f = fopen(cert_path, "w"));
    cr_assert_eq(PEM_write_X509(f, x), 1);
    fclose(f);
    cr_assert_not_null(f = fopen(key_path, "w"));
    cr_assert_eq(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
}

struct hs {
    SSL_CTX *sctx, *cctx;
    SSL *s, *c;
};

static void hs_free(struct hs *h)
{
    SSL_free(h->s);
    SSL_free(h->c);
    SSL_CTX_free(h->sctx);
    SSL_CTX_free(h->cctx);
}

/* A handshake in memory, the client presenting cert and key (NULL: none) to a server that
 * requires a client certificate from the CA of "ours", as gRPC's does. Asserts that the server
 * refused it; h->s is the server's SSL right after its failed SSL_do_handshake. */
static void refused(struct hs *h, const char *cert, const char *key)
{
    BIO *sb, *cb;

    memset(h, 0, sizeof(*h));
    cr_assert_not_null(h->sctx = SSL_CTX_new(TLS_server_method()));
    cr_assert_eq(SSL_CTX_use_certificate_chain_file(h->sctx, in_dir("ours/server-cert.pem")), 1);
    cr_assert_eq(
        SSL_CTX_use_PrivateKey_file(h->sctx, in_dir("ours/server-key.pem"), SSL_FILETYPE_PEM), 1);
    cr_assert_eq(SSL_CTX_load_verify_locations(h->sctx, in_dir("ours/ca-clients-bundle.pem"), NULL),
                 1);
    SSL_CTX_set_verify(h->sctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    cr_assert_not_null(h->cctx = SSL_CTX_new(TLS_client_method()));
    if (cert) {
        cr_assert_eq(SSL_CTX_use_certificate_chain_file(h->cctx, cert), 1);
        cr_assert_eq(SSL_CTX_use_PrivateKey_file(h->cctx, key, SSL_FILETYPE_PEM), 1);
    }
    cr_assert_not_null(h->s = SSL_new(h->sctx));
    cr_assert_not_null(h->c = SSL_new(h->cctx));
    cr_assert_eq(BIO_new_bio_pair(&sb, 0, &cb, 0), 1);
    SSL_set_bio(h->s, sb, sb);
    SSL_set_bio(h->c, cb, cb);
    SSL_set_accept_state(h->s);
    SSL_set_connect_state(h->c);
    ERR_clear_error();
    for (int i = 0; i < 8; i++) {
        int r;

        (void)SSL_do_handshake(h->c);
        r = SSL_do_handshake(h->s);
        if (r <= 0 && SSL_get_error(h->s, r) == SSL_ERROR_SSL)
            return;
        cr_assert_neq(r, 1, "the server accepted the handshake");
    }
    cr_assert_fail("the server neither accepted nor refused the handshake");
}

static void expect_reason(const char *cert, const char *key, const char *want)
{
    struct hs h;
    char buf[320];

    refused(&h, cert, key);
    tls_refusal_reason(h.s, buf, sizeof(buf));
    cr_expect_str_eq(buf, want);
    cr_expect_neq(ERR_peek_error(), 0, "the error queue was emptied");
    hs_free(&h);
}

Test(tls, refusal_reason_no_client_certificate, .init = setup, .fini = teardown)
{
    expect_reason(NULL, NULL, "no client certificate");
}

Test(tls, refusal_reason_expired_with_cn_and_day, .init = setup, .fini = teardown)
{
    X509 *x;
    FILE *f = fopen(in_dir("ours/old-cert.pem"), "r");
    struct tm tm;
    char want[200], day[16];

    cr_assert_not_null(f);
    cr_assert_not_null(x = PEM_read_X509(f, NULL, NULL, NULL));
    fclose(f);
    cr_assert_eq(ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm), 1);
    (void)strftime(day, sizeof(day), "%Y-%m-%d", &tm);
    X509_free(x);
    (void)snprintf(want, sizeof(want), "client certificate expired (CN 'old', expired %s)", day);
    expect_reason(in_dir("ours/old-cert.pem"), in_dir("ours/old-key.pem"), want);
}

Test(tls, refusal_reason_another_ca, .init = setup, .fini = teardown)
{
    expect_reason(in_dir("other/eve-cert.pem"), in_dir("other/eve-key.pem"),
                  "certificate signed by an unknown CA (CN 'eve', issuer CN 'runjob root CA')");
}

Test(tls, refusal_reason_cn_cannot_break_the_line, .init = setup, .fini = teardown)
{
    /* A client chose it: a newline would start a forged log line. */
    self_signed("mallory'\n2026 tls: fake", in_dir("m-cert.pem"), in_dir("m-key.pem"));
    expect_reason(in_dir("m-cert.pem"), in_dir("m-key.pem"),
                  "certificate signed by an unknown CA (CN 'mallory??2026 tls: fake', issuer CN "
                  "'mallory??2026 tls: fake')");
}

/* A connected loopback pair: the server's end in *ret_fd, the client's port returned. */
static int loopback(int *ret_fd, int *ret_client)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), c;

    cr_assert(l >= 0);
    cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(l, 4), 0);
    cr_assert_eq(getsockname(l, (struct sockaddr *)&a, &al), 0);
    c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert((*ret_fd = accept(l, NULL, NULL)) >= 0);
    close(l);
    al = sizeof(a);
    cr_assert_eq(getsockname(c, (struct sockaddr *)&a, &al), 0);
    *ret_client = c;
    return ntohs(a.sin_port);
}

static int shutdowns;

static int counting_shutdown(int fd, int how)
{
    shutdowns++;
    return shutdown(fd, how);
}

/* Sends this process's log (stderr) to a temporary file; returns it, for read_log. */
static FILE *capture_log(void)
{
    FILE *f = tmpfile();

    cr_assert_not_null(f);
    cr_assert(dup2(fileno(f), STDERR_FILENO) >= 0);
    log_setup("test", LOG_INFO, LOG_FORMAT_TEXT);
    return f;
}

static char *read_log(FILE *f)
{
    static char buf[65536];
    size_t n;

    rewind(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    return buf;
}

Test(tls, refusal_is_logged_at_shutdown_with_the_peer_address, .init = setup, .fini = teardown)
{
    FILE *logf = capture_log();
    struct hs h;
    char want[128];
    int fd, client, port = loopback(&fd, &client);

    refused(&h, NULL, NULL); /* through core/tls-interpose.c's SSL_do_handshake */
    cr_expect_str_eq(read_log(logf), "", "logged before the shutdown");
    cr_assert_eq(tls_refusal_shutdown(counting_shutdown, fd, SHUT_RDWR), 0);
    cr_expect_eq(shutdowns, 1);
    (void)snprintf(want, sizeof(want),
                   "warn: tls: refused handshake from 127.0.0.1:%d: no client certificate\n", port);
    cr_expect(strstr(read_log(logf), want), "'%s' not in the log: '%s'", want, read_log(logf));
    /* Once: the next shutdown is someone else's. */
    (void)tls_refusal_shutdown(counting_shutdown, fd, SHUT_RDWR);
    cr_expect_eq(shutdowns, 2);
    cr_expect_eq(strstr(strstr(read_log(logf), "refused") + 1, "refused"), NULL, "log: '%s'",
                 read_log(logf));
    hs_free(&h);
    close(fd);
    close(client);
}

Test(tls, refusal_without_a_shutdown_is_logged_at_the_next_handshake, .init = setup,
     .fini = teardown)
{
    FILE *logf = capture_log();
    struct hs h1, h2;

    refused(&h1, NULL, NULL);
    refused(&h2, in_dir("other/eve-cert.pem"), in_dir("other/eve-key.pem"));
    cr_expect(strstr(read_log(logf), "tls: refused handshake from an unknown address: no client "
                                     "certificate\n"),
              "log: '%s'", read_log(logf));
    hs_free(&h1);
    hs_free(&h2);
}

Test(tls, refusals_past_ten_a_second_are_counted, .init = setup, .fini = teardown)
{
    FILE *logf = capture_log();
    int fd, client, lines = 0;
    unsigned long long more = 0, n;
    int64_t t0 = clock_ms(CLOCK_MONOTONIC), took;
    const char *p;

    (void)loopback(&fd, &client);
    for (int i = 0; i < 25; i++) {
        struct hs h;
        refused(&h, NULL, NULL);
        (void)tls_refusal_shutdown(counting_shutdown, fd, SHUT_RDWR);
        hs_free(&h);
    }
    took = clock_ms(CLOCK_MONOTONIC) - t0;
    tls_refusals_flush();
    for (p = read_log(logf); (p = strstr(p, "tls: ")); p++) {
        if (strncmp(p, "tls: refused handshake from 127.0.0.1:", 38) == 0)
            lines++;
        else if (sscanf(p, "tls: %llu more refused handshake(s) not logged", &n) == 1)
            more += n;
    }
    cr_expect_eq(lines + more, 25, "%d lines and %llu counted: '%s'", lines, more, read_log(logf));
    if (took < 900) { /* all in one second */
        cr_expect_eq(lines, 10);
        cr_expect_eq(more, 15);
    }
    /* Said once. */
    n = strlen(read_log(logf));
    tls_refusals_flush();
    cr_expect_eq(strlen(read_log(logf)), n);
    close(fd);
    close(client);
}
