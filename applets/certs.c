/* runjob certs: an ECDSA P-256 root CA, a server certificate and client certificates, as PEM
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
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "applets/certs-internal.h"
#include "applets/client.h"
#include "core/cleanup.h"
#include "core/log.h"

static const char *const default_users[] = {"alice", "bob", "administrator"};
/* User names that would make a file of their own kind collide with ours. */
static const char *const reserved_users[] = {"root-ca", "server", "client"};

enum {
    OPT_DAYS = CLIENT_OPT_APPLET,
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
    "Makes an ECDSA P-256 root CA, a server certificate and one client certificate per user,\n"
    "as PEM files in DIR (SHA-256 signatures, random 128-bit serials). Keys are mode 0600 and\n"
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

/* s with control bytes escaped (\\u000a), so that a hostile argument cannot split the one
 * error line; truncated to fit buf. */
static const char *esc(const char *s, char *buf, int cap)
{
    (void)log_json_escape(buf, cap, s);
    return buf;
}

static int parse_days(struct client_opts *co, const char *flag, const char *arg, long *ret)
{
    char *end, e[64];
    long v;

    errno = 0;
    v = strtol(arg, &end, 10);
    if (errno || end == arg || *end || v < 1 || v > CERTS_MAX_DAYS)
        return client_usage_error(co, "%s: '%s' is not a number of days from 1 to %ld", flag,
                                  esc(arg, e, sizeof(e)), CERTS_MAX_DAYS);
    *ret = v;
    return CLIENT_OPT_DONE;
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

bool certs_host_is_ip(const char *h)
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
bool certs_host_is_duplicate(const struct certs_opts *o, size_t i)
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

static int take_certs_flag(struct client_opts *co, int opt, const char *arg, void *ctx)
{
    struct certs_opts *o = ctx;

    switch (opt) {
    case 'o':
        if (!*arg)
            return client_usage_error(co, "--out: empty folder name");
        o->out = arg;
        return CLIENT_OPT_DONE;
    case OPT_USER:
        if (o->n_users == CERTS_MAX_NAMES)
            return client_usage_error(co, "--user: at most %d users", CERTS_MAX_NAMES);
        o->users[o->n_users++] = arg;
        return CLIENT_OPT_DONE;
    case OPT_HOST:
        if (o->n_hosts == CERTS_MAX_NAMES)
            return client_usage_error(co, "--host: at most %d hosts", CERTS_MAX_NAMES);
        o->hosts[o->n_hosts++] = arg;
        return CLIENT_OPT_DONE;
    case OPT_DAYS:
        return parse_days(co, "--days", arg, &o->days);
    case OPT_SERVER_DAYS:
        return parse_days(co, "--server-days", arg, &o->server_days);
    case OPT_CA_DAYS:
        return parse_days(co, "--ca-days", arg, &o->ca_days);
    case OPT_REUSE_CA:
        o->reuse_ca = true;
        return CLIENT_OPT_DONE;
    case OPT_CLIENTS_ONLY:
        o->clients_only = o->reuse_ca = true;
        return CLIENT_OPT_DONE;
    case 'f':
        o->force = true;
        return CLIENT_OPT_DONE;
    case 'q':
        o->quiet = true;
        return CLIENT_OPT_DONE;
    case OPT_EXPIRED:
        o->expired = true;
        return CLIENT_OPT_DONE;
    case OPT_NO_CN:
        o->no_cn = true;
        return CLIENT_OPT_DONE;
    default:
        return CLIENT_OPT_OTHER;
    }
}

/* CLIENT_OPT_DONE to go on, else the exit code: 0 after --help, 2 after a usage error
 * (reported). */
static int certs_parse_args(struct certs_opts *o, int argc, char **argv)
{
    char e[256]; /* an escaped argument, for error lines */
    struct client_opts co;
    int r;

    client_init(&co, argc, argv);
    /* Messages read "runjob certs: ...", whatever name we were called by. */
    (void)snprintf(co.prog, sizeof(co.prog), "runjob certs");
    co.verb[0] = '\0';
    co.escape = true; /* a hostile argument cannot split the one error line */
    if ((r = client_parse_flags(&co, "o:fqh", certs_longopts, certs_usage, take_certs_flag, o)) !=
        CLIENT_OPT_DONE)
        return r;
    if (optind < argc)
        return client_usage_error(&co, "unexpected argument '%s'", esc(argv[optind], e, sizeof(e)));
    if (o->force && o->reuse_ca)
        return client_usage_error(
            &co, "--force makes a new CA; it cannot go with --reuse-ca/--clients-only");
    if (o->n_users == 0) {
        for (size_t i = 0; i < ELEMENTSOF(default_users); i++)
            o->users[o->n_users++] = default_users[i];
    }
    for (size_t i = 0; i < o->n_users; i++) {
        if (!user_is_valid(o->users[i]))
            return client_usage_error(
                &co,
                "--user '%s': use 1-64 letters, digits, '.', '_', '-', starting "
                "with a letter or digit",
                esc(o->users[i], e, sizeof(e)));
        for (size_t j = 0; j < ELEMENTSOF(reserved_users); j++)
            if (strcmp(o->users[i], reserved_users[j]) == 0)
                return client_usage_error(
                    &co, "--user '%s': reserved, its files would clash with ours", o->users[i]);
        for (size_t j = 0; j < i; j++)
            if (strcmp(o->users[i], o->users[j]) == 0)
                return client_usage_error(&co, "--user '%s' given twice", o->users[i]);
    }
    for (size_t i = 0; i < o->n_hosts; i++)
        if (!certs_host_is_ip(o->hosts[i]) && !host_is_dns(o->hosts[i]))
            return client_usage_error(&co, "--host '%s': neither an IP address nor a DNS name",
                                      esc(o->hosts[i], e, sizeof(e)));
    return CLIENT_OPT_DONE;
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
    _cleanup_(certs_out_list_free) struct out_list files = {.n = 0};
    time_t now = time(NULL), ca_not_after;
    bool new_ca;
    char until[32];
    int r, has_cert, has_key;

    if ((r = certs_open_out_dir(o->out, &dirfd)) < 0)
        return r;
    if ((has_cert = certs_file_exists(dirfd, o->out, CA_CERT)) < 0)
        return has_cert;
    if ((has_key = certs_file_exists(dirfd, o->out, CA_KEY)) < 0)
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
        if ((r = certs_new_p256_key(&ca_key)) < 0 ||
            (r = certs_make_cert(&s, o, ca_key, NULL, NULL, &ca)) < 0)
            return r;
        certs_format_day(s.not_after, until, sizeof(until));
        if (asprintf(&what, "root CA: CN=runjob root CA, P-256, valid until %s", until) < 0)
            return log_errno(-ENOMEM, "cannot list the CA");
        if ((r = certs_out_add_key(&files, ca_key, CA_KEY,
                                   "private key of " CA_CERT ", P-256, mode 0600")) < 0 ||
            (r = certs_out_add_cert(&files, ca, CA_CERT, what)) < 0)
            return r;
    } else if ((r = certs_load_ca(dirfd, o->out, &ca, &ca_key)) < 0) {
        return r;
    }
    ca_not_after = certs_asn1_time_to_time_t(X509_get0_notAfter(ca));

    if (new_ca || (r = certs_file_exists(dirfd, o->out, CA_BUNDLE)) == 0) {
        if ((r = certs_out_add_cert(&files, ca, CA_BUNDLE, "CAs trusted for client certificates")) <
            0)
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
        if ((r = certs_issue_leaf(&files, o, ca, ca_key, &s, "server", NULL)) < 0)
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
        if ((r = certs_issue_leaf(&files, o, ca, ca_key, &s, o->users[i],
                                  alias ? "client" : NULL)) < 0)
            return r;
    }

    for (size_t i = 0; i < files.n; i++) {
        char *data;
        long len = BIO_get_mem_data(files.f[i].pem, &data);
        if (len <= 0)
            return log_errno(-EIO, "nothing to write to '%s/%s'", o->out, files.f[i].name);
        if ((r = certs_write_file_atomic(dirfd, o->out, files.f[i].name, data, (size_t)len,
                                         files.f[i].mode)) < 0)
            return r;
    }
    if (fsync(dirfd) < 0)
        return log_errno(-errno, "cannot sync folder '%s'", o->out);

    if ((r = certs_verify_written(dirfd, o)) < 0)
        return r;

    if (!o->quiet) {
        if (!new_ca) {
            certs_format_day(ca_not_after, until, sizeof(until));
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

    if (r != CLIENT_OPT_DONE)
        return r;
    /* A run that fails leaves no folder of its own making behind (the files are written only
     * once all is made, so such a folder is empty: rmdir removes nothing else). */
    struct stat st;
    bool existed = lstat(o.out, &st) == 0;
    if (certs_run(&o) < 0) {
        if (!existed)
            (void)rmdir(o.out);
        return 1;
    }
    return 0;
}
