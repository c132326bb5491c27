#pragma once
/* TLS for runjob: credentials, TLS 1.3-only enforcement in the OpenSSL layer, peer identity.
 * The only core module that includes OpenSSL headers.
 *
 * TLS 1.3 only, three layers (gRPC 1.51 has no C API for a minimum version and lowers every
 * SSL_CTX to TLS 1.2 itself):
 *   1. core/tls-wrap.c: __wrap_SSL_CTX_new/__wrap_SSL_CTX_ctrl/__wrap_SSL_ctrl for the static
 *      binary, linked with -Wl,--wrap=... (Makefile TLS_WRAP). Pulled in only by that link.
 *   2. core/tls-interpose.c: weak SSL_CTX_new/SSL_CTX_ctrl/SSL_ctrl for dynamic links
 *      (-rdynamic exports them, so libgrpc.so binds to ours; we forward with
 *      dlvsym(RTLD_NEXT)). In the static link libssl.a's strong definitions win and the
 *      --wrap layer does the job.
 *   Both: a new SSL_CTX starts at TLS 1.3; any attempt to set a lower minimum (or a maximum
 *   below 1.3) is raised to TLS 1.3.
 *   3. tls_init(): loads "Protocol = -ALL, TLSv1.3" and the three TLS 1.3 suites as OpenSSL's
 *      system default from code (the system openssl.cnf and $OPENSSL_CONF are not read), then
 *      tls_probe() checks, on a fresh SSL_CTX, that TLS 1.2 is really off.
 *
 * Refused handshakes (core/tls-refusal.c): the server logs each handshake it refuses, one
 * warning from core/log with the client's address and the reason, e.g.
 *   tls: refused handshake from 127.0.0.1:51234: client certificate expired (CN 'alice',
 *   expired 2026-11-02)
 * ("certificate signed by an unknown CA (...)", "no client certificate", "protocol version
 * TLS 1.2 refused", or OpenSSL's reason). Successful handshakes leave no line. The same two
 * layers put SSL_do_handshake and shutdown(2) under us (the static binary: --wrap in
 * core/tls-wrap.c; a dynamic runjob: core/tls-interpose.c and core/tls-peer-interpose.c): a
 * server-side handshake that fails leaves its reason on the thread, and the shutdown of the
 * connection's socket that gRPC makes next on that thread logs it with the socket's peer
 * address. At most 10 such lines a second; the rest are counted, and the count is logged with
 * the next refusal after the second, or by tls_refusals_flush. A dynamic program other than
 * runjob (a test) has no shutdown hook: its refusals are logged from "an unknown address", at
 * the thread's next handshake. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The TLS 1.3 suites we allow, in the server's preference order (OpenSSL names, ':'
 * separated). AES-128-GCM first: the certificates (P-256) and the key exchange give a
 * connection 128-bit strength, which AES-256's four more rounds do not raise; they cost 12%
 * more crypto time (`openssl speed`: 3.2 vs 3.6 GB/s on AMD EPYC). The server's order wins
 * over the client's (ServerPreference in core/tls.c): OpenSSL's clients list AES-256 first. */
#define TLS_CIPHERSUITES                                                                           \
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

/* OpenSSL's version string, e.g. "OpenSSL 3.0.19 27 Jan 2026". Static string. */
const char *tls_openssl_version(void);

/* What a probe SSL_CTX shows (see tls_probe). */
struct tls_probe_result {
    bool config_no_tls12;      /* SSL_OP_NO_TLSv1_2 set by the loaded config */
    bool min_is_tls13;         /* a new SSL_CTX starts at min TLS 1.3 (wrap/interposer) */
    bool lowering_refused;     /* set_min_proto_version(TLS1_2) leaves the minimum at TLS 1.3 */
    bool ssl_lowering_refused; /* the same on an SSL object (SSL_ctrl) */
};

/* Turns off OpenSSL's exit-time cleanup (OPENSSL_cleanup from atexit) and its reading of a
 * config file (openssl.cnf, $OPENSSL_CONF) for this process; call it before any other OpenSSL
 * use (later it changes nothing). gRPC's EventEngine threads are
 * detached and may still be exiting when the process exits: the cleanup deletes OpenSSL's
 * thread-local keys under them, so such a thread never frees its error queue and DRBG (a leak
 * LeakSanitizer reports), and OpenSSL does not support cleanup while other threads may use it.
 * Exiting frees everything anyway. 0, or -ENOMEM. Idempotent. */
int tls_process_init(void);

/* Loads the TLS 1.3-only OpenSSL configuration and checks it with tls_probe(). Call once,
 * before grpc_init() and before any other OpenSSL use, from one thread. 0, or -EPROTO when the
 * probe shows TLS 1.2 still possible (fail closed), -ENOMEM, -EINVAL (config not loaded). */
int tls_init(void);

/* Logs how many refused handshakes the rate limit kept out of the log since it last said so,
 * if any (see "Refused handshakes" above). For the server's shutdown. Thread-safe. */
void tls_refusals_flush(void);

/* Makes a throwaway SSL_CTX and SSL and reports what they allow. 0 or -ENOMEM. Thread-safe. */
int tls_probe(struct tls_probe_result *ret);
/* true when every field of the probe shows TLS 1.3 only. */
bool tls_probe_ok(const struct tls_probe_result *p);

/* Reads a PEM file (certificate, bundle or key) into a NUL-terminated malloc'd string.
 * 0, -errno from open/read, -EBADMSG when it holds no PEM block, -EFBIG past 1 MiB. */
int tls_read_pem(const char *path, char **ret_pem);

/* Checks a certificate chain and key pair (PEM): both parse and the key matches the first
 * certificate. 0, -EBADMSG (unparsable), -EKEYREJECTED (key does not match). */
int tls_check_key_pair(const char *cert_pem, const char *key_pem);
/* Counts the certificates in a CA bundle (PEM). >0, or -EBADMSG when there is none. */
int tls_count_certs(const char *bundle_pem);
/* Counts the Common Names in the subject of the first certificate of pem (len bytes, no NUL
 * needed), every RDN and every multi-valued one included. >=0, -EBADMSG when pem holds no
 * certificate, -ENOMEM. Thread-safe. */
int tls_subject_cn_count(const char *pem, size_t len);
/* The validity period of the first certificate in pem (NUL-terminated): notBefore and notAfter
 * in seconds since the epoch, UTC. 0, -EBADMSG when pem holds no certificate or its dates do
 * not read, -ENOMEM. Thread-safe. */
int tls_cert_dates(const char *pem, int64_t *ret_not_before, int64_t *ret_not_after);
