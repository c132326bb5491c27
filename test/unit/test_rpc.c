/* core/rpc (server half): request checks -> gRPC codes for every field, errno mapping,
 * malformed bytes -> INVALID_ARGUMENT, and the zero-copy chunk framing decoded by protobuf-c. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>

#include "core/rpc-internal.h"
#include "core/rpc.h"

static const struct rpc_policy policy = {
    .defaults = {.cpu_millis = 1000,
                 .memory_bytes = 512000000,
                 .io_riops = 400000,
                 .io_wiops = 400000,
                 .pids = 1024},
    .maxima = {.cpu_millis = 4000,
               .memory_bytes = 1ull << 32,
               .io_riops = 1000000,
               .io_wiops = 1000000,
               .pids = 32768},
    .allow_host_network = false,
    .default_grace_ms = 10000,
};

static int start_code(Runjob__V1__StartRequest *req)
{
    struct limits l;
    struct rpc_error err = {0};
    int r = rpc_check_start(req, &policy, &l, &err);
    if (r == 0)
        return RPC_OK;
    cr_expect_neq(err.message[0], '\0');
    return err.code;
}

Test(rpc, start_valid_and_defaults)
{
    Runjob__V1__StartRequest req = RUNJOB__V1__START_REQUEST__INIT;
    Runjob__V1__Limits lim = RUNJOB__V1__LIMITS__INIT;
    struct limits l;
    struct rpc_error err;

    req.command = "/bin/echo";
    req.name = "héllo wörld";
    cr_assert_eq(rpc_check_start(&req, &policy, &l, &err), 0);
    cr_expect_eq(l.cpu_millis, 1000);
    cr_expect_eq(l.memory_bytes, 512000000);
    cr_expect_eq(l.pids, 1024);
    cr_expect_eq(l.io_rbps, 0);
    lim.cpu_millis = 250;
    lim.pids = 32768; /* exactly the maximum is fine */
    req.limits = &lim;
    cr_assert_eq(rpc_check_start(&req, &policy, &l, &err), 0);
    cr_expect_eq(l.cpu_millis, 250);
    cr_expect_eq(l.pids, 32768);
    cr_expect_eq(l.memory_bytes, 512000000);
}

