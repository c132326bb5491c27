#pragma once
/* TLS for runjob: credentials, TLS 1.3-only enforcement in the OpenSSL layer, peer identity.
 * The only core module that includes OpenSSL headers. (Owned by the service work, issue 4.) */

/* OpenSSL's version string, e.g. "OpenSSL 3.0.19 27 Jan 2026". Static string. */
const char *tls_openssl_version(void);
