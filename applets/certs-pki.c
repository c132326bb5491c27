/* runjob certs, the PKI half: P-256 keys, certificates signed with SHA-256, the PEM files
 * they are written to (atomically, 0600 first) and the checks made after writing. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "applets/certs-internal.h"
#include "core/log.h"
#include "core/proc.h"

/* Logs one error line ending in OpenSSL's reason for the last failure; returns -EIO. */
static int log_ssl(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int log_ssl(const char *fmt, ...)
{
    va_list ap;
    _cleanup_free_ char *msg = NULL;
    char reason[256];
    unsigned long e = ERR_peek_last_error();

    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    if (e)
        ERR_error_string_n(e, reason, sizeof(reason));
    else
        snprintf(reason, sizeof(reason), "unknown OpenSSL error");
    ERR_clear_error();
    log_error("%s: %s", msg ? msg : fmt, reason);
    return -EIO;
}

time_t certs_asn1_time_to_time_t(const ASN1_TIME *t)
{
    struct tm tm;

    if (!ASN1_TIME_to_tm(t, &tm))
        return 0;
    return timegm(&tm);
}

void certs_format_day(time_t t, char *buf, size_t cap)
{
    struct tm tm;

    if (!gmtime_r(&t, &tm) || strftime(buf, cap, "%Y-%m-%d", &tm) == 0)
        snprintf(buf, cap, "?");
}

/* A positive serial of exactly 16 octets: 126 random bits, top bits fixed (0 1) so that the
 * DER INTEGER never needs a sign byte and is never zero (RFC 5280 4.1.2.2). */
static int set_random_serial(X509 *x)
{
    unsigned char b[16];
    _cleanup_(BN_freep) BIGNUM *bn = NULL;

    if (RAND_bytes(b, sizeof(b)) != 1)
        return log_ssl("cannot make a serial number");
    b[0] = (unsigned char)((b[0] & 0x3f) | 0x40);
    bn = BN_bin2bn(b, sizeof(b), NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        return log_ssl("cannot set the serial number");
    return 0;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    _cleanup_(X509_EXTENSION_freep) X509_EXTENSION *ext =
        X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (!ext || !X509_add_ext(x, ext, -1))
        return log_ssl("cannot add %s=%s", OBJ_nid2sn(nid), value);
    return 0;
}

/* SANs are built as GENERAL_NAMEs rather than as a "DNS:a,IP:b" config string, so that no
 * --host value can inject another entry. */
static int add_server_sans(X509 *x, const struct certs_opts *o)
{
    static const char *const always[] = {"localhost", "127.0.0.1", "::1"};
    _cleanup_(GENERAL_NAMES_freep) GENERAL_NAMES *gens = GENERAL_NAMES_new();

    if (!gens)
        return log_ssl("cannot allocate subjectAltName");
    for (size_t i = 0; i < ELEMENTSOF(always) + o->n_hosts; i++) {
        const char *h = i < ELEMENTSOF(always) ? always[i] : o->hosts[i - ELEMENTSOF(always)];
        GENERAL_NAME *g;
        if (i >= ELEMENTSOF(always) && certs_host_is_duplicate(o, i - ELEMENTSOF(always)))
            continue;
        g = a2i_GENERAL_NAME(NULL, NULL, NULL, certs_host_is_ip(h) ? GEN_IPADD : GEN_DNS, h, 0);
        if (!g || !sk_GENERAL_NAME_push(gens, g)) {
            GENERAL_NAME_free(g);
            return log_ssl("cannot add '%s' to subjectAltName", h);
        }
    }
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1)
        return log_ssl("cannot add subjectAltName");
    return 0;
}

/* Makes a certificate for key, signed by issuer_key with SHA-256; issuer NULL = self-signed. */
int certs_make_cert(const struct cert_spec *s, const struct certs_opts *o, EVP_PKEY *key,
                    X509 *issuer, EVP_PKEY *issuer_key, X509 **ret)
{
    _cleanup_(X509_freep) X509 *x = X509_new();
    _cleanup_(X509_NAME_freep) X509_NAME *name = X509_NAME_new();
    X509V3_CTX ctx;
    int r;

    if (!x || !name)
        return log_ssl("cannot allocate a certificate");
    if (!X509_set_version(x, X509_VERSION_3))
        return log_ssl("cannot set the certificate version");
    if ((r = set_random_serial(x)) < 0)
        return r;
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"runjob", -1,
                                    -1, 0) ||
        (s->cn && !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                              (const unsigned char *)s->cn, -1, -1, 0)))
        return log_ssl("cannot build the subject name");
    if (!X509_set_subject_name(x, name) ||
        !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name))
        return log_ssl("cannot set the subject and issuer names");
    if (!ASN1_TIME_set(X509_getm_notBefore(x), s->not_before) ||
        !ASN1_TIME_set(X509_getm_notAfter(x), s->not_after))
        return log_ssl("cannot set the validity");
    if (!X509_set_pubkey(x, key))
        return log_ssl("cannot set the public key");

    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    /* Order matters: the subjectKeyIdentifier exists before the authorityKeyIdentifier of a
     * self-signed certificate copies it. */
    if ((r = add_ext(x, &ctx, NID_subject_key_identifier, "hash")) < 0 ||
        (r = add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always")) < 0)
        return r;
    if (s->is_ca) {
        /* pathlen:0: this CA signs leaves only, never another CA. */
        if ((r = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0")) < 0 ||
            (r = add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign")) < 0)
            return r;
    } else {
        if ((r = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE")) < 0 ||
            (r = add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature")) < 0 ||
            (r = add_ext(x, &ctx, NID_ext_key_usage,
                         s->kind == LEAF_SERVER ? "serverAuth" : "clientAuth")) < 0)
            return r;
        if (s->kind == LEAF_SERVER && (r = add_server_sans(x, o)) < 0)
            return r;
    }
    if (X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) <= 0)
        return log_ssl("cannot sign the certificate");
    *ret = TAKE_PTR(x);
    return 0;
}

/* P-256 (128-bit security, as the AES-128 and ChaCha20 suites; TLS 1.3 and its ECDHE are the
 * same with either curve): every handshake signs once and verifies twice on each side, and
 * OpenSSL 3.0's P-256 code is ~30x faster than its generic P-384 (`openssl speed`: sign 0.02 vs
 * 0.63 ms, verify 0.05 vs 0.54 ms here): ~2 ms of CPU per client process (bench/RESULTS.md
 * "Cold client"). Certificates of other curves made elsewhere still work. */
int certs_new_p256_key(EVP_PKEY **ret)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");

    if (!k)
        return log_ssl("cannot generate a P-256 key");
    *ret = k;
    return 0;
}

void certs_out_list_free(struct out_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->f[i].name);
        free(l->f[i].what);
        BIO_free(l->f[i].pem);
    }
    l->n = 0;
}

/* Appends a file to write; takes pem. */
static int out_add(struct out_list *l, BIO *pem, mode_t mode, const char *name, const char *what)
{
    struct out_file *f;

    if (l->n == ELEMENTSOF(l->f)) {
        BIO_free(pem);
        return log_errno(-E2BIG, "too many files");
    }
    f = &l->f[l->n++];
    f->pem = pem;
    f->mode = mode;
    f->name = strdup(name);
    f->what = strdup(what);
    if (!f->name || !f->what)
        return log_errno(-ENOMEM, "cannot list '%s'", name);
    return 0;
}

int certs_out_add_cert(struct out_list *l, X509 *x, const char *name, const char *what)
{
    BIO *b = BIO_new(BIO_s_mem());

    if (!b || !PEM_write_bio_X509(b, x)) {
        BIO_free(b);
        return log_ssl("cannot encode '%s'", name);
    }
    return out_add(l, b, 0644, name, what);
}

int certs_out_add_key(struct out_list *l, EVP_PKEY *k, const char *name, const char *what)
{
    BIO *b = BIO_new(BIO_s_secmem());

    if (!b || !PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)) {
        BIO_free(b);
        return log_ssl("cannot encode '%s'", name);
    }
    return out_add(l, b, 0600, name, what);
}

/* Writes data to dirfd/name atomically: a fresh temporary file made O_EXCL with mode 0600
 * (never wider, whatever the umask), then fchmod to mode, fsync and rename over name. */
int certs_write_file_atomic(int dirfd, const char *dir, const char *name, const void *data,
                            size_t len, mode_t mode)
{
    _cleanup_free_ char *tmp = NULL;
    _cleanup_close_ int fd = -1;
    int r;

    for (int attempt = 0; fd < 0; attempt++) {
        uint64_t rnd;
        if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            return log_errno(-errno, "cannot get random bytes");
        free(tmp);
        if (asprintf(&tmp, ".%s.%016llx.tmp", name, (unsigned long long)rnd) < 0) {
            tmp = NULL;
            return log_errno(-ENOMEM, "cannot write '%s/%s'", dir, name);
        }
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && (errno != EEXIST || attempt >= 8))
            return log_errno(-errno, "cannot create '%s/%s'", dir, tmp);
    }
    if ((r = proc_write_fd(fd, data, len)) < 0)
        goto fail;
    if (fchmod(fd, mode) < 0 || fsync(fd) < 0) {
        r = -errno;
        goto fail;
    }
    if (close(TAKE_FD(fd)) < 0) {
        r = -errno;
        goto fail;
    }
    if (renameat(dirfd, tmp, dirfd, name) < 0) {
        r = -errno;
        goto fail;
    }
    return 0;
fail:
    /* Best effort: the temporary name is ours alone (O_EXCL), removing it is always right. */
    (void)unlinkat(dirfd, tmp, 0);
    return log_errno(r, "cannot write '%s/%s'", dir, name);
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1; /* never prompt: an encrypted key is an error here */
}

