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
