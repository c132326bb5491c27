#pragma once
/* Shared by the TLS 1.3 enforcement layers (core/tls-wrap.c, core/tls-interpose.c): the one
 * rule both apply to OpenSSL's SSL_CTX_ctrl / SSL_ctrl calls, and the mode every context
 * gets. Not a public header. */
#include <openssl/ssl.h>
#include <openssl/tls1.h>

/* Mode bits every context gets (SSL_CTRL_MODE ORs them in). SSL_MODE_RELEASE_BUFFERS: a
 * connection's 17 KiB record buffers are freed while it has nothing in them, instead of
 * kept for its life. A server with 100 readers keeps most connections waiting (for their
 * turn, or for output): ~30 KiB of RSS per connection less, measured with `make bench`. */
#define TLS_CTX_MODE SSL_MODE_RELEASE_BUFFERS

/* The larg to pass on for an SSL_CTX_ctrl/SSL_ctrl call: a minimum protocol version below
 * TLS 1.3 (0 means "lowest supported") is raised to TLS 1.3, and a maximum below TLS 1.3 is
 * raised to TLS 1.3 too, so that nobody (gRPC sets min 1.2 on every context it makes) can
 * re-open TLS 1.2. DTLS version numbers (0xfeff..) are above TLS1_3_VERSION and pass. */
static inline long tls13_fix_ctrl(int cmd, long larg)
{
    if (cmd == SSL_CTRL_SET_MIN_PROTO_VERSION && larg < TLS1_3_VERSION)
        return TLS1_3_VERSION;
    if (cmd == SSL_CTRL_SET_MAX_PROTO_VERSION && larg != 0 && larg < TLS1_3_VERSION)
        return TLS1_3_VERSION;
    return larg;
}

/* ---- refused handshakes (core/tls-refusal.c; core/tls.h "Refused handshakes") ---------- */

typedef int (*tls_handshake_fn)(SSL *ssl);
typedef int (*tls_shutdown_fn)(int fd, int how);

/* SSL_do_handshake under both layers; real is OpenSSL's. A server-side handshake that fails
 * leaves its reason pending on the calling thread for tls_refusal_shutdown. Keeps errno and
 * OpenSSL's error queue as real left them. */
int tls_refusal_handshake(tls_handshake_fn real, SSL *ssl);
/* shutdown(2) under the static binary's --wrap and the dynamic runjob's interposer
 * (core/tls-peer-interpose.c); real is the C library's or the system call. With a refusal
 * pending on this thread, logs it with fd's peer address first. */
int tls_refusal_shutdown(tls_shutdown_fn real, int fd, int how);
/* The reason a failed server-side handshake gives, in words for the log ("no client
 * certificate", "client certificate expired (CN 'alice', expired 2026-11-02)"), read from ssl
 * and OpenSSL's error queue right after SSL_do_handshake failed with SSL_ERROR_SSL. Leaves
 * the error queue as it was. */
void tls_refusal_reason(SSL *ssl, char *buf, size_t len);