Test(rpc, start_every_invalid_field)
{
    Runjob__V1__StartRequest req = RUNJOB__V1__START_REQUEST__INIT;
    Runjob__V1__Limits lim = RUNJOB__V1__LIMITS__INIT;
    static char big[RPC_MAX_PATH_BYTES + 2];
    static char *args[RPC_MAX_ARGS + 1];
    static char longarg[200 * 1024];
    char name[RPC_MAX_NAME_BYTES + 2];

    req.command = "";
    cr_expect_eq(start_code(&req), RPC_INVALID_ARGUMENT, "empty command");
    req.command = "bin/echo";
    cr_expect_eq(start_code(&req), RPC_INVALID_ARGUMENT, "relative command");
    memset(big, 'a', sizeof(big) - 1);
    big[0] = '/';
    req.command = big;
    cr_expect_eq(start_code(&req), RPC_INVALID_ARGUMENT, "path too long");
    req.command = "/bin/echo";

    for (int i = 0; i <= RPC_MAX_ARGS; i++)
        args[i] = "x";
    req.args = args;
    req.n_args = RPC_MAX_ARGS;
    cr_expect_eq(start_code(&req), RPC_OK, "1024 args are fine");
    req.n_args = RPC_MAX_ARGS + 1;
    cr_expect_eq(start_code(&req), RPC_INVALID_ARGUMENT, "1025 args");
    memset(longarg, 'y', sizeof(longarg) - 1);
    args[0] = longarg;
    req.n_args = 1;
    cr_expect_eq(start_code(&req), RPC_INVALID_ARGUMENT, "args over 128 KiB");
    req.n_args = 0;

    memset(name, 'n', sizeof(name) - 1);
    name[RPC_MAX_NAME_BYTES] = '\0';
    req.name = name;
    cr_expect_eq(start_code(&req), RPC_OK, "128-byte name");
    name[RPC_MAX_NAME_BYTES] = 'n';
    name[RPC_MAX_NAME_BYTES + 1] = '\0';
    cr_expect_eq(start_code(&req), RPC_INVALID_ARGUMENT, "129-byte name");
    const char *bad_names[] = {
        "tab\there",     "nl\n",      "del\x7f",          "c1\xc2\x85",
        "bad\xff",       "trunc\xc3", "overlong\xc0\xaf", "surrogate\xed\xa0\x80",
        "ls\xe2\x80\xa8"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        req.name = (char *)bad_names[i];
        cr_expect_eq(start_code(&req), RPC_INVALID_ARGUMENT, "name case %zu", i);
    }
    req.name = "ok-name_1.2 ✓";
    cr_expect_eq(start_code(&req), RPC_OK);

    req.network = RUNJOB__V1__NETWORK_MODE__NETWORK_MODE_HOST;
    cr_expect_eq(start_code(&req), RPC_PERMISSION_DENIED, "host network not allowed");
    req.network = (Runjob__V1__NetworkMode)7;
    cr_expect_eq(start_code(&req), RPC_INVALID_ARGUMENT, "unknown network mode");
    req.network = RUNJOB__V1__NETWORK_MODE__NETWORK_MODE_NONE;

    req.limits = &lim;
    uint64_t *fields[] = {&lim.cpu_millis, &lim.memory_bytes, &lim.io_riops, &lim.io_wiops,
                          &lim.pids};
    uint64_t maxima[] = {4000, 1ull << 32, 1000000, 1000000, 32768};
    for (size_t i = 0; i < 5; i++) {
        *fields[i] = maxima[i] + 1;
        cr_expect_eq(start_code(&req), RPC_INVALID_ARGUMENT, "limit %zu above maximum", i);
        *fields[i] = 0;
    }
    lim.io_rbps = UINT64_MAX; /* no maximum configured: any byte rate limits more */
    cr_expect_eq(start_code(&req), RPC_OK);
}

Test(rpc, start_host_network_when_allowed)
{
    Runjob__V1__StartRequest req = RUNJOB__V1__START_REQUEST__INIT;
    struct rpc_policy p = policy;
    struct limits l;
    struct rpc_error err;

    p.allow_host_network = true;
    req.command = "/bin/true";
    req.network = RUNJOB__V1__NETWORK_MODE__NETWORK_MODE_HOST;
    cr_expect_eq(rpc_check_start(&req, &p, &l, &err), 0);
}

static const char *bad_ids[] = {
    "",
    "nope",
    "3F2B6C1E-8A4D-4C2E-9B1F-0A1B2C3D4E5F",
    "3f2b6c1e8a4d4c2e9b1f0a1b2c3d4e5f",
    "3f2b6c1e-8a4d-4c2e-9b1f-0a1b2c3d4e5",
    "3f2b6c1e-8a4d-4c2e-9b1f-0a1b2c3d4e5f0",
    "3f2b6c1e-8a4d-4c2e-9b1f_0a1b2c3d4e5f",
    "../../../../etc/passwd-0000-0000-00000",
    "3f2b6c1g-8a4d-4c2e-9b1f-0a1b2c3d4e5f",
};
#define GOOD_ID "3f2b6c1e-8a4d-4c2e-9b1f-0a1b2c3d4e5f"

Test(rpc, ids_in_stop_status_stream)
{
    struct rpc_error err;
    int sig;
    int64_t grace;

    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        Runjob__V1__StopRequest stop = RUNJOB__V1__STOP_REQUEST__INIT;
        Runjob__V1__StatusRequest st = RUNJOB__V1__STATUS_REQUEST__INIT;
        Runjob__V1__StreamRequest sr = RUNJOB__V1__STREAM_REQUEST__INIT;
        stop.id = st.id = sr.id = (char *)bad_ids[i];
        err.code = 0;
        cr_expect_eq(rpc_check_stop(&stop, &policy, &sig, &grace, &err), -1, "stop %zu", i);
        cr_expect_eq(err.code, RPC_INVALID_ARGUMENT);
        err.code = 0;
        cr_expect_eq(rpc_check_status(&st, &err), -1, "status %zu", i);
        cr_expect_eq(err.code, RPC_INVALID_ARGUMENT);
        err.code = 0;
        cr_expect_eq(rpc_check_stream(&sr, &err), -1, "stream %zu", i);
        cr_expect_eq(err.code, RPC_INVALID_ARGUMENT);
    }
}

