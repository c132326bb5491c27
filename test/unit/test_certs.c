/* runjob certs: runs the applet in a mkdtemp folder and checks what it wrote with OpenSSL's API
 * (and once with the openssl command line as an outside opinion). */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

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
static const char *path_in(const char *sub)
{
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", tmpdir, sub);
    return b;
}

/* Runs `certs ARGS...` (NULL-terminated) in this process; returns its exit code. */
static int run(const char *first, ...)
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

static X509 *load_cert(const char *dir, const char *name)
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

static EVP_PKEY *load_key(const char *dir, const char *name)
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

static mode_t mode_of(const char *dir, const char *name)
{
    char p[600];
    struct stat st;
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    cr_assert_eq(lstat(p, &st), 0, "%s missing", p);
    cr_assert(S_ISREG(st.st_mode), "%s is not a regular file", p);
    return st.st_mode & 07777;
}

static bool exists(const char *dir, const char *name)
{
    char p[600];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* X509_verify_cert of leaf against ca for purpose; returns the X509_V_* result. */
static int verify(X509 *ca, X509 *leaf, int purpose)
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

static void assert_same_file(const char *dir, const char *a, const char *b, bool same)
{
    X509 *x = load_cert(dir, a), *y = load_cert(dir, b);
    cr_assert_eq(X509_cmp(x, y) == 0, same, "%s and %s: expected %s", a, b,
                 same ? "the same certificate" : "different certificates");
    X509_free(x);
    X509_free(y);
}

static char *cn_of(X509 *x)
{
    static char buf[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, sizeof(buf)) < 0)
        return NULL;
    return buf;
}

static long seconds_left(X509 *x)
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

Test(certs, writes_every_file_with_the_right_mode)
{
    const char *out = path_in("out");
    struct stat st;

    cr_assert_eq(run("-q", "-o", out, NULL), 0);
    cr_assert_eq(stat(out, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0755);
    for (size_t i = 0; i < sizeof(all_files) / sizeof(all_files[0]); i++) {
        mode_t want = strstr(all_files[i], "-key.pem") ? 0600 : 0644;
        cr_expect_eq(mode_of(out, all_files[i]), want, "%s: mode %o", all_files[i],
                     mode_of(out, all_files[i]));
    }
}

Test(certs, keys_are_0600_even_with_umask_0_and_no_temp_files_are_left)
{
    const char *out = path_in("out");
    DIR *d;
    struct dirent *e;
    int n = 0;

    umask(0);
    cr_assert_eq(run("-q", "-o", out, NULL), 0);
    cr_expect_eq(mode_of(out, "root-ca-key.pem"), 0600);
    cr_expect_eq(mode_of(out, "alice-key.pem"), 0600);
    cr_expect_eq(mode_of(out, "server-cert.pem"), 0644);
    d = opendir(out);
    cr_assert_not_null(d);
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            cr_expect_neq(e->d_name[0], '.', "left behind: %s", e->d_name);
            n++;
        }
    closedir(d);
    cr_expect_eq(n, (int)(sizeof(all_files) / sizeof(all_files[0])));
}

Test(certs, keys_are_p384_and_match_their_certificates)
{
    const char *out = path_in("out");
    const char *stems[] = {"root-ca", "server", "client", "alice", "bob", "administrator"};

    cr_assert_eq(run("-q", "-o", out, NULL), 0);
    for (size_t i = 0; i < sizeof(stems) / sizeof(stems[0]); i++) {
        char kn[64], cn[64], group[64];
        size_t len;
        snprintf(kn, sizeof(kn), "%s-key.pem", stems[i]);
        snprintf(cn, sizeof(cn), "%s-cert.pem", stems[i]);
        EVP_PKEY *k = load_key(out, kn);
        X509 *x = load_cert(out, cn);
        cr_assert(EVP_PKEY_get_group_name(k, group, sizeof(group), &len));
        cr_expect_str_eq(group, "secp384r1", "%s", kn);
        cr_expect_eq(X509_check_private_key(x, k), 1, "%s does not match %s", kn, cn);
        cr_expect_eq(X509_get_signature_nid(x), NID_ecdsa_with_SHA384, "%s", cn);
        EVP_PKEY_free(k);
        X509_free(x);
    }
}

