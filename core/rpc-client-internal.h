#pragma once
/* Shared by core/rpc-client*.c and their unit test; not for applets. */
#include <stdbool.h>
#include <stdint.h>

#include "rpc.h"

/* What an error message says about the other side. */
struct rpc_peer {
    char where[300]; /* "HOST:PORT" */
    char host[256];
    char ca_path[1024];
    char cert_path[1024];
    char key_path[1024];
};

/* What the client saw of a failed call besides its status: the same words mean different
 * things early and late in a call. */
struct rpc_call_facts {
    int64_t deadline_ms; /* the call's deadline; 0 = none */
    int64_t elapsed_ms;  /* from the call's start to its failure */
    bool answered;       /* the server had sent a message on this call: TLS was fine */
};

/* The deadline of a Stop call whose request has grace_millis (0: the server's default, below
 * 0: none), for a client whose calls otherwise have deadline_ms. Pure. */
int64_t rpc_client_stop_deadline_ms(int64_t deadline_ms, int64_t grace_millis);

/* Fills err with one line for a person for a failed call: code is the gRPC status, details and
 * error_string what gRPC reported (either may be NULL). Pure, thread-safe. */
void rpc_client_describe(const struct rpc_peer *c, int code, const char *details,
                         const char *error_string, const struct rpc_call_facts *f,
                         struct rpc_error *err);
