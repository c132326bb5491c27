#include "tls.h"

#include <openssl/crypto.h>

const char *tls_openssl_version(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}