Test(certs, chain_verifies_for_the_right_purpose)
{
    const char *out = path_in("out");

    cr_assert_eq(run("-q", "-o", out, NULL), 0);
    X509 *ca = load_cert(out, "root-ca-cert.pem");
    X509 *bundle = load_cert(out, "ca-clients-bundle.pem");
    X509 *server = load_cert(out, "server-cert.pem");
    cr_expect_eq(X509_cmp(ca, bundle), 0, "the bundle holds the root CA");
    cr_expect_eq(verify(ca, server, X509_PURPOSE_SSL_SERVER), X509_V_OK);
    cr_expect_neq(verify(ca, server, X509_PURPOSE_SSL_CLIENT), X509_V_OK, "server is not a client");
    const char *users[] = {"alice-cert.pem", "bob-cert.pem", "administrator-cert.pem",
                           "client-cert.pem"};
    for (size_t i = 0; i < 4; i++) {
        X509 *c = load_cert(out, users[i]);
        cr_expect_eq(verify(bundle, c, X509_PURPOSE_SSL_CLIENT), X509_V_OK, "%s", users[i]);
        cr_expect_neq(verify(bundle, c, X509_PURPOSE_SSL_SERVER), X509_V_OK, "%s", users[i]);
        X509_free(c);
    }
    X509_free(ca);
    X509_free(bundle);
    X509_free(server);
}

Test(certs, ca_extensions_serials_and_key_ids)
{
    const char *out = path_in("out");

    cr_assert_eq(run("-q", "-o", out, NULL), 0);
    X509 *ca = load_cert(out, "root-ca-cert.pem");
    X509 *srv = load_cert(out, "server-cert.pem");
    X509 *alice = load_cert(out, "alice-cert.pem");

    cr_expect_gt(X509_check_ca(ca), 0);
    cr_expect_eq(X509_get_key_usage(ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    X509_EXTENSION *bc = X509_get_ext(ca, X509_get_ext_by_NID(ca, NID_basic_constraints, -1));
    cr_assert_not_null(bc);
    cr_expect(X509_EXTENSION_get_critical(bc), "basicConstraints is critical");
    cr_expect_eq(X509_check_ca(srv), 0);
    cr_expect_eq(X509_check_ca(alice), 0);
    bc = X509_get_ext(alice, X509_get_ext_by_NID(alice, NID_basic_constraints, -1));
    cr_assert_not_null(bc, "leaves say CA:FALSE explicitly");
    cr_expect(X509_EXTENSION_get_critical(bc));
    cr_expect_eq(X509_get_key_usage(srv), KU_DIGITAL_SIGNATURE);
    cr_expect_eq(X509_get_key_usage(alice), KU_DIGITAL_SIGNATURE);

    /* Serials: random, about 128 bits, all different. */
    X509 *xs[] = {ca, srv, alice};
    BIGNUM *bn[3];
    for (int i = 0; i < 3; i++) {
        bn[i] = ASN1_INTEGER_to_BN(X509_get0_serialNumber(xs[i]), NULL);
        cr_assert_not_null(bn[i]);
        cr_expect_geq(BN_num_bits(bn[i]), 120);
        cr_expect_leq(BN_num_bits(bn[i]), 128);
        cr_expect(!BN_is_negative(bn[i]));
    }
    cr_expect_neq(BN_cmp(bn[0], bn[1]), 0);
    cr_expect_neq(BN_cmp(bn[1], bn[2]), 0);
    for (int i = 0; i < 3; i++)
        BN_free(bn[i]);

    /* Key identifiers: each leaf's AKI is the CA's SKI. */
    const ASN1_OCTET_STRING *ca_ski = X509_get0_subject_key_id(ca);
    cr_assert_not_null(ca_ski);
    cr_assert_not_null(X509_get0_subject_key_id(srv));
    cr_assert_not_null(X509_get0_subject_key_id(alice));
    cr_assert_not_null(X509_get0_authority_key_id(srv));
    cr_expect_eq(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(srv), ca_ski), 0);
    cr_expect_eq(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(alice), ca_ski), 0);
    X509_free(ca);
    X509_free(srv);
    X509_free(alice);
}