Test(rpc, stop_signal_and_grace)
{
    Runjob__V1__StopRequest req = RUNJOB__V1__STOP_REQUEST__INIT;
    struct rpc_error err;
    int sig;
    int64_t grace;

    req.id = GOOD_ID;
    cr_assert_eq(rpc_check_stop(&req, &policy, &sig, &grace, &err), 0);
    cr_expect_eq(sig, SIGTERM);
    cr_expect_eq(grace, 10000);
    req.signal = SIGINT;
    req.grace_millis = -5;
    cr_assert_eq(rpc_check_stop(&req, &policy, &sig, &grace, &err), 0);
    cr_expect_eq(sig, SIGINT);
    cr_expect_eq(grace, -1);
    req.grace_millis = 500;
    cr_assert_eq(rpc_check_stop(&req, &policy, &sig, &grace, &err), 0);
    cr_expect_eq(grace, 500);
    req.signal = -1;
    cr_expect_eq(rpc_check_stop(&req, &policy, &sig, &grace, &err), -1);
    cr_expect_eq(err.code, RPC_INVALID_ARGUMENT);
    req.signal = 65;
    cr_expect_eq(rpc_check_stop(&req, &policy, &sig, &grace, &err), -1);
    req.signal = 0;
    req.grace_millis = RPC_MAX_GRACE_MS + 1;
    cr_expect_eq(rpc_check_stop(&req, &policy, &sig, &grace, &err), -1);
    cr_expect_eq(err.code, RPC_INVALID_ARGUMENT);
}

Test(rpc, stream_select)
{
    Runjob__V1__StreamRequest req = RUNJOB__V1__STREAM_REQUEST__INIT;
    struct rpc_error err;

    req.id = GOOD_ID;
    for (int s = 0; s <= 2; s++) {
        req.select = (Runjob__V1__OutputSelect)s;
        cr_expect_eq(rpc_check_stream(&req, &err), 0);
    }
    req.select = (Runjob__V1__OutputSelect)3;
    cr_expect_eq(rpc_check_stream(&req, &err), -1);
    cr_expect_eq(err.code, RPC_INVALID_ARGUMENT);
}

Test(rpc, errno_mapping)
{
    cr_expect_eq(rpc_code_from_errno(0), RPC_OK);
    cr_expect_eq(rpc_code_from_errno(-EINVAL), RPC_INVALID_ARGUMENT);
    cr_expect_eq(rpc_code_from_errno(-ENOENT), RPC_NOT_FOUND);
    cr_expect_eq(rpc_code_from_errno(-EEXIST), RPC_ALREADY_EXISTS);
    cr_expect_eq(rpc_code_from_errno(-EPERM), RPC_PERMISSION_DENIED);
    cr_expect_eq(rpc_code_from_errno(-EUSERS), RPC_RESOURCE_EXHAUSTED);
    cr_expect_eq(rpc_code_from_errno(-ENOSPC), RPC_RESOURCE_EXHAUSTED);
    cr_expect_eq(rpc_code_from_errno(-ESHUTDOWN), RPC_UNAVAILABLE);
    cr_expect_eq(rpc_code_from_errno(-EIO), RPC_INTERNAL);
    cr_expect_eq(rpc_code_from_errno(EEXIST), RPC_ALREADY_EXISTS, "positive errno works too");
    cr_expect_eq(rpc_code_for_start_error(-ENOENT), RPC_FAILED_PRECONDITION);
    cr_expect_eq(rpc_code_for_start_error(-EACCES), RPC_FAILED_PRECONDITION);
    cr_expect_eq(rpc_code_for_start_error(-ENOEXEC), RPC_FAILED_PRECONDITION);
    cr_expect_eq(rpc_code_for_start_error(-EAGAIN), RPC_RESOURCE_EXHAUSTED);
    cr_expect_eq(rpc_code_for_start_error(-EIO), RPC_INTERNAL);
    cr_expect_str_eq(rpc_code_name(RPC_FAILED_PRECONDITION), "FAILED_PRECONDITION");
}

