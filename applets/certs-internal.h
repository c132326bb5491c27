#pragma once
/* What runjob certs' command line (certs.c) and its PKI half (certs-pki.c: keys, certificates,
 * the files they go to and the checks after writing) share. Only these two include it. */
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/cleanup.h"

#define CERTS_MAX_NAMES 64 /* --user and --host each */
#define CERTS_MAX_DAYS  36500L
#define DAY_SECONDS     86400L
/* Leaves start 5 minutes in the past so that a peer whose clock is a little behind accepts
 * them at once (cfssl and step-ca backdate the same way). */
#define BACKDATE_SECONDS 300L

#define CA_CERT   "root-ca-cert.pem"
#define CA_KEY    "root-ca-key.pem"
#define CA_BUNDLE "ca-clients-bundle.pem"

DEFINE_CLEANUP(EVP_PKEY *, EVP_PKEY_free)
DEFINE_CLEANUP(X509 *, X509_free)
DEFINE_CLEANUP(X509_NAME *, X509_NAME_free)
DEFINE_CLEANUP(X509_STORE *, X509_STORE_free)
DEFINE_CLEANUP(X509_STORE_CTX *, X509_STORE_CTX_free)
DEFINE_CLEANUP(X509_EXTENSION *, X509_EXTENSION_free)
DEFINE_CLEANUP(GENERAL_NAMES *, GENERAL_NAMES_free)
DEFINE_CLEANUP(BIGNUM *, BN_free)
DEFINE_CLEANUP(BIO *, BIO_free)

struct certs_opts {
    const char *out;
    const char *users[CERTS_MAX_NAMES];
    size_t n_users;
    const char *hosts[CERTS_MAX_NAMES];
    size_t n_hosts;
    long days, server_days, ca_days;
    bool force, reuse_ca, clients_only, quiet, expired, no_cn;
};

/* One file to write: its name in DIR, a summary line, the PEM text and the final mode. */
struct out_file {
    char *name;
    char *what;
    BIO *pem; /* keys live in a secure-memory BIO, wiped when freed */
    mode_t mode;
};

struct out_list {
    struct out_file f[2 * CERTS_MAX_NAMES + 8];
    size_t n;
};

enum leaf_kind { LEAF_SERVER, LEAF_CLIENT };

struct cert_spec {
    const char *cn; /* NULL: no Common Name (--no-cn) */
    bool is_ca;
    enum leaf_kind kind; /* when !is_ca */
    time_t not_before, not_after;
};

time_t certs_asn1_time_to_time_t(const ASN1_TIME *t);
void certs_format_day(time_t t, char *buf, size_t cap);
/* Makes a certificate for key, signed by issuer_key with SHA-256; issuer NULL = self-signed. */
int certs_make_cert(const struct cert_spec *s, const struct certs_opts *o, EVP_PKEY *key,
                    X509 *issuer, EVP_PKEY *issuer_key, X509 **ret);
int certs_new_p256_key(EVP_PKEY **ret);
void certs_out_list_free(struct out_list *l);
int certs_out_add_cert(struct out_list *l, X509 *x, const char *name, const char *what);
int certs_out_add_key(struct out_list *l, EVP_PKEY *k, const char *name, const char *what);
/* Writes data to dirfd/name atomically: a fresh temporary file made O_EXCL with mode 0600
 * (never wider, whatever the umask), then fchmod to mode, fsync and rename over name. */
int certs_write_file_atomic(int dirfd, const char *dir, const char *name, const void *data,
                            size_t len, mode_t mode);
int certs_verify_written(int dirfd, const struct certs_opts *o);
/* 1 if dirfd/name exists, 0 if not, -errno (logged) if it cannot be told. */
int certs_file_exists(int dirfd, const char *dir, const char *name);
int certs_open_out_dir(const char *dir, int *ret);
/* Loads the CA in DIR for --reuse-ca, checking that it is a CA and that its key matches. */
int certs_load_ca(int dirfd, const char *dir, X509 **ret_cert, EVP_PKEY **ret_key);
/* Issues one leaf: a new key and a certificate signed by the CA, both added to files. */
int certs_issue_leaf(struct out_list *files, const struct certs_opts *o, X509 *ca, EVP_PKEY *ca_key,
                     const struct cert_spec *s, const char *stem, const char *alias);
/* From certs.c: h is an IPv4 or IPv6 literal; hosts[i] already stands earlier in the list. */
bool certs_host_is_ip(const char *h);
bool certs_host_is_duplicate(const struct certs_opts *o, size_t i);