static int open_read(int dirfd, const char *dir, const char *name, FILE **ret)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    FILE *f;

    if (fd < 0)
        return log_errno(-errno, "cannot open '%s/%s'", dir, name);
    f = fdopen(fd, "r");
    if (!f) {
        int r = -errno;
        (void)close(fd);
        return log_errno(r, "cannot open '%s/%s'", dir, name);
    }
    *ret = f;
    return 0;
}

static int read_cert(int dirfd, const char *dir, const char *name, X509 **ret)
{
    _cleanup_fclose_ FILE *f = NULL;
    X509 *x;
    int r = open_read(dirfd, dir, name, &f);

    if (r < 0)
        return r;
    x = PEM_read_X509(f, NULL, no_passphrase, NULL);
    if (!x)
        return log_ssl("'%s/%s' holds no certificate", dir, name);
    *ret = x;
    return 0;
}

static int read_key(int dirfd, const char *dir, const char *name, EVP_PKEY **ret)
{
    _cleanup_fclose_ FILE *f = NULL;
    EVP_PKEY *k;
    int r = open_read(dirfd, dir, name, &f);

    if (r < 0)
        return r;
    k = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
    if (!k)
        return log_ssl("'%s/%s' holds no unencrypted private key", dir, name);
    *ret = k;
    return 0;
}