Test(rpc, malformed_bytes_are_invalid_argument)
{
    const ProtobufCMessageDescriptor *descs[] = {
        &runjob__v1__start_request__descriptor,  &runjob__v1__stop_request__descriptor,
        &runjob__v1__status_request__descriptor, &runjob__v1__list_request__descriptor,
        &runjob__v1__stream_request__descriptor, &runjob__v1__ping_request__descriptor,
    };
    static const uint8_t junk[][8] = {
        {0x0a, 0x05, 'a'},                                /* string field claims 5 bytes, has 1 */
        {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, /* unterminated varint */
        {0x0b},                                           /* start group (deprecated wire type 3) */
        {0x0f},                                           /* invalid wire type 7 */
        {0x00, 0x01},                                     /* field number 0 */
        {0x80, 0x00, 0x2a},                   /* field number 0 in a two-byte tag (fuzz tier) */
        {0x08, 0x00, 0x80, 0x00, 0x5d},       /* the same after a valid field */
        {0xf8, 0xff, 0xff, 0xff, 0x7f, 0x01}, /* field number 2^32-1 */
    };
    static const size_t lens[] = {3, 8, 1, 1, 2, 3, 5, 6};
    for (size_t d = 0; d < sizeof(descs) / sizeof(descs[0]); d++)
        for (size_t j = 0; j < sizeof(lens) / sizeof(lens[0]); j++) {
            struct rpc_error err = {0};
            ProtobufCMessage *m = rpc_unpack_request(descs[d], junk[j], lens[j], &err);
            cr_expect_null(m, "%s junk %zu decoded", descs[d]->short_name, j);
            if (m)
                protobuf_c_message_free_unpacked(m, NULL);
            else
                cr_expect_eq(err.code, RPC_INVALID_ARGUMENT);
        }
    /* A NULL byte buffer (no message at all) is refused too. */
    struct rpc_error err = {0};
    cr_expect_null(rpc_bb_unpack(descs[0], NULL, &err));
    cr_expect_eq(err.code, RPC_INVALID_ARGUMENT);
}

Test(rpc, bb_round_trip)
{
    Runjob__V1__StartRequest req = RUNJOB__V1__START_REQUEST__INIT;
    char *args[] = {"-c", "echo hi"};
    struct rpc_error err;
    grpc_byte_buffer *bb;
    Runjob__V1__StartRequest *back;

    grpc_init();
    req.command = "/bin/sh";
    req.args = args;
    req.n_args = 2;
    req.name = "n";
    bb = rpc_bb_pack(&req.base);
    cr_assert_not_null(bb);
    back =
        (Runjob__V1__StartRequest *)rpc_bb_unpack(&runjob__v1__start_request__descriptor, bb, &err);
    cr_assert_not_null(back);
    cr_expect_str_eq(back->command, "/bin/sh");
    cr_expect_eq(back->n_args, 2);
    cr_expect_str_eq(back->args[1], "echo hi");
    protobuf_c_message_free_unpacked(&back->base, NULL);
    grpc_byte_buffer_destroy(bb);
    grpc_shutdown();
}

static void check_chunk(size_t n, int stream, uint64_t offset, int64_t time_ms)
{
    grpc_slice s = rpc_chunk_slice_new(n);
    grpc_byte_buffer *bb;
    grpc_byte_buffer_reader r;
    grpc_slice all;
    Runjob__V1__OutputChunk *c;

    for (size_t i = 0; i < n; i++)
        GRPC_SLICE_START_PTR(s)[RPC_CHUNK_HDR_MAX + i] = (uint8_t)(i * 7 + 3);
    bb = rpc_chunk_finish(s, n, stream, offset, time_ms);
    cr_assert_not_null(bb);
    cr_assert(grpc_byte_buffer_reader_init(&r, bb));
    all = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    c = runjob__v1__output_chunk__unpack(NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
    cr_assert_not_null(c, "protobuf-c could not decode the chunk (n=%zu)", n);
    cr_expect_eq(c->stream, stream);
    cr_expect_eq(c->offset, offset);
    cr_expect_eq(c->time_ms, time_ms);
    cr_expect_null(c->final_status);
    cr_assert_eq(c->data.len, n);
    for (size_t i = 0; i < n; i++)
        if (c->data.data[i] != (uint8_t)(i * 7 + 3))
            cr_assert_fail("byte %zu differs", i);
    /* The same message packed by protobuf-c has the same size (canonical framing; an empty
     * data field is written by us, omitted by protobuf-c). */
    if (n > 0)
        cr_expect_eq(runjob__v1__output_chunk__get_packed_size(c), GRPC_SLICE_LENGTH(all));
    runjob__v1__output_chunk__free_unpacked(c, NULL);
    grpc_slice_unref(all);
    grpc_byte_buffer_destroy(bb);
}

Test(rpc, zero_copy_chunk_decodes_with_protobuf_c)
{
    grpc_init();
    check_chunk(0, 1, 0, 0);
    check_chunk(1, 2, 0, 1700000000123);
    check_chunk(127, 1, 127, 1);
    check_chunk(128, 2, 1ull << 40, -5);
    check_chunk(16384, 1, UINT64_MAX, INT64_MAX);
    check_chunk(RPC_CHUNK_DATA_MAX, 2, 123456789, 1700000000000);
    grpc_shutdown();
}

Test(rpc, header_bounded)
{
    uint8_t hdr[RPC_CHUNK_HDR_MAX];
    cr_expect_leq(rpc_chunk_header_encode(hdr, 2, UINT64_MAX, INT64_MIN, SIZE_MAX),
                  (size_t)RPC_CHUNK_HDR_MAX);
}

/* rpc_request_decode is the server's one path from bytes to a request: unpack, check, resolve. */
Test(rpc, request_decode_checks_and_resolves)
{
    Runjob__V1__StartRequest start = RUNJOB__V1__START_REQUEST__INIT;
    Runjob__V1__StopRequest stop = RUNJOB__V1__STOP_REQUEST__INIT;
    uint8_t buf[256];
    struct rpc_request rq;
    struct rpc_error err;
    size_t n;

    start.command = "/bin/true";
    n = protobuf_c_message_pack(&start.base, buf);
    cr_assert_eq(rpc_request_decode(RPC_M_START, buf, n, &policy, &rq, &err), 0);
    cr_expect_eq(rq.method, RPC_M_START);
    cr_expect_eq(rq.msg->descriptor, &runjob__v1__start_request__descriptor);
    cr_expect_eq(rq.limits.memory_bytes, 512000000, "the default applies");
    protobuf_c_message_free_unpacked(rq.msg, NULL);

    start.command = "true"; /* not absolute: refused by rpc_check_start, nothing to free */
    n = protobuf_c_message_pack(&start.base, buf);
    cr_expect_eq(rpc_request_decode(RPC_M_START, buf, n, &policy, &rq, &err), -1);
    cr_expect_eq(err.code, RPC_INVALID_ARGUMENT);

    stop.id = "3f2b6c1e-8a4d-4c2e-9b1f-0a1b2c3d4e5f";
    stop.grace_millis = -5;
    n = protobuf_c_message_pack(&stop.base, buf);
    cr_assert_eq(rpc_request_decode(RPC_M_STOP, buf, n, &policy, &rq, &err), 0);
    cr_expect_eq(rq.signal, SIGTERM);
    cr_expect_eq(rq.grace_ms, -1);
    protobuf_c_message_free_unpacked(rq.msg, NULL);

    /* A Stop request's bytes are not a Status request with a valid id. */
    stop.id = "not-an-id";
    n = protobuf_c_message_pack(&stop.base, buf);
    cr_expect_eq(rpc_request_decode(RPC_M_STATUS, buf, n, &policy, &rq, &err), -1);
    cr_expect_eq(rpc_request_decode(RPC_M_COUNT, buf, n, &policy, &rq, &err), -1);
    cr_expect_eq(err.code, RPC_UNIMPLEMENTED);
}

/* ---- limits below their minimum -------------------------------------------------------- */

Test(rpc, start_limits_below_minimum)
{
    Runjob__V1__StartRequest req = RUNJOB__V1__START_REQUEST__INIT;
    Runjob__V1__Limits lim = RUNJOB__V1__LIMITS__INIT;
    struct limits l;
    struct rpc_error err;
    struct {
        uint64_t *field;
        uint64_t min;
        const char *words;
    } rows[] = {
        {&lim.cpu_millis, RPC_MIN_CPU_MILLIS, "limits.cpu_millis=9 is below the minimum 10"},
        {&lim.memory_bytes, RPC_MIN_MEMORY_BYTES,
         "limits.memory_bytes=1048575 is below the minimum 1048576"},
        {&lim.pids, RPC_MIN_PIDS, "limits.pids=1 is below the minimum 2"},
    };

    req.command = "/bin/true";
    req.limits = &lim;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        *rows[i].field = rows[i].min - 1;
        memset(&err, 0, sizeof(err));
        cr_expect_eq(rpc_check_start(&req, &policy, &l, &err), -1, "row %zu", i);
        cr_expect_eq(err.code, RPC_INVALID_ARGUMENT);
        cr_expect(strstr(err.message, rows[i].words), "row %zu: '%s'", i, err.message);
        *rows[i].field = rows[i].min;
        cr_expect_eq(rpc_check_start(&req, &policy, &l, &err), 0, "row %zu at the minimum", i);
        *rows[i].field = 0;
    }
    /* The I/O limits have no minimum: one operation (or byte) per second is a limit. */
    lim.io_riops = lim.io_wiops = lim.io_rbps = lim.io_wbps = 1;
    cr_expect_eq(rpc_check_start(&req, &policy, &l, &err), 0);
}

/* ---- what protobuf-c lets through: wire types, NUL and non-UTF-8 in strings ---------------- */

struct wire_row {
    const ProtobufCMessageDescriptor *desc;
    const char *bytes; /* the encoded request */
    size_t len;
    const char *words; /* NULL: must be accepted */
};
#define W(d, s, words)                                                                             \
    {                                                                                              \
        &runjob__v1__##d##__descriptor, s, sizeof(s) - 1, words                                    \
    }

Test(rpc, unpack_refuses_what_protobuf_c_lets_through)
{
    static const struct wire_row rows[] = {
        /* StartRequest: command (2), args (3), name (1), limits (4) */
        W(start_request, "\x12\x0b/bin/true\0x", "command contains a NUL byte (at offset 9)"),
        W(start_request, "\x12\x05/bin\xff", "command is not valid UTF-8 (bad byte at offset 4)"),
        W(start_request,
          "\x12\x03\xc0\xaf"
          "a",
          "command is not valid UTF-8"),                                         /* overlong '/' */
        W(start_request, "\x12\x04/\xed\xa0\x80", "command is not valid UTF-8"), /* surrogate */
        W(start_request, "\x12\x05/\xf4\x90\x80\x80", "command is not valid UTF-8"), /* > 10FFFF */
        W(start_request, "\x12\x02/a\x1a\x01x\x1a\x02\xe2\x82", "args[1] is not valid UTF-8"),
        W(start_request,
          "\x12\x02/a\x1a\x00\x1a\x00\x1a\x03"
          "a\0b",
          "args[2] contains a NUL byte"),
        W(start_request,
          "\x0a\x03"
          "a\0b\x12\x02/a",
          "name contains a NUL byte"),
        W(start_request, "\x0a\x01\x80\x12\x02/a", "name is not valid UTF-8"),
        W(start_request, "\x12\x02/a\x22\x03\x0a\x01\x01", "malformed request"), /* cpu as bytes */
        W(start_request, "\x12\x02/a\x28\x05", NULL), /* network 5: decoded, judged later */
        W(start_request, "\x12\x02/a\x1a\x00", NULL), /* an empty argument is fine */
        W(start_request, "\x0a\x0fh\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80\x12\x02/a", NULL),
        W(start_request, "\x12\x02/a\x9a\x06\x02\xff\x00", NULL), /* unknown field 99: bytes */
        /* StopRequest, StatusRequest, StreamRequest: id (1) */
        W(stop_request,
          "\x0a\x25"
          "3f2b6c1e-8a4d-4c2e-9b1f-0a1b2c3d4e5f\0",
          "id contains a NUL byte"),
        W(status_request, "\x0a\x01\x00", "id contains a NUL byte (at offset 0)"),
        W(stream_request, "\x0a\x02\xfe\xff", "id is not valid UTF-8"),
        W(stream_request, "\x0a\x01x\x22\x01x",
          "field no_follow was sent with the wrong protobuf wire type"),
        W(stop_request, "\x0a\x01x\x15\x01\x02\x03\x04", "malformed request"), /* signal fixed32 */
        W(stream_request, "\x0a\x01x\x20\x01", NULL),
    };

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct rpc_error err = {0};
        ProtobufCMessage *m =
            rpc_unpack_request(rows[i].desc, (const uint8_t *)rows[i].bytes, rows[i].len, &err);
        if (!rows[i].words) {
            cr_expect_not_null(m, "row %zu refused: %s", i, err.message);
        } else {
            cr_expect_null(m, "row %zu accepted", i);
            cr_expect_eq(err.code, RPC_INVALID_ARGUMENT, "row %zu", i);
            cr_expect(strstr(err.message, rows[i].words), "row %zu: '%s'", i, err.message);
        }
        if (m)
            protobuf_c_message_free_unpacked(m, NULL);
    }
}