Test(certs, server_has_default_and_extra_sans_and_server_eku)
{
    const char *out = path_in("out");

    cr_assert_eq(run("-q", "-o", out, "--host", "build1.example.com", "--host", "10.0.0.7",
                     "--host", "fd00::7", "--host", "localhost", NULL),
                 0);
    X509 *x = load_cert(out, "server-cert.pem");
    cr_expect_eq(X509_check_host(x, "localhost", 0, 0, NULL), 1);
    cr_expect_eq(X509_check_host(x, "build1.example.com", 0, 0, NULL), 1);
    cr_expect_eq(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
    cr_expect_eq(X509_check_ip_asc(x, "::1", 0), 1);
    cr_expect_eq(X509_check_ip_asc(x, "10.0.0.7", 0), 1);
    cr_expect_eq(X509_check_ip_asc(x, "fd00::7", 0), 1);
    cr_expect_neq(X509_check_host(x, "10.0.0.7", 0, 0, NULL), 1, "an IP is not a DNS SAN");
    cr_expect_neq(X509_check_host(x, "example.com", 0, 0, NULL), 1);
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    cr_assert_not_null(gens);
    cr_expect_eq(sk_GENERAL_NAME_num(gens), 6, "localhost given twice is listed once");
    GENERAL_NAMES_free(gens);
    cr_expect_eq(X509_get_extended_key_usage(x), XKU_SSL_SERVER);
    X509_free(x);
}

Test(certs, clients_have_cn_client_eku_and_30_days)
{
    const char *out = path_in("out");

    cr_assert_eq(run("-q", "-o", out, NULL), 0);
    const char *users[] = {"alice", "bob", "administrator"};
    for (int i = 0; i < 3; i++) {
        char n[64];
        snprintf(n, sizeof(n), "%s-cert.pem", users[i]);
        X509 *x = load_cert(out, n);
        cr_assert_not_null(cn_of(x));
        cr_expect_str_eq(cn_of(x), users[i]);
        cr_expect_eq(X509_get_extended_key_usage(x), XKU_SSL_CLIENT);
        long left = seconds_left(x);
        cr_expect(left > 30 * DAY - SLACK && left <= 30 * DAY, "%s: %ld s left", n, left);
        X509_free(x);
    }
    X509 *c = load_cert(out, "client-cert.pem");
    cr_expect_str_eq(cn_of(c), "alice", "client-cert.pem is the first user's");
    X509_free(c);
    assert_same_file(out, "client-cert.pem", "alice-cert.pem", true);
    X509 *ca = load_cert(out, "root-ca-cert.pem");
    long ca_left = seconds_left(ca);
    cr_expect(ca_left > 3650 * DAY - SLACK && ca_left <= 3650 * DAY, "CA: %ld s left", ca_left);
    X509_free(ca);
}

Test(certs, days_flags_set_validity_and_users_flag_replaces_defaults)
{
    const char *out = path_in("out");

    cr_assert_eq(run("-q", "-o", out, "--user", "carol", "--user", "dave", "--days", "7",
                     "--server-days", "90", "--ca-days", "400", NULL),
                 0);
    cr_expect(!exists(out, "alice-cert.pem"));
    X509 *carol = load_cert(out, "carol-cert.pem"), *srv = load_cert(out, "server-cert.pem");
    X509 *ca = load_cert(out, "root-ca-cert.pem");
    cr_expect(seconds_left(carol) > 7 * DAY - SLACK && seconds_left(carol) <= 7 * DAY);
    cr_expect(seconds_left(srv) > 90 * DAY - SLACK && seconds_left(srv) <= 90 * DAY);
    cr_expect(seconds_left(ca) > 400 * DAY - SLACK && seconds_left(ca) <= 400 * DAY);
    X509_free(carol);
    X509_free(srv);
    X509_free(ca);
    assert_same_file(out, "client-cert.pem", "carol-cert.pem", true);
    cr_expect(exists(out, "dave-key.pem"));
}

Test(certs, no_certificate_outlives_its_ca)
{
    const char *out = path_in("out");

    cr_assert_eq(run("-q", "-o", out, "--ca-days", "10", "--days", "30", NULL), 0);
    X509 *ca = load_cert(out, "root-ca-cert.pem"), *a = load_cert(out, "alice-cert.pem");
    X509 *s = load_cert(out, "server-cert.pem");
    cr_expect_leq(ASN1_TIME_compare(X509_get0_notAfter(a), X509_get0_notAfter(ca)), 0);
    cr_expect_leq(ASN1_TIME_compare(X509_get0_notAfter(s), X509_get0_notAfter(ca)), 0);
    X509_free(ca);
    X509_free(a);
    X509_free(s);
}

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
}