/* Every certificate in a PEM bundle, into a new store. */
static int read_store(int dirfd, const char *dir, const char *name, X509_STORE **ret)
{
    _cleanup_fclose_ FILE *f = NULL;
    _cleanup_(X509_STORE_freep) X509_STORE *store = X509_STORE_new();
    X509 *x;
    int n = 0, r;

    if (!store)
        return log_ssl("cannot allocate a certificate store");
    if ((r = open_read(dirfd, dir, name, &f)) < 0)
        return r;
    while ((x = PEM_read_X509(f, NULL, no_passphrase, NULL))) {
        int ok = X509_STORE_add_cert(store, x);
        X509_free(x);
        if (!ok)
            return log_ssl("cannot use a certificate of '%s/%s'", dir, name);
        n++;
    }
    ERR_clear_error(); /* the read that ended the loop failed on end of file */
    if (n == 0)
        return log_errno(-EINVAL, "'%s/%s' holds no certificate", dir, name);
    *ret = TAKE_PTR(store);
    return 0;
}

/* Reads <stem>-cert.pem and <stem>-key.pem back and checks them against the trust store. */
static int verify_leaf(int dirfd, const char *dir, X509_STORE *trust, const char *trust_name,
                       const char *stem, enum leaf_kind kind, bool check_time)
{
    _cleanup_free_ char *cert_name = NULL, *key_name = NULL;
    _cleanup_(X509_freep) X509 *x = NULL;
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *k = NULL;
    _cleanup_(X509_STORE_CTX_freep) X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int r;

    if (!ctx || asprintf(&cert_name, "%s-cert.pem", stem) < 0 ||
        asprintf(&key_name, "%s-key.pem", stem) < 0)
        return log_errno(-ENOMEM, "cannot verify '%s'", stem);
    if ((r = read_cert(dirfd, dir, cert_name, &x)) < 0 ||
        (r = read_key(dirfd, dir, key_name, &k)) < 0)
        return r;
    if (X509_check_private_key(x, k) != 1)
        return log_ssl("'%s/%s' does not match '%s/%s'", dir, key_name, dir, cert_name);
    if (!X509_STORE_CTX_init(ctx, trust, x, NULL) ||
        !X509_STORE_CTX_set_purpose(ctx, kind == LEAF_SERVER ? X509_PURPOSE_SSL_SERVER
                                                             : X509_PURPOSE_SSL_CLIENT))
        return log_ssl("cannot set up the verification of '%s/%s'", dir, cert_name);
    /* The root's own signature is checked too (OpenSSL trusts a root without looking). An
     * --expired certificate is expired on purpose: its time alone is not checked. */
    X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_CHECK_SS_SIGNATURE |
                                      (check_time ? 0 : X509_V_FLAG_NO_CHECK_TIME));
    if (X509_verify_cert(ctx) != 1) {
        ERR_clear_error();
        log_error("'%s/%s' does not verify against '%s/%s': %s", dir, cert_name, dir, trust_name,
                  X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
        return -EBADMSG;
    }
    if (kind == LEAF_SERVER &&
        (X509_check_host(x, "localhost", 0, 0, NULL) != 1 ||
         X509_check_ip_asc(x, "127.0.0.1", 0) != 1 || X509_check_ip_asc(x, "::1", 0) != 1)) {
        log_error("'%s/%s' is not valid for localhost, 127.0.0.1 and ::1", dir, cert_name);
        return -EBADMSG;
    }
    return 0;
}

