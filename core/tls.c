#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/conf.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "cleanup.h"
#include "log.h"
#include "proc.h"

#define PEM_MAX_BYTES (1024 * 1024)

/* OpenSSL's system default for every SSL_CTX made after this is loaded. "Protocol = -ALL,
 * TLSv1.3" sets SSL_OP_NO_TLSv1_2 (and below), which gRPC never clears; "MinProtocol" would
 * not do, gRPC overrides the minimum (see core/tls.h). */
static const char tls_config[] = "openssl_conf = runjob_openssl\n"
                                 "[runjob_openssl]\n"
                                 "ssl_conf = runjob_ssl\n"
                                 "[runjob_ssl]\n"
                                 "system_default = runjob_tls\n"
                                 "[runjob_tls]\n"
                                 "Protocol = -ALL, TLSv1.3\n"
                                 "Options = ServerPreference\n"
                                 "Ciphersuites = " TLS_CIPHERSUITES "\n";

const char *tls_openssl_version(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

int tls_process_init(void)
{
    /* The first OPENSSL_init_crypto call decides whether OpenSSL registers its atexit handler.
     * It also consumes the run-once config load without reading a file: gRPC's
     * OPENSSL_init_ssl would otherwise parse the system openssl.cnf (or $OPENSSL_CONF) in every
     * client process (~6% of its main thread's CPU in perf, bench/RESULTS.md "Cold client"),
     * and such a file could change what our TLS contexts allow. The server loads its own config
     * from memory (tls_init). */
    return OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT | OPENSSL_INIT_NO_LOAD_CONFIG, NULL) == 1
               ? 0
               : -ENOMEM;
}

static int load_config(void)
{
    BIO *bio;
    CONF *conf;
    long eline = 0;
    int r = 0;

    /* Consume OpenSSL's run-once config load without reading any file: neither the system
     * openssl.cnf nor $OPENSSL_CONF can then replace (weaken) what we load below. */
    if (OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_ATEXIT, NULL) != 1)
        return -ENOMEM;
    if (OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG, NULL) != 1)
        return -ENOMEM;
    OPENSSL_load_builtin_modules(); /* registers the ssl_conf module */

    bio = BIO_new_mem_buf(tls_config, (int)sizeof(tls_config) - 1);
    conf = NCONF_new(NULL);
    if (!bio || !conf)
        r = -ENOMEM;
    else if (NCONF_load_bio(conf, bio, &eline) != 1)
        r = -EINVAL;
    else if (CONF_modules_load(conf, NULL, 0) != 1)
        r = -EINVAL;
    if (r < 0)
        log_debug("tls: loading the TLS 1.3 config failed at line %ld", eline);
    NCONF_free(conf);
    BIO_free(bio);
    ERR_clear_error();
    return r;
}

int tls_probe(struct tls_probe_result *ret)
{
    struct tls_probe_result p = {0};
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    SSL *ssl;

    if (!ctx)
        return -ENOMEM;
    p.config_no_tls12 = (SSL_CTX_get_options(ctx) & SSL_OP_NO_TLSv1_2) != 0;
    p.min_is_tls13 = SSL_CTX_get_min_proto_version(ctx) == TLS1_3_VERSION;
    /* What gRPC does to every context it makes: */
    (void)SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    p.lowering_refused = SSL_CTX_get_min_proto_version(ctx) == TLS1_3_VERSION;
    ssl = SSL_new(ctx);
    if (ssl) {
        (void)SSL_set_min_proto_version(ssl, TLS1_2_VERSION);
        p.ssl_lowering_refused = SSL_get_min_proto_version(ssl) == TLS1_3_VERSION &&
                                 (SSL_get_options(ssl) & SSL_OP_NO_TLSv1_2) != 0;
        SSL_free(ssl);
    }
    SSL_CTX_free(ctx);
    ERR_clear_error();
    *ret = p;
    return ssl ? 0 : -ENOMEM;
}

