/* Failed client calls in plain words: the transport's own text (status details, error_string)
 * matched for the failures people actually hit. Pure: unit-tested with the strings gRPC 1.51
 * really produces. */
#include "rpc-client-internal.h"

#include <stdio.h>
#include <string.h>

#define MAX_RECV_BYTES (16 << 20)
/* A TLS rejection comes back within a round trip; gRPC gives up on a handshake nobody answers
 * only after its 20 s connect timeout. Anything this slow was silence, not a refusal. */
#define SILENT_AFTER_MS 10000
/* A server closes a connection whose TLS handshake it has not finished within
 * RPC_HANDSHAKE_MAX_MS: a close near that long was a busy server, not a rejected certificate. */
#define HANDSHAKE_CUT_MS (RPC_HANDSHAKE_MAX_MS * 9 / 10)

static bool has(const char *hay1, const char *hay2, const char *needle)
{
    return (hay1 && strcasestr(hay1, needle)) || (hay2 && strcasestr(hay2, needle));
}

/* Turns a failed call's status into one line for a person. The transport's own words
 * (details, error_string) are matched for the failures people actually hit. */
void rpc_client_describe(const struct rpc_peer *c, int code, const char *details,
                         const char *error_string, const struct rpc_call_facts *f,
                         struct rpc_error *err)
{
    const char *d = details && *details ? details : NULL;
    bool closed;

    if (code == RPC_UNAVAILABLE && f->answered) {
        /* The server had already answered on this call: the certificates were fine, and the
         * connection broke under a working call. */
        rpc_error_set(err, code,
                      "%s closed the connection in the middle of the call (did the server stop "
                      "or restart?): %s",
                      c->where, d ? d : "unavailable");
        return;
    }
    if (code == RPC_UNAVAILABLE || code == RPC_UNKNOWN || code == RPC_INTERNAL) {
        if (has(d, error_string, "Connection refused")) {
            rpc_error_set(err, code,
                          "cannot connect to %s: connection refused — is `runjob serve` running?",
                          c->where);
            return;
        }
        if (has(d, error_string, "not in peer certificate") || has(d, error_string, "Peer name")) {
            rpc_error_set(err, code,
                          "server name mismatch: the server's certificate is not issued for '%s' "
                          "(dial the name or address it was made for)",
                          c->host);
            return;
        }
        if (has(d, error_string, "certificate verify failed")) {
            rpc_error_set(err, code,
                          "rejected the server's certificate: it is not signed by the CA in '%s'",
                          c->ca_path);
            return;
        }
        if (has(d, error_string, "alert unknown ca") ||
            has(d, error_string, "alert bad certificate") ||
            has(d, error_string, "alert certificate required") ||
            has(d, error_string, "certificate unknown") ||
            has(d, error_string, "alert decrypt error")) {
            rpc_error_set(err, code,
                          "the server rejected our client certificate '%s' (is it signed by a CA "
                          "the server trusts?)",
                          c->cert_path);
            return;
        }
        if (has(d, error_string, "protocol version") ||
            has(d, error_string, "unsupported protocol")) {
            rpc_error_set(err, code,
                          "TLS handshake with %s failed: the other side does not speak "
                          "TLS 1.3",
                          c->where);
            return;
        }
        if (has(d, error_string, "DNS resolution failed") ||
            has(d, error_string, "Domain name not found") ||
            has(d, error_string, "name resolution")) {
            rpc_error_set(err, code, "cannot resolve the server host '%s'", c->host);
            return;
        }
        if (has(d, error_string, "No route to host") ||
            has(d, error_string, "Network is unreachable")) {
            rpc_error_set(err, code, "cannot connect to %s: no route to host", c->where);
            return;
        }
        if (has(d, error_string, "before receiving SETTINGS")) {
            rpc_error_set(
                err, code,
                "connected to %s, but it does not answer as a runjob server (wrong port?)",
                c->where);
            return;
        }
        if (f->elapsed_ms >= SILENT_AFTER_MS && (has(d, error_string, "Handshake read failed") ||
                                                 has(d, error_string, "Handshake timed out"))) {
            rpc_error_set(err, code,
                          "%s did not answer within %lld s (is the server running and "
                          "responsive?)",
                          c->where, (long long)(f->elapsed_ms / 1000));
            return;
        }
        closed = has(d, error_string, "Socket closed") || has(d, error_string, "Connection reset");
        if (closed && f->elapsed_ms >= HANDSHAKE_CUT_MS) {
            rpc_error_set(err, code,
                          "%s closed the connection after %lld s without finishing the TLS "
                          "handshake (a server gives a handshake %d s: is it overloaded?)",
                          c->where, (long long)(f->elapsed_ms / 1000), RPC_HANDSHAKE_MAX_MS / 1000);
            return;
        }
        if (closed) {
            rpc_error_set(err, code,
                          "%s closed the connection (did it reject our certificate '%s'?)",
                          c->where, c->cert_path);
            return;
        }
        if (has(d, error_string, "Handshake failed") || has(d, error_string, "handshake")) {
            rpc_error_set(err, code, "TLS handshake with %s failed (wrong certificates?)",
                          c->where);
            return;
        }
        if (code == RPC_UNAVAILABLE) {
            rpc_error_set(err, code, "cannot reach %s: %s", c->where, d ? d : "unavailable");
            return;
        }
    }
    if (code == RPC_DEADLINE_EXCEEDED) {
        rpc_error_set(err, code, "no answer from %s within %lld ms (deadline exceeded)", c->where,
                      (long long)f->deadline_ms);
        return;
    }
    if (code == RPC_CANCELLED && !d) {
        rpc_error_set(err, code, "cancelled");
        return;
    }
    if (code == RPC_RESOURCE_EXHAUSTED && has(d, NULL, "larger than max")) {
        /* "Received message larger than max (SIZE vs. LIMIT)": our own receive limit, or the
         * server's refusing our request (its limit is another number). */
        unsigned long long size = 0, limit = 0;
        const char *p = strcasestr(d, "larger than max (");
        if (p && sscanf(p, "larger than max (%llu vs. %llu)", &size, &limit) == 2 &&
            limit != MAX_RECV_BYTES) {
            rpc_error_set(
                err, code,
                "the request is %llu bytes, more than the server accepts (%llu): too many "
                "or too long arguments",
                size, limit);
            return;
        }
        rpc_error_set(err, code, "the server sent a message larger than %d bytes", MAX_RECV_BYTES);
        return;
    }
    rpc_error_set(err, code, "%s", d ? d : rpc_code_name(code));
}
