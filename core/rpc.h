#pragma once
/* gRPC C-core glue. The only header besides core/server.h that may stand between the rest of
 * runjob and grpc: it exposes the generated protobuf-c types (never grpc types), the client
 * calls the applets use, and the errno -> gRPC status mapping.
 *
 * CONTRACT NOTE (owned by the service work, issue 4): the client half below is what
 * applets/client.c codes against; extend it, don't break it. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jobmanager.pb-c.h"

/* gRPC status codes, numerically equal to grpc_status_code (so no grpc header is needed). */
enum rpc_code {
    RPC_OK = 0,
    RPC_CANCELLED = 1,
    RPC_UNKNOWN = 2,
    RPC_INVALID_ARGUMENT = 3,
    RPC_DEADLINE_EXCEEDED = 4,
    RPC_NOT_FOUND = 5,
    RPC_ALREADY_EXISTS = 6,
    RPC_PERMISSION_DENIED = 7,
    RPC_RESOURCE_EXHAUSTED = 8,
    RPC_FAILED_PRECONDITION = 9,
    RPC_ABORTED = 10,
    RPC_OUT_OF_RANGE = 11,
    RPC_UNIMPLEMENTED = 12,
    RPC_INTERNAL = 13,
    RPC_UNAVAILABLE = 14,
    RPC_DATA_LOSS = 15,
    RPC_UNAUTHENTICATED = 16,
};

/* "OK", "NOT_FOUND", ... for any code (unknown codes give "UNKNOWN"). */
const char *rpc_code_name(int code);
/* The version of the linked gRPC core, e.g. "1.51.1". Static string. */
const char *rpc_grpc_version(void);


/* ---- client ---------------------------------------------------------------------------- */

struct rpc_client_config {
    const char *host;     /* "localhost", "127.0.0.1", "::1", a DNS name */
    int port;             /* 1..65535 */
    const char *ca_path;  /* PEM of the CA that signed the server's certificate */
    const char *cert_path;/* client certificate (PEM); its CN is the user */
    const char *key_path; /* client private key (PEM) */
    int64_t deadline_ms;  /* per unary call; 0 = 30 s */
};

/* A failed call: the gRPC code and one line of plain words for a person
 * ("connection refused by localhost:8080", "server rejected our certificate", ...). */
struct rpc_error {
    int code;
    char message[512];
};

struct rpc_client; /* one channel; every call below is thread-safe on it */

/* 0, or -1 with err filled (unreadable certificate files are reported here by path). */
int rpc_client_open(const struct rpc_client_config *cfg, struct rpc_client **ret,
                    struct rpc_error *err);
void rpc_client_free(struct rpc_client *c); /* NULL-safe */

/* Unary calls: 0 with *ret set (free with protobuf_c_message_free_unpacked(&(*ret)->base, NULL)),
 * or -1 with err filled. */
int rpc_client_start(struct rpc_client *c, const Jobmanager__V1__StartRequest *req,
                     Jobmanager__V1__Job **ret, struct rpc_error *err);
int rpc_client_stop(struct rpc_client *c, const Jobmanager__V1__StopRequest *req,
                    Jobmanager__V1__JobStatus **ret, struct rpc_error *err);
int rpc_client_status(struct rpc_client *c, const Jobmanager__V1__StatusRequest *req,
                      Jobmanager__V1__JobStatus **ret, struct rpc_error *err);
int rpc_client_list(struct rpc_client *c, const Jobmanager__V1__ListRequest *req,
                    Jobmanager__V1__ListResponse **ret, struct rpc_error *err);
int rpc_client_ping(struct rpc_client *c, const Jobmanager__V1__PingRequest *req,
                    Jobmanager__V1__PingResponse **ret, struct rpc_error *err);

/* One received stream message, decoded without copying its bytes. */
struct rpc_chunk {
    const uint8_t *data; /* valid until the next rpc_client_stream_next/free */
    size_t len;
    int stream;          /* JOBMANAGER__V1__OUTPUT_STREAM__STDOUT / __STDERR */
    uint64_t offset;
    int64_t time_ms;
    Jobmanager__V1__JobStatus *final_status; /* non-NULL on the last message of a follow */
};

struct rpc_stream;
int rpc_client_stream_open(struct rpc_client *c, const Jobmanager__V1__StreamRequest *req,
                           struct rpc_stream **ret, struct rpc_error *err);
/* Blocks for the next message: 1 with *ret filled, 0 at the end of a stream that finished OK,
 * -1 with err filled (CANCELLED after rpc_client_stream_cancel). */
int rpc_client_stream_next(struct rpc_stream *s, struct rpc_chunk *ret, struct rpc_error *err);
/* Cancels the stream; safe from another thread while one is blocked in _next. */
void rpc_client_stream_cancel(struct rpc_stream *s);
void rpc_client_stream_free(struct rpc_stream *s); /* NULL-safe */
