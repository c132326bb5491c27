/* Shared by test_certs.c (what one run writes) and test_certs_cli.c (runs over an existing
 * folder, output, exit codes): the fixture, a mkdtemp folder, and the helpers that run the
 * applet and read what it wrote with OpenSSL's API. Helpers are static inline so that a file
 * using only some of them builds warning-free. */
#pragma once
#include <criterion/criterion.h>

#include <dirent.h>
#include <stdbool.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "applets/applets.h"

#define DAY   86400L
#define SLACK 600L /* seconds: backdating plus a slow test machine */

static char tmpdir[] = "/tmp/test_certs.XXXXXX";

static void setup(void)
{
    cr_assert_not_null(mkdtemp(tmpdir));
    umask(022);
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

TestSuite(certs, .init = setup, .fini = teardown);

/* tmpdir/<sub>, in a static buffer per call slot (tests use a few at a time). */
static inline const char *path_in(const char *sub)
{
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", tmpdir, sub);
    return b;
}

/* Runs `certs ARGS...` (NULL-terminated) in this process; returns its exit code. */
static inline int run(const char *first, ...)
{
    char *argv[64] = {"certs"};
    int argc = 1;
    va_list ap;

    va_start(ap, first);
    for (const char *a = first; a && argc < 63; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    return applet_certs_main(argc, argv);
}

static inline X509 *load_cert(const char *dir, const char *name)
{
    char p[600];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f, "open %s", p);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    cr_assert_not_null(x, "no certificate in %s", p);
    return x;
}

static inline EVP_PKEY *load_key(const char *dir, const char *name)
{
    char p[600];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f, "open %s", p);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    cr_assert_not_null(k, "no key in %s", p);
    return k;
}

static inline mode_t mode_of(const char *dir, const char *name)
{
    char p[600];
    struct stat st;
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    cr_assert_eq(lstat(p, &st), 0, "%s missing", p);
    cr_assert(S_ISREG(st.st_mode), "%s is not a regular file", p);
    return st.st_mode & 07777;
}

static inline bool exists(const char *dir, const char *name)
{
    char p[600];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* X509_verify_cert of leaf against ca for purpose; returns the X509_V_* result. */
static inline int verify(X509 *ca, X509 *leaf, int purpose)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int err;

    cr_assert(X509_STORE_add_cert(store, ca));
    cr_assert(X509_STORE_CTX_init(ctx, store, leaf, NULL));
    cr_assert(X509_STORE_CTX_set_purpose(ctx, purpose));
    X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_CHECK_SS_SIGNATURE | X509_V_FLAG_X509_STRICT);
    err = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return err;
}

static inline void assert_same_file(const char *dir, const char *a, const char *b, bool same)
{
    X509 *x = load_cert(dir, a), *y = load_cert(dir, b);
    cr_assert_eq(X509_cmp(x, y) == 0, same, "%s and %s: expected %s", a, b,
                 same ? "the same certificate" : "different certificates");
    X509_free(x);
    X509_free(y);
}

static inline char *cn_of(X509 *x)
{
    static char buf[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, sizeof(buf)) < 0)
        return NULL;
    return buf;
}

static inline long seconds_left(X509 *x)
{
    int days, secs;
    cr_assert(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)));
    return days * DAY + secs;
}

static const char *const all_files[] = {
    "root-ca-cert.pem",      "root-ca-key.pem", "ca-clients-bundle.pem", "server-cert.pem",
    "server-key.pem",        "client-cert.pem", "client-key.pem",        "alice-cert.pem",
    "alice-key.pem",         "bob-cert.pem",    "bob-key.pem",           "administrator-cert.pem",
    "administrator-key.pem",
};
