/* The OpenSSL layers for dynamic links (tests, ASan/TSan builds; see core/tls.h): TLS 1.3-only
 * enforcement, and SSL_do_handshake for the refused handshakes' log (its other half, shutdown,
 * is core/tls-peer-interpose.c, in the dynamic runjob only). These definitions are weak: in the
 * static link libssl.a's strong ones win (no duplicate definition) and --wrap (core/tls-wrap.c)
 * does the job. In a dynamic executable linked with -rdynamic they are exported, so libgrpc.so's
 * calls bind to them, and we forward to the next definition (libssl.so.3) found with
 * dlvsym(RTLD_NEXT, ..., "OPENSSL_3.0.0"). core/tls.c calls SSL_CTX_new, which is what pulls this
 * object out of libcore.a. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

#include <openssl/ssl.h>

#include "tls-internal.h"

#define WEAK __attribute__((weak))

WEAK SSL_CTX *SSL_CTX_new(const SSL_METHOD *meth);
WEAK long SSL_CTX_ctrl(SSL_CTX *ctx, int cmd, long larg, void *parg);
WEAK long SSL_ctrl(SSL *s, int cmd, long larg, void *parg);
WEAK int SSL_do_handshake(SSL *s);

struct real_ssl {
    SSL_CTX *(*ctx_new)(const SSL_METHOD *);
    long (*ctx_ctrl)(SSL_CTX *, int, long, void *);
    long (*ctrl)(SSL *, int, long, void *);
    int (*do_handshake)(SSL *);
};

static struct real_ssl real;
static pthread_once_t real_once = PTHREAD_ONCE_INIT;

static void *next_symbol(const char *name)
{
    void *p = dlvsym(RTLD_NEXT, name, "OPENSSL_3.0.0");

    if (!p)
        p = dlsym(RTLD_NEXT, name);
    /* No OpenSSL behind us: calling ourselves would recurse forever; stop instead. */
    if (!p)
        abort();
    return p;
}

static void resolve_real(void)
{
    /* Set once before any use; pthread_once publishes the stores to every caller. */
    real.ctx_new = (SSL_CTX * (*)(const SSL_METHOD *)) next_symbol("SSL_CTX_new");
    real.ctx_ctrl = (long (*)(SSL_CTX *, int, long, void *))next_symbol("SSL_CTX_ctrl");
    real.ctrl = (long (*)(SSL *, int, long, void *))next_symbol("SSL_ctrl");
    real.do_handshake = (int (*)(SSL *))next_symbol("SSL_do_handshake");
}

SSL_CTX *SSL_CTX_new(const SSL_METHOD *meth)
{
    SSL_CTX *ctx;

    (void)pthread_once(&real_once, resolve_real);
    ctx = real.ctx_new(meth);
    if (ctx && real.ctx_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_3_VERSION, NULL) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (ctx)
        (void)real.ctx_ctrl(ctx, SSL_CTRL_MODE, TLS_CTX_MODE, NULL);
    return ctx;
}

long SSL_CTX_ctrl(SSL_CTX *ctx, int cmd, long larg, void *parg)
{
    (void)pthread_once(&real_once, resolve_real);
    return real.ctx_ctrl(ctx, cmd, tls13_fix_ctrl(cmd, larg), parg);
}

long SSL_ctrl(SSL *s, int cmd, long larg, void *parg)
{
    (void)pthread_once(&real_once, resolve_real);
    return real.ctrl(s, cmd, tls13_fix_ctrl(cmd, larg), parg);
}

int SSL_do_handshake(SSL *s)
{
    (void)pthread_once(&real_once, resolve_real);
    return tls_refusal_handshake(real.do_handshake, s);
}