/* The method table agrees with the services protoc-c generated: order, names, paths, and each
 * method's request type; ours first, then the published design's, whose names carry its
 * package. */
Test(rpc, methods_match_the_proto_services)
{
    const ProtobufCServiceDescriptor *ours = &runjob__v1__job_manager__descriptor;
    const ProtobufCServiceDescriptor *theirs = &jobmanager__v1__job_manager__descriptor;

    cr_assert_eq(ours->n_methods, RPC_M_JOBMANAGER_FIRST);
    cr_assert_eq(theirs->n_methods, RPC_M_COUNT - RPC_M_JOBMANAGER_FIRST);
    for (int m = 0; m < RPC_M_COUNT; m++) {
        const ProtobufCServiceDescriptor *svc = m < RPC_M_JOBMANAGER_FIRST ? ours : theirs;
        const ProtobufCMethodDescriptor *md =
            &svc->methods[m < RPC_M_JOBMANAGER_FIRST ? m : m - RPC_M_JOBMANAGER_FIRST];
        char path[128], name[128];
        (void)snprintf(path, sizeof(path), "/%s/%s", svc->name, md->name);
        (void)snprintf(name, sizeof(name), "%s%s", svc == ours ? "" : "jobmanager.v1/", md->name);
        cr_expect_str_eq(rpc_method_name((enum rpc_method)m), name);
        cr_expect_str_eq(rpc_method_path((enum rpc_method)m), path);
        cr_expect_eq(rpc_request_descriptor((enum rpc_method)m), md->input, "%s", md->name);
    }
    cr_expect_null(rpc_method_path(RPC_M_COUNT));
    cr_expect_null(rpc_method_name((enum rpc_method) - 1));
}

