/* runjob certs, what one run writes: the files and their modes, the keys, the chain, the
 * extensions, SANs and validity, the certificates made to fail on purpose (expired, without CN,
 * from another CA); checked with OpenSSL's API and once with the openssl command line as an
 * outside opinion. Runs over an existing folder, output and exit codes: test_certs_cli.c. */
#include "test_certs.h"

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

Test(certs, keys_are_p256_and_match_their_certificates)
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
        cr_expect_str_eq(group, "prime256v1", "%s", kn);
        cr_expect_eq(X509_check_private_key(x, k), 1, "%s does not match %s", kn, cn);
        cr_expect_eq(X509_get_signature_nid(x), NID_ecdsa_with_SHA256, "%s", cn);
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
