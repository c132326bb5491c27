#pragma once
/* grpc-typed helpers shared by core/rpc*.c and the server (core/server-*.c). Not for applets. */
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>

#include "rpc.h"

/* grpc_init(), with absl's debug-build deadlock detection off; every grpc_init of runjob's. */
void rpc_grpc_init(void);

/* Packs a message into a new byte buffer (one slice). NULL on allocation failure. */
grpc_byte_buffer *rpc_bb_pack(const ProtobufCMessage *m);
/* The Input call's initial metadata key: the server took the call (it has the job's stdin). */
#define RPC_INPUT_READY_KEY "runjob-input-ready"
/* Unpacks a received byte buffer as desc (a NULL bb, "no message", is refused). NULL with err
 * filled (INVALID_ARGUMENT) when malformed. Zero-copy when the buffer is one plain slice. */
ProtobufCMessage *rpc_bb_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb,
                                struct rpc_error *err);
/* rpc_request_decode() over a received byte buffer (a NULL bb is refused): what the server
 * calls for every request. 0 with *ret filled, or -1 with err filled. */
int rpc_bb_decode(enum rpc_method m, grpc_byte_buffer *bb, const struct rpc_policy *p,
                  struct rpc_request *ret, struct rpc_error *err);
/* Makes the slice an OutputChunk is read into: RPC_CHUNK_HDR_MAX bytes of room, then cap
 * bytes for data at GRPC_SLICE_START_PTR(s) + RPC_CHUNK_HDR_MAX. */
grpc_slice rpc_chunk_slice_new(size_t cap);
/* Finishes a chunk whose n data bytes were written after the room: writes the framing right
 * before them and returns a byte buffer over exactly framing+data (a sub-slice: no copy).
 * Takes over the caller's reference to s. NULL on allocation failure. */
grpc_byte_buffer *rpc_chunk_finish(grpc_slice s, size_t n, int stream, uint64_t offset,
                                   int64_t time_ms);

/* For the agent's relay (core/rpc-relay-agent.c): a call of method m on c's channel, its
 * events on cq, with a deadline deadline_ms from now (0: none). */
grpc_call *rpc_client_call_new(struct rpc_client *c, enum rpc_method m, grpc_completion_queue *cq,
                               int64_t deadline_ms);
/* For the relay, before a call: when c's channel is in TRANSIENT_FAILURE (where a call fails at
 * once with the last attempt's error), has it try again now rather than at the end of its
 * backoff, and waits for it to be READY at most max_ms, plucking cq. A server just back is
 * then reached by the first call, as a direct client's would be. */
void rpc_client_await_ready(struct rpc_client *c, grpc_completion_queue *cq, int64_t max_ms);
/* The settings a relaying client must share with c (relay_settings of its resolved paths). */
const char *rpc_client_settings(const struct rpc_client *c, size_t *ret_len);
