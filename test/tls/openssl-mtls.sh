#!/bin/sh
# The `openssl` that test/tls/run.sh gives testssl.sh (--openssl): every `s_client` gets
#  * the client certificate and key in RJ_MTLS_CERT / RJ_MTLS_KEY, so that testssl's
#    OpenSSL-based checks complete the mutual-TLS handshake (testssl 3.0 in Debian 12 has no
#    --mtls), and
#  * ALPN h2 unless testssl asks for its own -alpn: the gRPC server drops a connection that did
#    not negotiate h2 right after the handshake, without close_notify; s_client then often
#    exits 1 ("unexpected eof"), which testssl counts as a failed TLS 1.3 connection.
# Everything else goes to the real openssl (RJ_MTLS_OPENSSL, default: the one on PATH).
real=${RJ_MTLS_OPENSSL:-openssl}
if [ "${1:-}" = s_client ]; then
    if [ ! -r "${RJ_MTLS_CERT:-}" ] || [ ! -r "${RJ_MTLS_KEY:-}" ]; then
        echo "openssl-mtls.sh: RJ_MTLS_CERT and RJ_MTLS_KEY must name readable files" >&2
        exit 1
    fi
    shift
    case " $* " in
    *" -alpn "* | *" -nextprotoneg "*) set -- -cert "$RJ_MTLS_CERT" -key "$RJ_MTLS_KEY" "$@" ;;
    *) set -- -cert "$RJ_MTLS_CERT" -key "$RJ_MTLS_KEY" -alpn h2 "$@" ;;
    esac
    exec "$real" s_client "$@"
fi
exec "$real" "$@"
