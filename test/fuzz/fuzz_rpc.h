#pragma once
/* Shared body of the per-RPC libFuzzer targets (fuzz_rpc_<method>.c): raw request bytes through
 * rpc_request_decode(), the one function the server's dispatch calls (via rpc_bb_decode) to
 * unpack and check every request. On success the result must satisfy what the server relies
 * on afterwards; on failure the error must be a well-formed status for the client. */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#include "core/id.h"
#include "core/rpc.h"

/* The policy applet_serve_main starts with (applets/serve.c), maxima for a 2-CPU host. */
static const struct rpc_policy fuzz_policy_base = {
    .defaults = {.cpu_millis = 1000,
                 .memory_bytes = 512000000,
                 .io_riops = 400000,
                 .io_wiops = 400000,
                 .pids = 1024},
    .maxima = {.cpu_millis = 2000,
               .memory_bytes = 4ull << 30,
               .io_riops = 1000000,
               .io_wiops = 1000000,
               .pids = 32768},
    .default_grace_ms = 10000,
};

static void fuzz_check_start(const struct rpc_request *rq, const struct rpc_policy *p)
{
    const Runjob__V1__StartRequest *req = (const Runjob__V1__StartRequest *)rq->msg;
    const uint64_t got[] = {rq->limits.cpu_millis, rq->limits.memory_bytes, rq->limits.io_riops,
                            rq->limits.io_wiops,   rq->limits.io_rbps,      rq->limits.io_wbps,
                            rq->limits.pids};
    const uint64_t max[] = {p->maxima.cpu_millis, p->maxima.memory_bytes, p->maxima.io_riops,
                            p->maxima.io_wiops,   p->maxima.io_rbps,      p->maxima.io_wbps,
                            p->maxima.pids};
    size_t total = 0;

    /* What handle_start and jobtab_add use without looking again. */
    FUZZ_CHECK(req->command && req->command[0] == '/');
    FUZZ_CHECK(strlen(req->command) <= RPC_MAX_PATH_BYTES);
    FUZZ_CHECK(req->n_args <= RPC_MAX_ARGS);
    for (size_t i = 0; i < req->n_args; i++)
        total += strlen(req->args[i]) + 1;
    FUZZ_CHECK(total <= RPC_MAX_ARGS_BYTES);
    FUZZ_CHECK(!req->name || rpc_name_is_valid(req->name, RPC_MAX_NAME_BYTES));
    FUZZ_CHECK(
        req->network == RUNJOB__V1__NETWORK_MODE__NETWORK_MODE_NONE ||
        (req->network == RUNJOB__V1__NETWORK_MODE__NETWORK_MODE_HOST && p->allow_host_network));
    for (size_t i = 0; i < sizeof(got) / sizeof(got[0]); i++)
        FUZZ_CHECK(!max[i] || got[i] <= max[i]);
}

static void fuzz_check_ok(const struct rpc_request *rq, const struct rpc_policy *p)
{
    switch (rq->method) {
    case RPC_M_START:
        fuzz_check_start(rq, p);
        break;
    case RPC_M_STOP: {
        const Runjob__V1__StopRequest *req = (const Runjob__V1__StopRequest *)rq->msg;
        FUZZ_CHECK(id_is_valid(req->id));
        FUZZ_CHECK(rq->signal >= 1 && rq->signal <= SIGRTMAX);
        FUZZ_CHECK(rq->grace_ms == -1 || (rq->grace_ms >= 0 && rq->grace_ms <= RPC_MAX_GRACE_MS));
        break;
    }
    case RPC_M_STATUS:
        FUZZ_CHECK(id_is_valid(((const Runjob__V1__StatusRequest *)rq->msg)->id));
        break;
    case RPC_M_REMOVE:
        FUZZ_CHECK(id_is_valid(((const Runjob__V1__RemoveRequest *)rq->msg)->id));
        break;
    case RPC_M_STREAM: {
        const Runjob__V1__StreamRequest *req = (const Runjob__V1__StreamRequest *)rq->msg;
        FUZZ_CHECK(id_is_valid(req->id));
        FUZZ_CHECK(req->select == RUNJOB__V1__OUTPUT_SELECT__OUTPUT_SELECT_ALL ||
                   req->select == RUNJOB__V1__OUTPUT_SELECT__OUTPUT_SELECT_STDOUT ||
                   req->select == RUNJOB__V1__OUTPUT_SELECT__OUTPUT_SELECT_STDERR);
        break;
    }
    case RPC_M_JOBMANAGER_STOP:
    case RPC_M_JOBMANAGER_QUERY:
        FUZZ_CHECK(id_is_valid(((const Jobmanager__V1__JobId *)rq->msg)->id));
        break;
    case RPC_M_JOBMANAGER_STREAM_OUTPUT: {
        const Jobmanager__V1__StreamOutputRequest *req =
            (const Jobmanager__V1__StreamOutputRequest *)rq->msg;
        FUZZ_CHECK(req->jobid && id_is_valid(req->jobid->id));
        FUZZ_CHECK(req->outputstream >= JOBMANAGER__V1__OUTPUT_STREAM__UNSPECIFIED &&
                   req->outputstream <= JOBMANAGER__V1__OUTPUT_STREAM__STDERR);
        break;
    }
    case RPC_M_JOBMANAGER_START:
    case RPC_M_JOBMANAGER_LIST:
    case RPC_M_LIST:
    case RPC_M_PING:
    case RPC_M_METRICS:
    case RPC_M_COUNT:
    default:
        break;
    }
}

static int fuzz_rpc_request(enum rpc_method m, const uint8_t *data, size_t size)
{
    struct rpc_policy p = fuzz_policy_base;
    struct rpc_request rq;
    struct rpc_error err;
    size_t packed;
    uint8_t *again;

    /* Both answers of the host-network policy, picked by the length (the bytes stay the
     * request's own). */
    p.allow_host_network = size & 1;
    memset(&err, 0xa5, sizeof(err)); /* an unwritten message would show as unterminated */
    if (rpc_request_decode(m, data, size, &p, &rq, &err) < 0) {
        FUZZ_CHECK(err.code == RPC_INVALID_ARGUMENT || err.code == RPC_PERMISSION_DENIED);
        FUZZ_CHECK(memchr(err.message, '\0', sizeof(err.message)) && err.message[0]);
        return 0;
    }
    FUZZ_CHECK(rq.method == m && rq.msg && rq.msg->descriptor == rpc_request_descriptor(m));
    fuzz_check_ok(&rq, &p);
    /* The decoded message must be whole: pack it again and decode that the same way. */
    packed = protobuf_c_message_get_packed_size(rq.msg);
    again = malloc(packed ? packed : 1);
    FUZZ_CHECK(again);
    FUZZ_CHECK(protobuf_c_message_pack(rq.msg, again) == packed);
    {
        struct rpc_request rq2;
        FUZZ_CHECK(rpc_request_decode(m, again, packed, &p, &rq2, &err) == 0);
        FUZZ_CHECK(protobuf_c_message_get_packed_size(rq2.msg) == packed);
        protobuf_c_message_free_unpacked(rq2.msg, NULL);
    }
    free(again);
    protobuf_c_message_free_unpacked(rq.msg, NULL);
    return 0;
}
