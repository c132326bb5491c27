#!/bin/sh
# An `openssl` for testssl.sh 3.0 (Debian 12), which has no --mtls: every `s_client` gets the
# client certificate and key in RJ_MTLS_CERT / RJ_MTLS_KEY, so that testssl's OpenSSL-based
# checks complete the mutual-TLS handshake. Everything else goes to the real openssl
# (RJ_MTLS_OPENSSL, default: the one on PATH). Used by test/tls/run.sh via `testssl --openssl`.
real=${RJ_MTLS_OPENSSL:-openssl}
if [ "${1:-}" = s_client ]; then
    if [ ! -r "${RJ_MTLS_CERT:-}" ] || [ ! -r "${RJ_MTLS_KEY:-}" ]; then
        echo "openssl-mtls.sh: RJ_MTLS_CERT and RJ_MTLS_KEY must name readable files" >&2
        exit 1
    fi
    shift
    exec "$real" s_client -cert "$RJ_MTLS_CERT" -key "$RJ_MTLS_KEY" "$@"
fi
exec "$real" "$@"
