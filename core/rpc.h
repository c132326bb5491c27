#pragma once
/* gRPC C-core glue. The only header besides core/server.h that may stand between the rest of
 * runjob and grpc: it exposes the generated protobuf-c types (never grpc types), the client
 * calls the applets use, and the errno -> gRPC status mapping.
 *
 * The client half below is what applets/client.c dials and calls with; the server half is
 * core/server's. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jobmanager.pb-c.h"
#include "runjob.pb-c.h"
#include "limits.h"

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
    const char *host;      /* "localhost", "127.0.0.1", "::1", a DNS name */
    int port;              /* 1..65535 */
    const char *ca_path;   /* PEM of the CA that signed the server's certificate */
    const char *cert_path; /* client certificate (PEM); its CN is the user */
    const char *key_path;  /* client private key (PEM) */
    int64_t deadline_ms;   /* per unary call; 0 = 30 s */
};

/* A failed call: the gRPC code and one line of plain words for a person
 * ("connection refused by localhost:8080", "server rejected our certificate", ...). */
struct rpc_error {
    int code;
    char message[512];
};

/* Sets err (NULL-safe) to code and a printf-formatted message. */
void rpc_error_set(struct rpc_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rpc_error_vset(struct rpc_error *err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

struct rpc_client; /* one channel; every call below is thread-safe on it */

/* 0, or -1 with err filled (unreadable certificate files are reported here by path). */
int rpc_client_open(const struct rpc_client_config *cfg, struct rpc_client **ret,
                    struct rpc_error *err);
void rpc_client_free(struct rpc_client *c); /* NULL-safe */
/* For a client that lives on between calls (an agent's): a thread of its own keeps c's channel
 * connected, reconnecting as soon as the server is back rather than when a call comes, until
 * rpc_client_free. 0 or -errno; -EINVAL for a client through an agent. */
int rpc_client_keep_connected(struct rpc_client *c);
/* Opens a client whose calls go through the `runjob agent` listening at path, when that agent
 * holds a connection with cfg's settings (server host and port, CA, certificate and key files,
 * compared by their real paths): 1 with *ret, 0 when there is none (nothing answers there, or
 * the agent is for other settings: the caller dials directly). Sets up neither gRPC nor
 * OpenSSL: an agent's point is a client process that does not pay for them. */
int rpc_client_open_relay(const struct rpc_client_config *cfg, const char *path,
                          struct rpc_client **ret);
/* true when c's calls go through an agent: false once one of them has gone directly (the agent
 * turned it away before taking it: gone, at its connection cap, of other settings since the
 * open, or the request more than it relays). */
bool rpc_client_relayed(const struct rpc_client *c);
/* The agent's side of one connection accepted on its socket: serves the calls a client relays
 * (core/rpc-relay-internal.h), made on c, the agent's own direct client. Blocks until the
 * client is done: run it on a thread of its own. Does not close fd. The caller has checked who
 * is at the other end: whoever it lets through acts with c's certificate. 0, or -EPERM when the
 * client's settings were not c's and it was told NO (for the agent's log). */
int rpc_relay_serve(struct rpc_client *c, int fd);
/* An agent at its limit, to a connection it closes at once: says why (RESOURCE_EXHAUSTED) to
 * the client, which then dials directly, the call never having reached the server. */
void rpc_relay_refuse(int fd, const char *why);

/* After the last rpc_client_free, gRPC finishes its clean-up on its own threads. A process about
 * to exit calls this to wait for that (at most timeout_ms), so that exit() never races a gRPC
 * thread still freeing (sanitizers report such a race as a leak). */
void rpc_client_wait_library_idle(int timeout_ms);

/* Unary calls: 0 with *ret set (free with protobuf_c_message_free_unpacked(&(*ret)->base, NULL)),
 * or -1 with err filled. */
int rpc_client_start(struct rpc_client *c, const Runjob__V1__StartRequest *req,
                     Runjob__V1__Job **ret, struct rpc_error *err);
int rpc_client_stop(struct rpc_client *c, const Runjob__V1__StopRequest *req,
                    Runjob__V1__JobStatus **ret, struct rpc_error *err);
int rpc_client_status(struct rpc_client *c, const Runjob__V1__StatusRequest *req,
                      Runjob__V1__JobStatus **ret, struct rpc_error *err);
int rpc_client_list(struct rpc_client *c, const Runjob__V1__ListRequest *req,
                    Runjob__V1__ListResponse **ret, struct rpc_error *err);
int rpc_client_ping(struct rpc_client *c, const Runjob__V1__PingRequest *req,
                    Runjob__V1__PingResponse **ret, struct rpc_error *err);
int rpc_client_metrics(struct rpc_client *c, const Runjob__V1__MetricsRequest *req,
                       Runjob__V1__MetricsResponse **ret, struct rpc_error *err);
int rpc_client_remove(struct rpc_client *c, const Runjob__V1__RemoveRequest *req,
                      Runjob__V1__RemoveResponse **ret, struct rpc_error *err);

/* The published design's service (jobmanager.v1), which jobctl speaks. Same contract as
 * above; Stop answers with nothing (NilMessage) and so returns only 0 or -1. */
int rpc_client_jobmanager_start(struct rpc_client *c, const Jobmanager__V1__JobCreationRequest *req,
                                Jobmanager__V1__Job **ret, struct rpc_error *err);
int rpc_client_jobmanager_stop(struct rpc_client *c, const Jobmanager__V1__JobId *req,
                               struct rpc_error *err);
int rpc_client_jobmanager_query(struct rpc_client *c, const Jobmanager__V1__JobId *req,
                                Jobmanager__V1__JobStatus **ret, struct rpc_error *err);
int rpc_client_jobmanager_list(struct rpc_client *c, Jobmanager__V1__JobStatusList **ret,
                               struct rpc_error *err);

/* One received stream message, decoded without copying its bytes. */
struct rpc_chunk {
    const uint8_t *data; /* valid until the next rpc_client_stream_next/free */
    size_t len;
    int stream; /* RUNJOB__V1__OUTPUT_STREAM__STDOUT / __STDERR */
    uint64_t offset;
    int64_t time_ms;
    Runjob__V1__JobStatus *final_status; /* non-NULL on the last message of a follow */
};

struct rpc_stream;
int rpc_client_stream_open(struct rpc_client *c, const Runjob__V1__StreamRequest *req,
                           struct rpc_stream **ret, struct rpc_error *err);
/* jobmanager.v1's StreamOutput, read with the same calls: its JobOutput is an OutputChunk
 * with the data field alone (stream 0, offset 0, no final status). */
int rpc_client_output_open(struct rpc_client *c, const Jobmanager__V1__StreamOutputRequest *req,
                           struct rpc_stream **ret, struct rpc_error *err);
/* Blocks for the next message: 1 with *ret filled, 0 at the end of a stream that finished OK,
 * -1 with err filled (CANCELLED after rpc_client_stream_cancel). */
int rpc_client_stream_next(struct rpc_stream *s, struct rpc_chunk *ret, struct rpc_error *err);
/* Cancels the stream; safe from another thread while one is blocked in _next. */
void rpc_client_stream_cancel(struct rpc_stream *s);
void rpc_client_stream_free(struct rpc_stream *s); /* NULL-safe */

/* An Input call: bytes into a job's stdin (runjob.v1 Input). Used by one thread at a time,
 * except rpc_client_input_cancel, which any thread may call. */
struct rpc_input;
/* Opens it for job id, the first message naming the job (and a terminal's size when rows and
 * cols are not 0). 0, or -1 with err. */
int rpc_client_input_open(struct rpc_client *c, const char *id, unsigned rows, unsigned cols,
                          struct rpc_input **ret, struct rpc_error *err);
/* Sends len (<= RPC_MAX_INPUT_BYTES) bytes and, when rows and cols are not 0, a new terminal
 * size; returns once gRPC took the message, which its flow control holds back while the job
 * does not read. 0, or -1 once the call has ended (rpc_client_input_finish says how). */
int rpc_client_input_send(struct rpc_input *in, const void *data, size_t len, unsigned rows,
                          unsigned cols);
/* Ends the call: with eof, the job's stdin is closed after what was sent; without, it stays
 * open for the next writer. Waits up to timeout_ms (< 0: as long as it takes the job to read
 * what was sent) for the reply, then cancels. 0 with *ret_bytes what the job's stdin took, or
 * -1 with err. */
int rpc_client_input_finish(struct rpc_input *in, bool eof, int64_t timeout_ms, uint64_t *ret_bytes,
                            struct rpc_error *err);
void rpc_client_input_cancel(struct rpc_input *in); /* NULL-safe; thread-safe */
void rpc_client_input_free(struct rpc_input *in);   /* NULL-safe; cancels an unfinished call */

/* Pure decoder of one OutputChunk message (no I/O, no grpc): fills ret with data pointing into
 * buf (never copied), stream, offset, time_ms, and final_status unpacked by protobuf-c when
 * present (the caller frees it with protobuf_c_message_free_unpacked). Unknown fields are
 * skipped; a repeated scalar field keeps its last value. Returns 0, -EBADMSG for malformed
 * input (truncation, bad varint, wrong wire type for a known field, groups) or -ENOMEM.
 * ret is written only on success. Thread-safe. */
int rpc_chunk_parse(const uint8_t *buf, size_t len, struct rpc_chunk *ret);

/* ---- server side: validation, status mapping, chunk framing (no grpc types here; the
 * grpc-typed helpers are in core/rpc-internal.h, for core/rpc*.c and core/server-*.c only) -- */

#define RPC_MAX_ARGS          1024                        /* arguments per StartRequest */
#define RPC_MAX_ARGS_BYTES    (128 * 1024)                /* their total, counting one NUL each */
#define RPC_MAX_NAME_BYTES    128                         /* job name, UTF-8 */
#define RPC_MAX_ENV           1024                        /* environment entries per StartRequest */
#define RPC_MAX_ENV_BYTES     (128 * 1024)                /* their total, counting one NUL each */
#define RPC_MAX_TIMEOUT_MS    (3650LL * 24 * 3600 * 1000) /* ten years: a deadline, not never */
#define RPC_MAX_PATH_BYTES    4095                        /* command path */
#define RPC_MAX_GRACE_MS      (3600 * 1000)               /* StopRequest.grace_millis */
#define RPC_MIN_CPU_MILLIS    10            /* the kernel's smallest CFS quota: 1 ms per 100 ms */
#define RPC_MIN_MEMORY_BYTES  (1024 * 1024) /* below it not even the job's init can run */
#define RPC_MIN_PIDS          2             /* the job's init (the shim) and the command */
#define RPC_MAX_REQUEST_BYTES (1024 * 1024) /* GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH (server) */
#define RPC_HANDSHAKE_MAX_MS  5000          /* GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS (server) */
#define RPC_CHUNK_DATA_MAX    (1024 * 1024) /* payload bytes per OutputChunk the server sends */
#define RPC_CHUNK_HDR_MAX     40            /* room for an OutputChunk's framing before data */

/* What the server allows; see rpc_check_start. A maximum of 0 means "no maximum". */
struct rpc_policy {
    struct limits defaults;
    struct limits maxima;
    bool allow_host_network;
    int64_t default_grace_ms;
    int default_signal; /* a Stop's first signal when it names none; 0 = SIGTERM */
};

/* The gRPC code for a negative (or positive) errno from core. The one place that maps. */
int rpc_code_from_errno(int err);
/* The gRPC code for a job_start() failure: problems with the command on this host (ENOENT,
 * EACCES, ENOEXEC, ENOTDIR, ELOOP, EISDIR, ENAMETOOLONG) are FAILED_PRECONDITION (the request
 * is well-formed; the host's state makes it fail), shortage is RESOURCE_EXHAUSTED, the rest
 * INTERNAL. */
int rpc_code_for_start_error(int err);

/* true when s is at most max bytes of valid UTF-8 without control characters (C0, DEL, C1). */
bool rpc_name_is_valid(const char *s, size_t max);

/* Request checks. Each returns 0, or -1 with err->code (INVALID_ARGUMENT, PERMISSION_DENIED)
 * and err->message (one line for the client; user strings quoted and shortened) filled.
 * rpc_check_start also computes the limits to apply: a zero field takes the default; a field
 * above its maximum, or below its minimum (RPC_MIN_*: cpu_millis, memory_bytes, pids), is
 * refused. Pure, thread-safe. */
int rpc_check_start(const Runjob__V1__StartRequest *req, const struct rpc_policy *p,
                    struct limits *ret_limits, struct rpc_error *err);
/* *ret_signal: 0 -> p->default_signal (or SIGTERM) resolved; *ret_grace_ms: 0 -> default, negative
 * -> -1 (at once). */
int rpc_check_stop(const Runjob__V1__StopRequest *req, const struct rpc_policy *p, int *ret_signal,
                   int64_t *ret_grace_ms, struct rpc_error *err);
int rpc_check_status(const Runjob__V1__StatusRequest *req, struct rpc_error *err);
int rpc_check_remove(const Runjob__V1__RemoveRequest *req, struct rpc_error *err);
int rpc_check_stream(const Runjob__V1__StreamRequest *req, struct rpc_error *err);
/* An Input message: the first names a valid job id, later ones none; data at most
 * RPC_MAX_INPUT_BYTES; a terminal size 1..65535 each way. */
#define RPC_MAX_INPUT_BYTES (64 * 1024)
int rpc_check_input(const Runjob__V1__InputRequest *req, bool first, struct rpc_error *err);
/* The published design's requests (jobmanager.v1), under the same rules as ours: a Start
 * gets the server's default limits in *ret_limits. */
int rpc_check_jobmanager_start(const Jobmanager__V1__JobCreationRequest *req,
                               const struct rpc_policy *p, struct limits *ret_limits,
                               struct rpc_error *err);
int rpc_check_jobmanager_id(const Jobmanager__V1__JobId *req, struct rpc_error *err);
int rpc_check_jobmanager_stream(const Jobmanager__V1__StreamOutputRequest *req,
                                struct rpc_error *err);

/* Unpacks a request message; NULL with err INVALID_ARGUMENT when the bytes are not a valid
 * message of that type ("malformed request: ..."), when a known field was sent with another
 * wire type, or when a string field (at any depth) is not UTF-8 or holds a NUL byte ("args[2]
 * contains a NUL byte": protobuf-c would keep only what precedes it). Unknown fields are
 * allowed. Free with protobuf_c_message_free_unpacked. */
ProtobufCMessage *rpc_unpack_request(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
                                     size_t len, struct rpc_error *err);

/* The RPCs of both services, each in its proto's order: runjob.v1.JobManager
 * (proto/runjob.proto, ours), then jobmanager.v1.JobManager (proto/jobmanager.proto, the
 * published design's, served as an adapter over the same jobs). */
enum rpc_method {
    RPC_M_START,
    RPC_M_STOP,
    RPC_M_STATUS,
    RPC_M_LIST,
    RPC_M_STREAM,
    RPC_M_PING,
    RPC_M_METRICS,
    RPC_M_REMOVE,
    RPC_M_INPUT, /* client-streaming: the payload is its first message */
    RPC_M_JOBMANAGER_START,
    RPC_M_JOBMANAGER_STOP,
    RPC_M_JOBMANAGER_QUERY,
    RPC_M_JOBMANAGER_LIST,
    RPC_M_JOBMANAGER_STREAM_OUTPUT,
    RPC_M_COUNT,
};
#define RPC_M_JOBMANAGER_FIRST RPC_M_JOBMANAGER_START

/* "/runjob.v1.JobManager/Start": the gRPC path of method m, which the client calls and the
 * server registers. NULL for an unknown m. Static. */
const char *rpc_method_path(enum rpc_method m);
/* The name of method m that the audit log and the metrics write: "Start" for ours,
 * "jobmanager.v1/Start" for the published design's. NULL for an unknown m. Static. */
const char *rpc_method_name(enum rpc_method m);

/* A request as the server acts on it: decoded, checked, its defaults resolved. */
struct rpc_request {
    enum rpc_method method;
    ProtobufCMessage *msg; /* the method's request message; the caller frees it */
    struct limits limits;  /* Start: the limits to apply (rpc_check_start) */
    int signal;            /* Stop: the first signal (rpc_check_stop) */
    int64_t grace_ms;      /* Stop: the grace period, -1 = kill at once */
};

/* The request message type of method m (NULL for an unknown m). Static. */
const ProtobufCMessageDescriptor *rpc_request_descriptor(enum rpc_method m);
/* The server's one path from a request's bytes to a request it acts on: rpc_unpack_request,
 * then the method's rpc_check_* under p. 0 with *ret filled (free ret->msg with
 * protobuf_c_message_free_unpacked), or -1 with err filled and nothing left to free. The
 * fuzzers (test/fuzz/fuzz_rpc_*.c) call exactly this. Pure, thread-safe. */
int rpc_request_decode(enum rpc_method m, const uint8_t *buf, size_t len,
                       const struct rpc_policy *p, struct rpc_request *ret, struct rpc_error *err);

/* Writes the framing of an OutputChunk whose data field (len data_len) follows directly:
 * fields stream (2), offset (3, omitted when 0), time_ms (4, omitted when 0), then the data
 * field's tag and length. Returns the number of bytes written (<= RPC_CHUNK_HDR_MAX) into hdr;
 * the caller places them right before the data. Pure. */
size_t rpc_chunk_header_encode(uint8_t hdr[RPC_CHUNK_HDR_MAX], int stream, uint64_t offset,
                               int64_t time_ms, size_t data_len);
