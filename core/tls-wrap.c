/* The OpenSSL layers for the static binary (see core/tls.h): TLS 1.3-only enforcement and the
 * refused handshakes' log. The link of bin/runjob passes -Wl,--wrap=SSL_CTX_new,
 * --wrap=SSL_CTX_ctrl,--wrap=SSL_ctrl,--wrap=SSL_do_handshake,--wrap=shutdown, which sends
 * every call (ours, gRPC's, OpenSSL's own from other objects) to the functions below; __real_*
 * are the OpenSSL and C library originals. Dynamic links never reference __wrap_*, so this
 * object is not pulled from libcore.a there (it would not link: __real_* exist only under
 * --wrap). */
#include <openssl/ssl.h>

#include "tls-internal.h"

SSL_CTX *__real_SSL_CTX_new(const SSL_METHOD *meth);
long __real_SSL_CTX_ctrl(SSL_CTX *ctx, int cmd, long larg, void *parg);
long __real_SSL_ctrl(SSL *s, int cmd, long larg, void *parg);
int __real_SSL_do_handshake(SSL *s);
int __real_shutdown(int fd, int how);
SSL_CTX *__wrap_SSL_CTX_new(const SSL_METHOD *meth);
long __wrap_SSL_CTX_ctrl(SSL_CTX *ctx, int cmd, long larg, void *parg);
long __wrap_SSL_ctrl(SSL *s, int cmd, long larg, void *parg);
int __wrap_SSL_do_handshake(SSL *s);
int __wrap_shutdown(int fd, int how);

SSL_CTX *__wrap_SSL_CTX_new(const SSL_METHOD *meth)
{
    SSL_CTX *ctx = __real_SSL_CTX_new(meth);

    /* Fail closed: a context we cannot restrict is not handed out. */
    if (ctx &&
        __real_SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_3_VERSION, NULL) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (ctx)
        (void)__real_SSL_CTX_ctrl(ctx, SSL_CTRL_MODE, TLS_CTX_MODE, NULL);
    return ctx;
}

long __wrap_SSL_CTX_ctrl(SSL_CTX *ctx, int cmd, long larg, void *parg)
{
    return __real_SSL_CTX_ctrl(ctx, cmd, tls13_fix_ctrl(cmd, larg), parg);
}

long __wrap_SSL_ctrl(SSL *s, int cmd, long larg, void *parg)
{
    return __real_SSL_ctrl(s, cmd, tls13_fix_ctrl(cmd, larg), parg);
}

int __wrap_SSL_do_handshake(SSL *s)
{
    return tls_refusal_handshake(__real_SSL_do_handshake, s);
}

int __wrap_shutdown(int fd, int how)
{
    return tls_refusal_shutdown(__real_shutdown, fd, how);
}