int certs_verify_written(int dirfd, const struct certs_opts *o)
{
    _cleanup_(X509_STORE_freep) X509_STORE *roots = NULL;
    _cleanup_(X509_STORE_freep) X509_STORE *clients = NULL;
    int r;

    if ((r = read_store(dirfd, o->out, CA_CERT, &roots)) < 0 ||
        (r = read_store(dirfd, o->out, CA_BUNDLE, &clients)) < 0)
        return r;
    if (!o->clients_only &&
        (r = verify_leaf(dirfd, o->out, roots, CA_CERT, "server", LEAF_SERVER, true)) < 0)
        return r;
    for (size_t i = 0; i < o->n_users; i++)
        if ((r = verify_leaf(dirfd, o->out, clients, CA_BUNDLE, o->users[i], LEAF_CLIENT,
                             !o->expired)) < 0)
            return r;
    if (!o->clients_only && !o->expired && !o->no_cn &&
        (r = verify_leaf(dirfd, o->out, clients, CA_BUNDLE, "client", LEAF_CLIENT, true)) < 0)
        return r;
    return 0;
}

/* 1 if dirfd/name exists, 0 if not, -errno (logged) if it cannot be told. */
int certs_file_exists(int dirfd, const char *dir, const char *name)
{
    struct stat st;

    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return 1;
    if (errno == ENOENT)
        return 0;
    return log_errno(-errno, "cannot look at '%s/%s'", dir, name);
}

int certs_open_out_dir(const char *dir, int *ret)
{
    int fd;

    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return log_errno(-errno, "cannot create folder '%s'", dir);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return log_errno(-errno, "cannot open folder '%s'", dir);
    *ret = fd;
    return 0;
}