/* The published design's requests: the same rules as ours, in its own field names. */
Test(rpc, jobmanager_requests_are_checked_like_ours)
{
    Jobmanager__V1__JobCreationRequest start = JOBMANAGER__V1__JOB_CREATION_REQUEST__INIT;
    Jobmanager__V1__JobId id = JOBMANAGER__V1__JOB_ID__INIT;
    Jobmanager__V1__StreamOutputRequest so = JOBMANAGER__V1__STREAM_OUTPUT_REQUEST__INIT;
    char *args[] = {"-l", "/tmp"};
    struct limits l;
    struct rpc_error err;

    start.programpath = "bin/ls";
    cr_expect_eq(rpc_check_jobmanager_start(&start, &policy, &l, &err), -1);
    cr_expect_eq(err.code, RPC_INVALID_ARGUMENT);
    cr_expect(strstr(err.message, "programPath 'bin/ls' is not an absolute path"), "%s",
              err.message);
    start.programpath = "";
    cr_expect_eq(rpc_check_jobmanager_start(&start, &policy, &l, &err), -1);
    cr_expect(strstr(err.message, "programPath is empty"), "%s", err.message);
    start.programpath = "/bin/ls";
    start.name = "a\tb";
    cr_expect_eq(rpc_check_jobmanager_start(&start, &policy, &l, &err), -1);
    cr_expect_eq(err.code, RPC_INVALID_ARGUMENT);
    start.name = "listing";
    start.arguments = args;
    start.n_arguments = 2;
    cr_expect_eq(rpc_check_jobmanager_start(&start, &policy, &l, &err), 0, "%s", err.message);
    cr_expect_eq(l.memory_bytes, policy.defaults.memory_bytes, "the server's default limits");

    cr_expect_eq(rpc_check_jobmanager_id(&id, &err), -1);
    cr_expect_eq(err.code, RPC_INVALID_ARGUMENT);
    id.id = "3f2b6c1e-8a4d-4c2e-9b1f-0a1b2c3d4e5f";
    cr_expect_eq(rpc_check_jobmanager_id(&id, &err), 0);

    cr_expect_eq(rpc_check_jobmanager_stream(&so, &err), -1);
    cr_expect(strstr(err.message, "jobId is missing"), "%s", err.message);
    so.jobid = &id;
    cr_expect_eq(rpc_check_jobmanager_stream(&so, &err), 0);
    so.outputstream = (Jobmanager__V1__OutputStream)7;
    cr_expect_eq(rpc_check_jobmanager_stream(&so, &err), -1);
    cr_expect(strstr(err.message, "unknown outputStream 7"), "%s", err.message);
}

