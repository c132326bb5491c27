/* Refused handshakes in the server's log (see core/tls.h "Refused handshakes"): the reason,
 * read from OpenSSL right after the failed SSL_do_handshake, and the peer's address, read from
 * the socket that gRPC shuts down next on the same thread. */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "clock.h"
#include "log.h"
#include "tls-internal.h"
#include "tls.h"

/* Lines a second at most; the rest are counted and said in one line. A client retrying with
 * a bad certificate fails a handshake a second or less (gRPC's reconnect backoff starts at
 * 1 s), so ten clients misconfigured at once still get a line each. */
#define REFUSAL_LINES_PER_SEC 10
#define CN_MAX                64 /* ub-common-name: longer ones are cut */

/* The refusal this thread's last SSL_do_handshake left, until the connection's socket is shut
 * down. gRPC's security handshaker (1.51) runs the TSI step that calls SSL_do_handshake and,
 * when it fails, shuts the endpoint down (grpc_endpoint_shutdown, then shutdown(fd,
 * SHUT_RDWR)) in one call, on one thread, under the handshaker's lock
 * (SecurityHandshaker::OnHandshakeDataReceivedFromPeerFn -> HandshakeFailedLocked, seen with
 * gdb on the static binary): the next shutdown on this thread is that connection's. The
 * handshake's SSL object reads and writes BIO pairs, never the socket, so the socket is where
 * the address is. A process-global by nature (docs/STYLE.md "Globals"), one per thread. */
static __thread struct {
    bool set;
    char reason[320];
} pending;

/* The rate limit, shared by every thread. */
static pthread_mutex_t limit_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t window_start_ms = INT64_MIN / 2; /* under limit_mu, as are the two below */
static unsigned window_lines;
static uint64_t not_logged; /* since the last line that said so */

static void say_not_logged(uint64_t n)
{
    if (n)
        log_warn("tls: %llu more refused handshake(s) not logged (%d lines a second at most)",
                 (unsigned long long)n, REFUSAL_LINES_PER_SEC);
}

static void report(const char *peer, const char *reason)
{
    int64_t now = clock_ms(CLOCK_MONOTONIC);
    uint64_t carried = 0;
    bool line;

    (void)pthread_mutex_lock(&limit_mu);
    if (now - window_start_ms >= 1000) {
        window_start_ms = now;
        window_lines = 0;
        carried = not_logged;
        not_logged = 0;
    }
    line = window_lines < REFUSAL_LINES_PER_SEC;
    if (line)
        window_lines++;
    else
        not_logged++;
    (void)pthread_mutex_unlock(&limit_mu);
    say_not_logged(carried);
    if (line)
        log_warn("tls: refused handshake from %s: %s", peer, reason);
}

void tls_refusals_flush(void)
{
    uint64_t n;

    (void)pthread_mutex_lock(&limit_mu);
    n = not_logged;
    not_logged = 0;
    (void)pthread_mutex_unlock(&limit_mu);
    say_not_logged(n);
}

/* ---- the reason ------------------------------------------------------------------------ */

/* The first Common Name of name for the log, "" when it has none. A client chose it: only
 * printable ASCII is kept (anything else, and the quote around it, shows as '?'), so that
 * it cannot forge or break a line, cut at CN_MAX. */
static void name_cn(const X509_NAME *name, char *buf, size_t len)
{
    int i = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
    const ASN1_STRING *s;
    const unsigned char *d;
    size_t n = 0;

    buf[0] = '\0';
    if (i < 0)
        return;
    s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    d = ASN1_STRING_get0_data(s);
    for (int k = 0; d && k < ASN1_STRING_length(s) && k < CN_MAX && n + 1 < len; k++)
        buf[n++] = d[k] >= 0x20 && d[k] < 0x7f && d[k] != '\'' ? (char)d[k] : '?';
    buf[n] = '\0';
}

/* A certificate time as YYYY-MM-DD (UTC). */
static void day(const ASN1_TIME *t, char *buf, size_t len)
{
    struct tm tm;

    if (!t || ASN1_TIME_to_tm(t, &tm) != 1 || strftime(buf, len, "%Y-%m-%d", &tm) == 0)
        (void)snprintf(buf, len, "an unreadable date");
}

static const char *version_name(int v)
{
    switch (v) {
    case SSL3_VERSION:
        return "SSL 3.0";
    case TLS1_VERSION:
        return "TLS 1.0";
    case TLS1_1_VERSION:
        return "TLS 1.1";
    case TLS1_2_VERSION:
        return "TLS 1.2";
    default:
        return NULL;
    }
}

static bool is_unknown_ca(long v)
{
    return v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
           v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
           v == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE ||
           v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT || v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN;
}

/* A certificate that verification refused: what was wrong with it, from the chain OpenSSL
 * built. SSL_get0_verified_chain holds that chain after a failure too (ssl_verify_cert_chain
 * keeps X509_STORE_CTX's chain whatever the result), the client's certificate first; OpenSSL
 * says it may be incomplete then, so every part is optional. */
