/* core/tls: TLS 1.3-only enforcement in a dynamic link (the interposer in core/tls-interpose.c
 * plus the config loaded by tls_init), and the PEM helpers. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

    cr_assert_not_null(mkdtemp(dir));
    snprintf(cert, sizeof(cert), "%s/c.pem", dir);
    snprintf(key, sizeof(key), "%s/k.pem", dir);
    snprintf(key2, sizeof(key2), "%s/k2.pem", dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=t "
             "-days 1 -keyout %s -out %s >/dev/null 2>&1 && "
             "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s 2>/dev/null",
             key, cert, key2);
    if (system(cmd) != 0)
        cr_skip_test("openssl tool not available");
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