bool tls_probe_ok(const struct tls_probe_result *p)
{
    return p->config_no_tls12 && p->min_is_tls13 && p->lowering_refused && p->ssl_lowering_refused;
}

int tls_init(void)
{
    struct tls_probe_result p;
    int r;

    r = load_config();
    if (r < 0)
        return r;
    r = tls_probe(&p);
    if (r < 0)
        return r;
    log_debug("tls: probe: config_no_tls12=%d min_is_tls13=%d lowering_refused=%d "
              "ssl_lowering_refused=%d",
              p.config_no_tls12, p.min_is_tls13, p.lowering_refused, p.ssl_lowering_refused);
    return tls_probe_ok(&p) ? 0 : -EPROTO;
}

int tls_read_pem(const char *path, char **ret_pem)
{
    _cleanup_close_ int fd = -1;
    _cleanup_free_ char *buf = NULL;
    struct stat st;
    int r;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISDIR(st.st_mode))
        return -EISDIR;
    if (st.st_size > PEM_MAX_BYTES)
        return -EFBIG;
    if ((r = proc_read_fd(fd, PEM_MAX_BYTES, &buf, NULL)) < 0)
        return r;
    if (!strstr(buf, "-----BEGIN "))
        return -EBADMSG;
    *ret_pem = TAKE_PTR(buf);
    return 0;
}

int tls_check_key_pair(const char *cert_pem, const char *key_pem)
{
    BIO *cb = BIO_new_mem_buf(cert_pem, -1);
    BIO *kb = BIO_new_mem_buf(key_pem, -1);
    X509 *cert = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
    EVP_PKEY *key = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    int r = 0;

    if (!cb || !kb)
        r = -ENOMEM;
    else if (!cert || !key)
        r = -EBADMSG;
    else if (X509_check_private_key(cert, key) != 1)
        r = -EKEYREJECTED;
    X509_free(cert);
    EVP_PKEY_free(key);
    BIO_free(cb);
    BIO_free(kb);
    ERR_clear_error();
    return r;
}

/* An ASN1_TIME (UTCTime or GeneralizedTime, always UTC in a certificate) as epoch seconds. */
static int asn1_time_epoch(const ASN1_TIME *t, int64_t *ret)
{
    struct tm tm = {0};

    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return -EBADMSG;
    *ret = (int64_t)timegm(&tm);
    return 0;
}

int tls_count_certs(const char *bundle_pem)
{
    BIO *b = BIO_new_mem_buf(bundle_pem, -1);
    X509 *x;
    int n = 0;

    if (!b)
        return -ENOMEM;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        n++;
        X509_free(x);
    }
    BIO_free(b);
    ERR_clear_error();
    return n > 0 ? n : -EBADMSG;
}

/* The next DER element in [*p, end): *start at its header, *p at its contents, *len their
 * length (within end: ASN1_get_object checks). 0, or -EBADMSG (not DER: indefinite length). */
static int der_next(const unsigned char **p, const unsigned char *end, const unsigned char **start,
                    long *len, int *tag)
{
    int xclass, r;

    *start = *p;
    if (*p >= end)
        return -EBADMSG;
    r = ASN1_get_object(p, len, tag, &xclass, end - *p);
    if (r & 0x80 || r & 0x01)
        return -EBADMSG;
    if (xclass == V_ASN1_CONTEXT_SPECIFIC)
        *tag = -1 - *tag; /* [n] apart from the universal tags: [0] is -1 */
    return 0;
}

/* Field k of a DER certificate's tbsCertificate after its optional [0] version (0 serialNumber,
 * 1 signature, 2 issuer, 3 validity, 4 subject), reached by stepping over the fields before it
 * rather than by d2i_X509: that one also decodes the public key, through OpenSSL 3.0's decoder
 * machinery (~135 us a certificate, and the first one in a process ~2.7 ms), where these
 * callers need ~2 us. *ret_start is the field's header, *ret_len header and contents. -EBADMSG
 * when der is not a certificate. */
