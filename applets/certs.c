/* runjob certs: an ECDSA P-384 root CA, a server certificate and client certificates, as PEM
 * files, made with OpenSSL's C API (ARCHITECTURE.md "Security"). The one applet that includes
 * OpenSSL headers.
 *
 * Decisions (also in --help):
 *  - An existing CA (root-ca-cert.pem or root-ca-key.pem in DIR) is never replaced without
 *    --force. --reuse-ca signs new server and client certificates with it; --clients-only
 *    signs only client certificates (adding a user leaves the server's key alone).
 *  - Certificates and keys other than the CA's are rewritten: they are derived from the CA.
 *  - ca-clients-bundle.pem is written with a new CA; with a reused CA it is written only if
 *    missing, so CAs someone appended to it are kept.
 *  - client-cert.pem/client-key.pem copy the first user's files, unless --clients-only or a
 *    test flag (--expired, --no-cn) is given: a test certificate never becomes the default.
 *  - Every file is written under a temporary name created O_EXCL with mode 0600, then renamed
 *    over the final name: a key is never world-readable, not even for a moment, and a reader
 *    never sees half a file.
 *  - After writing, the files are read back and checked: each key matches its certificate, the
 *    server certificate verifies against root-ca-cert.pem for serverAuth and localhost, and
 *    client certificates verify against ca-clients-bundle.pem for clientAuth.
 */
#include "applets.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/cleanup.h"
#include "core/log.h"

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

static const char *const default_users[] = {"alice", "bob", "administrator"};
/* User names that would make a file of their own kind collide with ours. */
static const char *const reserved_users[] = {"root-ca", "server", "client"};

enum {
    OPT_DAYS = 0x100,
    OPT_SERVER_DAYS,
    OPT_CA_DAYS,
    OPT_USER,
    OPT_HOST,
    OPT_REUSE_CA,
    OPT_CLIENTS_ONLY,
    OPT_EXPIRED,
    OPT_NO_CN,
};

static const struct option certs_longopts[] = {
    {"out", required_argument, NULL, 'o'},
    {"user", required_argument, NULL, OPT_USER},
    {"host", required_argument, NULL, OPT_HOST},
    {"days", required_argument, NULL, OPT_DAYS},
    {"server-days", required_argument, NULL, OPT_SERVER_DAYS},
    {"ca-days", required_argument, NULL, OPT_CA_DAYS},
    {"reuse-ca", no_argument, NULL, OPT_REUSE_CA},
    {"clients-only", no_argument, NULL, OPT_CLIENTS_ONLY},
    {"force", no_argument, NULL, 'f'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {"expired", no_argument, NULL, OPT_EXPIRED},
    {"no-cn", no_argument, NULL, OPT_NO_CN},
    {NULL, 0, NULL, 0},
};

static const char certs_usage[] =
    "Usage: runjob certs [flags]\n"
    "\n"
    "Makes an ECDSA P-384 root CA, a server certificate and one client certificate per user,\n"
    "as PEM files in DIR (SHA-384 signatures, random 128-bit serials). Keys are mode 0600 and\n"
    "every file is replaced atomically. An existing CA is never replaced without --force;\n"
    "--reuse-ca signs new certificates with it instead. The result is verified before exit.\n"
    "\n"
    "Flags:\n"
    "  -o, --out DIR        folder to write into, made 0755 if missing (default: certs)\n"
    "      --user NAME      a client certificate with CN=NAME: NAME-cert.pem, NAME-key.pem;\n"
    "                       repeatable; the first is also copied to client-cert.pem and\n"
    "                       client-key.pem (default: alice, bob, administrator). NAME is 1-64\n"
    "                       letters, digits, '.', '_', '-', starting with a letter or digit\n"
    "      --host NAME|IP   a DNS name or IP address added to the server certificate besides\n"
    "                       localhost, 127.0.0.1 and ::1; repeatable (default: none)\n"
    "      --days N         client certificate validity, days (default: 30)\n"
    "      --server-days N  server certificate validity, days (default: 365)\n"
    "      --ca-days N      CA validity, days (default: 3650); no certificate outlives its CA\n"
    "      --reuse-ca       sign new server and client certificates with the CA in DIR\n"
    "      --clients-only   sign only the --user certificates with the CA in DIR (implies\n"
    "                       --reuse-ca; leaves the server files and client-*.pem alone)\n"
    "  -f, --force          replace the CA in DIR, and everything it signed, with a new one\n"
    "  -q, --quiet          print nothing on success (default: one line per file written)\n"
    "  -h, --help           this text\n"
    "\n"
    "For testing only (these never write client-cert.pem/client-key.pem):\n"
    "      --expired        client certificates whose validity (--days long) ended yesterday\n"
    "      --no-cn          client certificates without a Common Name (files named by --user)\n"
    "  A certificate from a different CA: run certs again with another --out.\n"
    "\n"
    "Files: " CA_CERT " " CA_KEY " " CA_BUNDLE " server-cert.pem server-key.pem\n"
    "       NAME-cert.pem NAME-key.pem client-cert.pem client-key.pem\n"
    "Exit status: 0 written and verified, 1 error, 2 usage error.\n"
    "\n"
    "Examples:\n"
    "  runjob certs                                  # certs/: alice, bob, administrator\n"
    "  runjob certs -o /etc/runjob --host build1.example.com --host 10.0.0.7\n"
    "  runjob certs --clients-only --user carol --days 7       # add a user\n"
    "  runjob certs -o t --clients-only --user old --expired   # test: an expired client\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    _cleanup_free_ char *msg = NULL;

    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    fprintf(stderr, "runjob certs: %s (see 'runjob certs --help')\n", msg ? msg : fmt);
    return -EINVAL;
}