Test(rpc, start_checks_env_workdir_timeout)
{
    Runjob__V1__StartRequest req = RUNJOB__V1__START_REQUEST__INIT;
    char *good[] = {"A=1", "B=", "C=x=y"}, *nokey[] = {"=1"}, *noeq[] = {"A"};
    struct limits l;
    struct rpc_error err;

    req.command = "/bin/true";
    req.env = good;
    req.n_env = 3;
    req.workdir = "/tmp";
    req.timeout_millis = 1000;
    cr_expect_eq(rpc_check_start(&req, &policy, &l, &err), 0, "%s", err.message);
    req.env = nokey;
    req.n_env = 1;
    cr_expect_eq(rpc_check_start(&req, &policy, &l, &err), -1);
    cr_expect(strstr(err.message, "env[0] '=1' is not KEY=VALUE"), "%s", err.message);
    req.env = noeq;
    cr_expect_eq(rpc_check_start(&req, &policy, &l, &err), -1);
    req.n_env = 0;
    req.workdir = "tmp";
    cr_expect_eq(rpc_check_start(&req, &policy, &l, &err), -1);
    cr_expect(strstr(err.message, "workdir 'tmp' is not an absolute path"), "%s", err.message);
    req.workdir = "";
    req.timeout_millis = (uint64_t)RPC_MAX_TIMEOUT_MS + 1;
    cr_expect_eq(rpc_check_start(&req, &policy, &l, &err), -1);
    cr_expect_eq(err.code, RPC_INVALID_ARGUMENT);
}