static int der_tbs_field(const unsigned char *der, long len, int k, const unsigned char **ret_start,
                         long *ret_len)
{
    const unsigned char *p = der, *end = der + len, *start;
    long n;
    int tag;

    /* Certificate, then tbsCertificate: SEQUENCEs, stepped into. */
    for (int depth = 0; depth < 2; depth++) {
        if (der_next(&p, end, &start, &n, &tag) < 0 || tag != V_ASN1_SEQUENCE)
            return -EBADMSG;
        end = p + n;
    }
    if (der_next(&p, end, &start, &n, &tag) < 0)
        return -EBADMSG;
    for (int skip = tag == -1 ? k + 1 : k; skip > 0; skip--) {
        p += n;
        if (der_next(&p, end, &start, &n, &tag) < 0)
            return -EBADMSG;
    }
    if (tag != V_ASN1_SEQUENCE && k != 0)
        return -EBADMSG;
    *ret_start = start;
    *ret_len = n + (long)(p - start); /* its header too: a d2i reads the whole element */
    return 0;
}

/* The subject Name of a DER certificate. NULL when der is not a certificate. */
static X509_NAME *der_subject(const unsigned char *der, long len)
{
    const unsigned char *p;
    long n;

    if (der_tbs_field(der, len, 4, &p, &n) < 0)
        return NULL;
    return d2i_X509_NAME(NULL, &p, n);
}

/* The first certificate of pem (len bytes) as DER, for OPENSSL_free. -EBADMSG, -ENOMEM. */
static int pem_first_cert_der(const char *pem, size_t len, unsigned char **ret, long *ret_len)
{
    BIO *b;
    int ok;

    if (len == 0 || len > PEM_MAX_BYTES)
        return -EBADMSG;
    b = BIO_new_mem_buf(pem, (int)len);
    if (!b)
        return -ENOMEM;
    ok = PEM_bytes_read_bio(ret, ret_len, NULL, PEM_STRING_X509, b, NULL, NULL);
    BIO_free(b);
    if (!ok) {
        ERR_clear_error();
        return -EBADMSG;
    }
    return 0;
}

int tls_cert_dates(const char *pem, int64_t *ret_not_before, int64_t *ret_not_after)
{
    unsigned char *der = NULL;
    const unsigned char *p, *end;
    long der_len = 0, n;
    ASN1_TIME *nb = NULL, *na = NULL;
    int r;

    if ((r = pem_first_cert_der(pem, strlen(pem), &der, &der_len)) < 0)
        return r;
    /* Validity ::= SEQUENCE { notBefore Time, notAfter Time } */
    r = der_tbs_field(der, der_len, 3, &p, &n);
    if (r == 0) {
        const unsigned char *start;
        int tag;

        end = p + n;
        if (der_next(&p, end, &start, &n, &tag) < 0 || tag != V_ASN1_SEQUENCE)
            r = -EBADMSG;
        else if (!(nb = d2i_ASN1_TIME(NULL, &p, end - p)) ||
                 !(na = d2i_ASN1_TIME(NULL, &p, end - p)))
            r = -EBADMSG;
        else if ((r = asn1_time_epoch(nb, ret_not_before)) == 0)
            r = asn1_time_epoch(na, ret_not_after);
    }
    ASN1_TIME_free(nb);
    ASN1_TIME_free(na);
    OPENSSL_free(der);
    ERR_clear_error();
    return r;
}

int tls_subject_cn_count(const char *pem, size_t len)
{
    unsigned char *der = NULL;
    long der_len = 0;
    X509_NAME *subject;
    int n = 0, i = -1, r;

    if ((r = pem_first_cert_der(pem, len, &der, &der_len)) < 0)
        return r;
    subject = der_subject(der, der_len);
    OPENSSL_free(der);
    if (!subject) {
        ERR_clear_error();
        return -EBADMSG;
    }
    while ((i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) >= 0)
        n++;
    X509_NAME_free(subject);
    return n;
}