/* Loads the CA in DIR for --reuse-ca, checking that it is a CA and that its key matches. */
int certs_load_ca(int dirfd, const char *dir, X509 **ret_cert, EVP_PKEY **ret_key)
{
    _cleanup_(X509_freep) X509 *x = NULL;
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *k = NULL;
    struct stat st;
    int r;

    if ((r = read_cert(dirfd, dir, CA_CERT, &x)) < 0 || (r = read_key(dirfd, dir, CA_KEY, &k)) < 0)
        return r;
    if (X509_check_ca(x) < 1) {
        log_error("'%s/%s' is not a CA certificate", dir, CA_CERT);
        return -EINVAL;
    }
    if (X509_check_private_key(x, k) != 1)
        return log_ssl("'%s/%s' does not match '%s/%s'", dir, CA_KEY, dir, CA_CERT);
    if (certs_asn1_time_to_time_t(X509_get0_notAfter(x)) <= time(NULL)) {
        log_error("the CA '%s/%s' has expired: make a new one with --force", dir, CA_CERT);
        return -EKEYEXPIRED;
    }
    if (fstatat(dirfd, CA_KEY, &st, 0) == 0 && (st.st_mode & 077))
        log_warn("'%s/%s' is readable by others (mode %04o), ignoring", dir, CA_KEY,
                 (unsigned)(st.st_mode & 07777));
    *ret_cert = TAKE_PTR(x);
    *ret_key = TAKE_PTR(k);
    return 0;
}

/* Issues one leaf: a new key and a certificate signed by the CA, both added to files. */
int certs_issue_leaf(struct out_list *files, const struct certs_opts *o, X509 *ca, EVP_PKEY *ca_key,
                     const struct cert_spec *s, const char *stem, const char *alias)
{
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *k = NULL;
    _cleanup_(X509_freep) X509 *x = NULL;
    _cleanup_free_ char *cert_name = NULL, *key_name = NULL, *what = NULL, *key_what = NULL;
    char until[32];
    int r;

    if ((r = certs_new_p256_key(&k)) < 0 || (r = certs_make_cert(s, o, k, ca, ca_key, &x)) < 0)
        return r;
    certs_format_day(s->not_after, until, sizeof(until));
    if (asprintf(&cert_name, "%s-cert.pem", stem) < 0)
        cert_name = NULL;
    if (asprintf(&key_name, "%s-key.pem", stem) < 0)
        key_name = NULL;
    if (s->kind == LEAF_SERVER) {
        if (asprintf(&what,
                     "server certificate: localhost, 127.0.0.1, ::1%s, serverAuth, "
                     "valid until %s",
                     o->n_hosts ? " and each --host" : "", until) < 0)
            what = NULL;
    } else if (asprintf(&what, "client certificate: %s%s, clientAuth, %s until %s",
                        s->cn ? "CN=" : "no CN", s->cn ? s->cn : "",
                        o->expired ? "EXPIRED (test)," : "valid", until) < 0) {
        what = NULL;
    }
    if (asprintf(&key_what, "private key of %s, P-256, mode 0600", cert_name ? cert_name : "") < 0)
        key_what = NULL;
    if (!cert_name || !key_name || !what || !key_what)
        return log_errno(-ENOMEM, "cannot issue '%s'", stem);
    if ((r = certs_out_add_key(files, k, key_name, key_what)) < 0 ||
        (r = certs_out_add_cert(files, x, cert_name, what)) < 0)
        return r;
    if (alias) {
        _cleanup_free_ char *alias_cert = NULL, *alias_key = NULL, *alias_what = NULL;
        if (asprintf(&alias_cert, "%s-cert.pem", alias) < 0)
            alias_cert = NULL;
        if (asprintf(&alias_key, "%s-key.pem", alias) < 0)
            alias_key = NULL;
        if (asprintf(&alias_what, "copy of %s (the default user)", cert_name) < 0)
            alias_what = NULL;
        if (!alias_cert || !alias_key || !alias_what)
            return log_errno(-ENOMEM, "cannot issue '%s'", alias);
        if ((r = certs_out_add_key(files, k, alias_key, "copy of the key above, mode 0600")) < 0 ||
            (r = certs_out_add_cert(files, x, alias_cert, alias_what)) < 0)
            return r;
    }
    return 0;
}