/* s with control bytes escaped (\\u000a), so that a hostile argument cannot split the one
 * error line; truncated to fit buf. */
static const char *esc(const char *s, char *buf, int cap)
{
    (void)log_json_escape(buf, cap, s);
    return buf;
}

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

static int parse_days(const char *flag, const char *arg, long *ret)
{
    char *end, e[64];
    long v;

    errno = 0;
    v = strtol(arg, &end, 10);
    if (errno || end == arg || *end || v < 1 || v > CERTS_MAX_DAYS)
        return usage_error("%s: '%s' is not a number of days from 1 to %ld", flag,
                           esc(arg, e, sizeof(e)), CERTS_MAX_DAYS);
    *ret = v;
    return 0;
}

/* A user name becomes a file name and a CN: keep it to a portable, unsurprising set. */
static bool user_is_valid(const char *u)
{
    size_t n = strlen(u);

    if (n < 1 || n > 64 ||
        !((u[0] >= 'a' && u[0] <= 'z') || (u[0] >= 'A' && u[0] <= 'Z') ||
          (u[0] >= '0' && u[0] <= '9')))
        return false;
    return strspn(u, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static bool host_is_ip(const char *h)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* RFC 1123 host name, optionally with a leading "*." wildcard label; the last label must not
 * be all digits (so "10.1" is refused rather than taken for a name). */
static bool host_is_dns(const char *h)
{
    size_t n = strlen(h);
    const char *label = h;

    if (n == 0 || n > 253)
        return false;
    if (strncmp(h, "*.", 2) == 0)
        label = h + 2;
    for (;;) {
        size_t len =
            strspn(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-");
        if (len == 0 || len > 63 || label[0] == '-' || label[len - 1] == '-')
            return false;
        if (label[len] == '\0')
            return strspn(label, "0123456789") != len;
        if (label[len] != '.')
            return false;
        label += len + 1;
    }
}

/* Whether host h names the same thing as one of the SANs a server certificate always has,
 * or as an earlier --host. */
static bool host_is_duplicate(const struct certs_opts *o, size_t i)
{
    static const char *const always[] = {"localhost", "127.0.0.1", "::1"};
    const char *h = o->hosts[i];
    unsigned char a[sizeof(struct in6_addr)], b[sizeof(struct in6_addr)];

    for (size_t j = 0; j < ELEMENTSOF(always) + i; j++) {
        const char *other = j < ELEMENTSOF(always) ? always[j] : o->hosts[j - ELEMENTSOF(always)];
        if (strcasecmp(h, other) == 0)
            return true;
        for (int af = AF_INET; af <= AF_INET6; af += AF_INET6 - AF_INET)
            if (inet_pton(af, h, a) == 1 && inet_pton(af, other, b) == 1 &&
                memcmp(a, b, af == AF_INET ? 4 : 16) == 0)
                return true;
    }
    return false;
}

/* 0 to go on, 1 when --help was printed, -EINVAL on a usage error (already reported). */
static int certs_parse_args(struct certs_opts *o, int argc, char **argv)
{
    char e[256]; /* an escaped argument, for error lines */
    int c, r;

    optind = 0; /* full getopt reset: the applet may run more than once in a process (tests) */
    /* The leading ':' silences getopt's own messages: we print one line of our own. */
    while ((c = getopt_long(argc, argv, ":o:fqh", certs_longopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            if (!*optarg)
                return usage_error("--out: empty folder name");
            o->out = optarg;
            break;
        case OPT_USER:
            if (o->n_users == CERTS_MAX_NAMES)
                return usage_error("--user: at most %d users", CERTS_MAX_NAMES);
            o->users[o->n_users++] = optarg;
            break;
        case OPT_HOST:
            if (o->n_hosts == CERTS_MAX_NAMES)
                return usage_error("--host: at most %d hosts", CERTS_MAX_NAMES);
            o->hosts[o->n_hosts++] = optarg;
            break;
        case OPT_DAYS:
            if ((r = parse_days("--days", optarg, &o->days)) < 0)
                return r;
            break;
        case OPT_SERVER_DAYS:
            if ((r = parse_days("--server-days", optarg, &o->server_days)) < 0)
                return r;
            break;
        case OPT_CA_DAYS:
            if ((r = parse_days("--ca-days", optarg, &o->ca_days)) < 0)
                return r;
            break;
        case OPT_REUSE_CA:
            o->reuse_ca = true;
            break;
        case OPT_CLIENTS_ONLY:
            o->clients_only = o->reuse_ca = true;
            break;
        case 'f':
            o->force = true;
            break;
        case 'q':
            o->quiet = true;
            break;
        case OPT_EXPIRED:
            o->expired = true;
            break;
        case OPT_NO_CN:
            o->no_cn = true;
            break;
        case 'h':
            fputs(certs_usage, stdout);
            return 1;
        case ':':
            return usage_error("flag '%s' needs a value", esc(argv[optind - 1], e, sizeof(e)));
        case '?':
        default:
            if (optopt)
                return usage_error("unknown flag '-%s'",
                                   esc((char[]){(char)optopt, '\0'}, e, sizeof(e)));
            return usage_error("unknown flag '%s'", esc(argv[optind - 1], e, sizeof(e)));
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", esc(argv[optind], e, sizeof(e)));
    if (o->force && o->reuse_ca)
        return usage_error("--force makes a new CA; it cannot go with --reuse-ca/--clients-only");
    if (o->n_users == 0) {
        for (size_t i = 0; i < ELEMENTSOF(default_users); i++)
            o->users[o->n_users++] = default_users[i];
    }
    for (size_t i = 0; i < o->n_users; i++) {
        if (!user_is_valid(o->users[i]))
            return usage_error("--user '%s': use 1-64 letters, digits, '.', '_', '-', starting "
                               "with a letter or digit",
                               esc(o->users[i], e, sizeof(e)));
        for (size_t j = 0; j < ELEMENTSOF(reserved_users); j++)
            if (strcmp(o->users[i], reserved_users[j]) == 0)
                return usage_error("--user '%s': reserved, its files would clash with ours",
                                   o->users[i]);
        for (size_t j = 0; j < i; j++)
            if (strcmp(o->users[i], o->users[j]) == 0)
                return usage_error("--user '%s' given twice", o->users[i]);
    }
    for (size_t i = 0; i < o->n_hosts; i++)
        if (!host_is_ip(o->hosts[i]) && !host_is_dns(o->hosts[i]))
            return usage_error("--host '%s': neither an IP address nor a DNS name",
                               esc(o->hosts[i], e, sizeof(e)));
    return 0;
}

static time_t asn1_time_to_time_t(const ASN1_TIME *t)
{
    struct tm tm;

    if (!ASN1_TIME_to_tm(t, &tm))
        return 0;
    return timegm(&tm);
}

static void format_day(time_t t, char *buf, size_t cap)
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
        if (i >= ELEMENTSOF(always) && host_is_duplicate(o, i - ELEMENTSOF(always)))
            continue;
        g = a2i_GENERAL_NAME(NULL, NULL, NULL, host_is_ip(h) ? GEN_IPADD : GEN_DNS, h, 0);
        if (!g || !sk_GENERAL_NAME_push(gens, g)) {
            GENERAL_NAME_free(g);
            return log_ssl("cannot add '%s' to subjectAltName", h);
        }
    }
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1)
        return log_ssl("cannot add subjectAltName");
    return 0;
}

struct cert_spec {
    const char *cn; /* NULL: no Common Name (--no-cn) */
    bool is_ca;
    enum leaf_kind kind; /* when !is_ca */
    time_t not_before, not_after;
};

/* Makes a certificate for key, signed by issuer_key with SHA-384; issuer NULL = self-signed. */
static int make_cert(const struct cert_spec *s, const struct certs_opts *o, EVP_PKEY *key,
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
    if (X509_sign(x, issuer_key ? issuer_key : key, EVP_sha384()) <= 0)
        return log_ssl("cannot sign the certificate");
    *ret = TAKE_PTR(x);
    return 0;
}

static int new_p384_key(EVP_PKEY **ret)
{
    EVP_PKEY *k = EVP_EC_gen("P-384");

    if (!k)
        return log_ssl("cannot generate a P-384 key");
    *ret = k;
    return 0;
}

static void out_list_free(struct out_list *l)
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

static int out_add_cert(struct out_list *l, X509 *x, const char *name, const char *what)
{
    BIO *b = BIO_new(BIO_s_mem());

    if (!b || !PEM_write_bio_X509(b, x)) {
        BIO_free(b);
        return log_ssl("cannot encode '%s'", name);
    }
    return out_add(l, b, 0644, name, what);
}

static int out_add_key(struct out_list *l, EVP_PKEY *k, const char *name, const char *what)
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
static int write_file_atomic(int dirfd, const char *dir, const char *name, const void *data,
                             size_t len, mode_t mode)
{
    _cleanup_free_ char *tmp = NULL;
    _cleanup_close_ int fd = -1;
    const char *p = data;
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
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto fail;
        }
        p += n;
        len -= (size_t)n;
    }
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

static int verify_written(int dirfd, const struct certs_opts *o)
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
static int file_exists(int dirfd, const char *dir, const char *name)
{
    struct stat st;

    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return 1;
    if (errno == ENOENT)
        return 0;
    return log_errno(-errno, "cannot look at '%s/%s'", dir, name);
}

static int open_out_dir(const char *dir, int *ret)
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
static int load_ca(int dirfd, const char *dir, X509 **ret_cert, EVP_PKEY **ret_key)
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
    if (asn1_time_to_time_t(X509_get0_notAfter(x)) <= time(NULL)) {
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
static int issue_leaf(struct out_list *files, const struct certs_opts *o, X509 *ca,
                      EVP_PKEY *ca_key, const struct cert_spec *s, const char *stem,
                      const char *alias)
{
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *k = NULL;
    _cleanup_(X509_freep) X509 *x = NULL;
    _cleanup_free_ char *cert_name = NULL, *key_name = NULL, *what = NULL, *key_what = NULL;
    char until[32];
    int r;

    if ((r = new_p384_key(&k)) < 0 || (r = make_cert(s, o, k, ca, ca_key, &x)) < 0)
        return r;
    format_day(s->not_after, until, sizeof(until));
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
    if (asprintf(&key_what, "private key of %s, P-384, mode 0600", cert_name ? cert_name : "") < 0)
        key_what = NULL;
    if (!cert_name || !key_name || !what || !key_what)
        return log_errno(-ENOMEM, "cannot issue '%s'", stem);
    if ((r = out_add_key(files, k, key_name, key_what)) < 0 ||
        (r = out_add_cert(files, x, cert_name, what)) < 0)
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
        if ((r = out_add_key(files, k, alias_key, "copy of the key above, mode 0600")) < 0 ||
            (r = out_add_cert(files, x, alias_cert, alias_what)) < 0)
            return r;
    }
    return 0;
}

static time_t clamp_to_ca(time_t t, time_t ca_not_after)
{
    return t > ca_not_after ? ca_not_after : t;
}

static int certs_run(const struct certs_opts *o)
{
    _cleanup_close_ int dirfd = -1;
    _cleanup_(X509_freep) X509 *ca = NULL;
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *ca_key = NULL;
    _cleanup_(out_list_free) struct out_list files = {.n = 0};
    time_t now = time(NULL), ca_not_after;
    bool new_ca;
    char until[32];
    int r, has_cert, has_key;

    if ((r = open_out_dir(o->out, &dirfd)) < 0)
        return r;
    if ((has_cert = file_exists(dirfd, o->out, CA_CERT)) < 0)
        return has_cert;
    if ((has_key = file_exists(dirfd, o->out, CA_KEY)) < 0)
        return has_key;
    if ((has_cert || has_key) && !o->force && !o->reuse_ca) {
        log_error("'%s/%s' exists: --reuse-ca signs with that CA, --force replaces it", o->out,
                  has_cert ? CA_CERT : CA_KEY);
        return -EEXIST;
    }
    if (!(has_cert && has_key) && o->reuse_ca) {
        log_error("no CA to reuse in '%s' (needs %s and %s): run without --reuse-ca", o->out,
                  CA_CERT, CA_KEY);
        return -ENOENT;
    }
    new_ca = !o->reuse_ca;

    if (new_ca) {
        struct cert_spec s = {.cn = "runjob root CA",
                              .is_ca = true,
                              .not_before = now - BACKDATE_SECONDS,
                              .not_after = now + o->ca_days * DAY_SECONDS};
        _cleanup_free_ char *what = NULL;
        if ((r = new_p384_key(&ca_key)) < 0 || (r = make_cert(&s, o, ca_key, NULL, NULL, &ca)) < 0)
            return r;
        format_day(s.not_after, until, sizeof(until));
        if (asprintf(&what, "root CA: CN=runjob root CA, P-384, valid until %s", until) < 0)
            return log_errno(-ENOMEM, "cannot list the CA");
        if ((r = out_add_key(&files, ca_key, CA_KEY,
                             "private key of " CA_CERT ", P-384, mode 0600")) < 0 ||
            (r = out_add_cert(&files, ca, CA_CERT, what)) < 0)
            return r;
    } else if ((r = load_ca(dirfd, o->out, &ca, &ca_key)) < 0) {
        return r;
    }
    ca_not_after = asn1_time_to_time_t(X509_get0_notAfter(ca));

    if (new_ca || (r = file_exists(dirfd, o->out, CA_BUNDLE)) == 0) {
        if ((r = out_add_cert(&files, ca, CA_BUNDLE, "CAs trusted for client certificates")) < 0)
            return r;
    } else if (r < 0) {
        return r;
    }

    if (!o->clients_only) {
        struct cert_spec s = {.cn = "localhost",
                              .kind = LEAF_SERVER,
                              .not_before = now - BACKDATE_SECONDS,
                              .not_after =
                                  clamp_to_ca(now + o->server_days * DAY_SECONDS, ca_not_after)};
        if ((r = issue_leaf(&files, o, ca, ca_key, &s, "server", NULL)) < 0)
            return r;
    }
    for (size_t i = 0; i < o->n_users; i++) {
        struct cert_spec s = {.cn = o->no_cn ? NULL : o->users[i], .kind = LEAF_CLIENT};
        bool alias = i == 0 && !o->clients_only && !o->expired && !o->no_cn;
        if (o->expired) {
            /* Ended yesterday, after being valid for --days days. */
            s.not_after = now - DAY_SECONDS;
            s.not_before = s.not_after - o->days * DAY_SECONDS;
        } else {
            s.not_before = now - BACKDATE_SECONDS;
            s.not_after = clamp_to_ca(now + o->days * DAY_SECONDS, ca_not_after);
        }
        if ((r = issue_leaf(&files, o, ca, ca_key, &s, o->users[i], alias ? "client" : NULL)) < 0)
            return r;
    }

    for (size_t i = 0; i < files.n; i++) {
        char *data;
        long len = BIO_get_mem_data(files.f[i].pem, &data);
        if (len <= 0)
            return log_errno(-EIO, "nothing to write to '%s/%s'", o->out, files.f[i].name);
        if ((r = write_file_atomic(dirfd, o->out, files.f[i].name, data, (size_t)len,
                                   files.f[i].mode)) < 0)
            return r;
    }
    if (fsync(dirfd) < 0)
        return log_errno(-errno, "cannot sync folder '%s'", o->out);

    if ((r = verify_written(dirfd, o)) < 0)
        return r;

    if (!o->quiet) {
        if (!new_ca) {
            format_day(ca_not_after, until, sizeof(until));
            printf("%s/%s: reused root CA, valid until %s\n", o->out, CA_CERT, until);
        }
        for (size_t i = 0; i < files.n; i++)
            printf("%s/%s: %s\n", o->out, files.f[i].name, files.f[i].what);
        printf("verified: keys match, every certificate written chains to the root CA%s\n",
               o->expired ? " (validity dates not checked: --expired)" : "");
    }
    return 0;
}

int applet_certs_main(int argc, char **argv)
{
    struct certs_opts o = {.out = "certs", .days = 30, .server_days = 365, .ca_days = 3650};
    int r = certs_parse_args(&o, argc, argv);

    if (r < 0)
        return 2;
    if (r > 0)
        return 0;
    return certs_run(&o) < 0 ? 1 : 0;
}