static void verify_reason(SSL *ssl, char *buf, size_t len)
{
    STACK_OF(X509) *chain = SSL_get0_verified_chain(ssl);
    int n = chain ? sk_X509_num(chain) : 0;
    X509 *leaf = n > 0 ? sk_X509_value(chain, 0) : NULL;
    long v = SSL_get_verify_result(ssl);
    char cn[CN_MAX + 1] = "", other[CN_MAX + 1] = "", when[32];

    if (leaf)
        name_cn(X509_get_subject_name(leaf), cn, sizeof(cn));
    if (v == X509_V_ERR_CERT_HAS_EXPIRED) {
        /* The client's certificate, or a CA certificate above it: the first one past its
         * notAfter says which. */
        for (int i = 0; i < n; i++) {
            X509 *x = sk_X509_value(chain, i);
            if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
                name_cn(X509_get_subject_name(x), other, sizeof(other));
                day(X509_get0_notAfter(x), when, sizeof(when));
                (void)snprintf(buf, len, "%s expired (CN '%s', expired %s)",
                               i == 0 ? "client certificate" : "issuing CA certificate", other,
                               when);
                return;
            }
        }
    } else if (v == X509_V_ERR_CERT_NOT_YET_VALID && leaf) {
        day(X509_get0_notBefore(leaf), when, sizeof(when));
        (void)snprintf(buf, len, "client certificate not valid yet (CN '%s', valid from %s)", cn,
                       when);
        return;
    } else if (is_unknown_ca(v)) {
        if (!leaf) {
            (void)snprintf(buf, len, "certificate signed by an unknown CA");
            return;
        }
        name_cn(X509_get_issuer_name(leaf), other, sizeof(other));
        (void)snprintf(buf, len, "certificate signed by an unknown CA (CN '%s', issuer CN '%s')",
                       cn, other);
        return;
    }
    if (leaf)
        (void)snprintf(buf, len, "client certificate refused: %s (CN '%s')",
                       X509_verify_cert_error_string(v), cn);
    else
        (void)snprintf(buf, len, "client certificate refused: %s",
                       X509_verify_cert_error_string(v));
}

void tls_refusal_reason(SSL *ssl, char *buf, size_t len)
{
    /* The error that ended the handshake is the last one OpenSSL raised (SSLfatal); earlier
     * ones may be left over in this thread's queue. */
    unsigned long e = ERR_peek_last_error();
    const char *what;

    (void)ERR_set_mark();
    if (ERR_GET_LIB(e) != ERR_LIB_SSL) {
        what = ERR_reason_error_string(e);
        (void)snprintf(buf, len, "%s", what ? what : "an OpenSSL error");
    } else {
        switch (ERR_GET_REASON(e)) {
        case SSL_R_CERTIFICATE_VERIFY_FAILED:
            verify_reason(ssl, buf, len);
            break;
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
            (void)snprintf(buf, len, "no client certificate");
            break;
        case SSL_R_UNSUPPORTED_PROTOCOL:
        case SSL_R_VERSION_TOO_LOW:
            /* The ClientHello's legacy_version: what a client that cannot do TLS 1.3 asks. */
            what = version_name(SSL_client_version(ssl));
            if (what)
                (void)snprintf(buf, len, "protocol version %s refused", what);
            else
                (void)snprintf(buf, len, "protocol version 0x%04x refused",
                               (unsigned)SSL_client_version(ssl));
            break;
        case SSL_R_NO_SHARED_CIPHER:
            (void)snprintf(buf, len, "no cipher suite in common");
            break;
        case SSL_R_HTTP_REQUEST:
        case SSL_R_HTTPS_PROXY_REQUEST:
            (void)snprintf(buf, len, "not TLS: an HTTP request");
            break;
        default:
            what = ERR_reason_error_string(e);
            (void)snprintf(buf, len, "%s", what ? what : "an OpenSSL error");
            break;
        }
    }
    (void)ERR_pop_to_mark();
}

/* ---- the peer -------------------------------------------------------------------------- */

/* fd's peer as "127.0.0.1:51234" or "[::1]:51234". */
static void peer_address(int fd, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN];

    /* getpeername fails with ENOTCONN once the peer has reset the connection (the socket is in
     * CLOSE by then, as after a client that sends its hello and resets at once); SO_PEERNAME
     * still reads the address it was connected to, given exactly the size of its family's
     * address (it refuses a larger buffer). The local address has the same family. */
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0) {
        sl = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
            sl = 0;
        else if (ss.ss_family == AF_INET)
            sl = sizeof(struct sockaddr_in);
        else if (ss.ss_family == AF_INET6)
            sl = sizeof(struct sockaddr_in6);
        else
            sl = 0;
        if (sl == 0 || getsockopt(fd, SOL_SOCKET, SO_PEERNAME, &ss, &sl) < 0) {
            (void)snprintf(buf, len, "an unknown address");
            return;
        }
    }
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        (void)inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        (void)snprintf(buf, len, "%s:%u", host, ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        /* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: shown as IPv4. */
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
            (void)inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], host, sizeof(host));
            (void)snprintf(buf, len, "%s:%u", host, ntohs(a->sin6_port));
        } else {
            (void)inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
            (void)snprintf(buf, len, "[%s]:%u", host, ntohs(a->sin6_port));
        }
    } else {
        (void)snprintf(buf, len, "a local socket");
    }
}

/* ---- the two hooks --------------------------------------------------------------------- */

int tls_refusal_handshake(tls_handshake_fn real, SSL *ssl)
{
    int r, e;

    /* A refusal no shutdown followed on this thread (not gRPC's way, see pending): its address
     * is lost, but not the line. */
    if (pending.set) {
        pending.set = false;
        report("an unknown address", pending.reason);
    }
    r = real(ssl);
    if (r > 0 || !SSL_is_server(ssl))
        return r;
    e = errno;
    if (SSL_get_error(ssl, r) == SSL_ERROR_SSL) {
        tls_refusal_reason(ssl, pending.reason, sizeof(pending.reason));
        pending.set = true;
    }
    errno = e;
    return r;
}

int tls_refusal_shutdown(tls_shutdown_fn real, int fd, int how)
{
    if (pending.set) {
        char peer[INET6_ADDRSTRLEN + 16];
        int e = errno;

        pending.set = false;
        peer_address(fd, peer, sizeof(peer));
        report(peer, pending.reason);
        errno = e;
    }
    return real(fd, how);
}