Test(certs, expired_flag_makes_a_certificate_that_ended_yesterday)
{
    const char *out = path_in("out");

    cr_assert_eq(run("-q", "-o", out, NULL), 0);
    cr_assert_eq(run("-q", "-o", out, "--clients-only", "--expired", "--user", "old", NULL), 0);
    X509 *ca = load_cert(out, "root-ca-cert.pem"), *old = load_cert(out, "old-cert.pem");
    long left = seconds_left(old);
    cr_expect(left <= -DAY + SLACK && left > -DAY - SLACK, "%ld s", left);
    cr_expect_eq(verify(ca, old, X509_PURPOSE_SSL_CLIENT), X509_V_ERR_CERT_HAS_EXPIRED);
    cr_expect_str_eq(cn_of(old), "old");
    assert_same_file(out, "client-cert.pem", "alice-cert.pem", true);
    X509_free(ca);
    X509_free(old);
}

Test(certs, expired_in_a_fresh_folder_does_not_write_the_default_client)
{
    const char *out = path_in("out");

    cr_assert_eq(run("-q", "-o", out, "--expired", "--user", "old", NULL), 0);
    cr_expect(exists(out, "old-cert.pem"));
    cr_expect(exists(out, "server-cert.pem"));
    cr_expect(!exists(out, "client-cert.pem"));
    cr_expect(!exists(out, "client-key.pem"));
}

Test(certs, no_cn_flag_makes_a_certificate_without_common_name)
{
    const char *out = path_in("out");

    cr_assert_eq(run("-q", "-o", out, NULL), 0);
    cr_assert_eq(run("-q", "-o", out, "--clients-only", "--no-cn", "--user", "nobody", NULL), 0);
    X509 *ca = load_cert(out, "root-ca-cert.pem"), *x = load_cert(out, "nobody-cert.pem");
    cr_expect_eq(X509_NAME_get_index_by_NID(X509_get_subject_name(x), NID_commonName, -1), -1);
    cr_expect_eq(verify(ca, x, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
    X509_free(ca);
    X509_free(x);
}

Test(certs, a_certificate_from_another_ca_does_not_verify)
{
    const char *a = path_in("a"), *b = path_in("b");

    cr_assert_eq(run("-q", "-o", a, NULL), 0);
    cr_assert_eq(run("-q", "-o", b, "--user", "mallory", NULL), 0);
    X509 *ca = load_cert(a, "root-ca-cert.pem"), *m = load_cert(b, "mallory-cert.pem");
    cr_expect_eq(verify(ca, m, X509_PURPOSE_SSL_CLIENT),
                 X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    X509_free(ca);
    X509_free(m);
}

Test(certs, openssl_command_line_agrees)
{
    const char *out = path_in("out");
    char cmd[4096];

    if (system("command -v openssl >/dev/null 2>&1") != 0)
        cr_skip_test("the openssl command is not installed");
    cr_assert_eq(run("-q", "-o", out, "--host", "10.9.8.7", NULL), 0);
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl verify -x509_strict -purpose sslserver -CAfile root-ca-cert.pem "
             "server-cert.pem >/dev/null && openssl verify -x509_strict -purpose sslclient "
             "-CAfile ca-clients-bundle.pem client-cert.pem alice-cert.pem bob-cert.pem "
             "administrator-cert.pem >/dev/null && openssl verify -verify_ip 10.9.8.7 "
             "-verify_hostname localhost -CAfile root-ca-cert.pem server-cert.pem >/dev/null",
             out);
    cr_expect_eq(system(cmd), 0, "openssl verify failed: %s", cmd);
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl verify -purpose sslserver -CAfile root-ca-cert.pem "
             "alice-cert.pem >/dev/null 2>&1",
             out);
    cr_expect_neq(system(cmd), 0, "a client certificate must not pass as a server one");
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
