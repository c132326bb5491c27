#pragma once
/* Shared by core/rpc-client*.c and their unit test; not for applets. */
#include <stdint.h>

#include "rpc.h"

/* What an error message says about the other side. */
struct rpc_peer {
    char where[300]; /* "HOST:PORT" */
    char host[256];
    char ca_path[1024];
    char cert_path[1024];
};

/* Fills err with one line for a person for a failed call: code is the gRPC status, details and
 * error_string what gRPC reported (either may be NULL), deadline_ms the call's deadline. Pure,
 * thread-safe. */
void rpc_client_describe(const struct rpc_peer *c, int code, const char *details,
                         const char *error_string, int64_t deadline_ms, struct rpc_error *err);
