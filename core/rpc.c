#include "rpc.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>

#include "id.h"
#include "rpc-internal.h"

static const char *const code_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *rpc_code_name(int code)
{
    if (code < 0 || code >= (int)(sizeof(code_names) / sizeof(code_names[0])))
        return "UNKNOWN";
    return code_names[code];
}

const char *rpc_grpc_version(void)
{
    return grpc_version_string();
}

/* ---- status mapping -------------------------------------------------------------------- */

int rpc_code_from_errno(int err)
{
    switch (err < 0 ? -err : err) {
    case 0:
        return RPC_OK;
    case EINVAL:
    case EBADMSG:
    case E2BIG:
    case ENAMETOOLONG:
    case EILSEQ:
    case EDOM:
    case ERANGE:
        return RPC_INVALID_ARGUMENT;
    case ENOENT:
    case ESRCH:
        return RPC_NOT_FOUND;
    case EEXIST:
        return RPC_ALREADY_EXISTS;
    case EPERM:
    case EACCES:
        return RPC_PERMISSION_DENIED;
    case EUSERS:
    case EAGAIN:
    case ENOMEM:
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE:
    case EFBIG:
        return RPC_RESOURCE_EXHAUSTED;
    case ECANCELED:
        return RPC_CANCELLED;
    case ETIMEDOUT:
        return RPC_DEADLINE_EXCEEDED;
    case ENOTSUP:
    case ENOSYS:
        return RPC_UNIMPLEMENTED;
    case ESHUTDOWN:
    case ECONNREFUSED:
    case ENOTCONN:
        return RPC_UNAVAILABLE;
    case EKEYREJECTED:
    case ENOKEY:
        return RPC_UNAUTHENTICATED;
    case EBUSY:
    case EALREADY:
        return RPC_FAILED_PRECONDITION;
    default:
        return RPC_INTERNAL;
    }
}

int rpc_code_for_start_error(int err)
{
    switch (err < 0 ? -err : err) {
    case ENOENT:
    case EACCES:
    case EPERM:
    case ENOEXEC:
    case ENOTDIR:
    case ELOOP:
    case EISDIR:
    case ENAMETOOLONG:
    case ETXTBSY:
    case ELIBBAD:
        return RPC_FAILED_PRECONDITION;
    case EAGAIN:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
    case ENOSPC:
    case EUSERS:
        return RPC_RESOURCE_EXHAUSTED;
    default:
        return RPC_INTERNAL;
    }
}

/* ---- validation ------------------------------------------------------------------------ */

static int fail(struct rpc_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct rpc_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    rpc_error_vset(err, code, fmt, ap);
    va_end(ap);
    return -1;
}

/* A user string for a message: at most 48 bytes, bytes outside printable ASCII as \xNN. */
static const char *shorten(const char *s, char *buf, size_t cap)
{
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;

    for (; *p && o + 5 < cap && o < 48; p++) {
        if (*p < 0x20 || *p >= 0x7f || *p == '\'' || *p == '\\')
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", *p);
        else
            buf[o++] = (char)*p;
    }
    if (*p && o + 4 < cap) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

/* One UTF-8 sequence at p, n bytes available: its length with *ret_cp, or 0 when it is not
 * valid UTF-8 (bad lead or continuation byte, truncated, overlong, surrogate, > U+10FFFF). */
static size_t utf8_next(const unsigned char *p, size_t n, uint32_t *ret_cp)
{
    uint32_t cp;
    size_t len;

    if (p[0] < 0x80) {
        cp = p[0];
        len = 1;
    } else if ((p[0] & 0xe0) == 0xc0) {
        cp = p[0] & 0x1f;
        len = 2;
    } else if ((p[0] & 0xf0) == 0xe0) {
        cp = p[0] & 0x0f;
        len = 3;
    } else if ((p[0] & 0xf8) == 0xf0) {
        cp = p[0] & 0x07;
        len = 4;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000))
        return 0; /* overlong */
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *ret_cp = cp;
    return len;
}

bool rpc_name_is_valid(const char *s, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);

    if (n > max)
        return false;
    while (n > 0) {
        uint32_t cp;
        size_t len = utf8_next(p, n, &cp);
        if (len == 0)
            return false;
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029)
            return false; /* control characters (C0, DEL, C1, line/paragraph separators) */
        p += len;
        n -= len;
    }
    return true;
}

static int check_terminal_size(const Runjob__V1__TerminalSize *ts, const char *field,
                               struct rpc_error *err)
{
    if (ts && (ts->rows < 1 || ts->rows > 65535 || ts->cols < 1 || ts->cols > 65535))
        return fail(err, RPC_INVALID_ARGUMENT,
                    "%s %ux%u is not a terminal size (rows and columns 1 to 65535)", field,
                    ts->rows, ts->cols);
    return 0;
}

static int check_id(const char *id, struct rpc_error *err)
{
    char b[256];

    if (!id || !*id)
        return fail(err, RPC_INVALID_ARGUMENT, "job id is empty");
    if (!id_is_valid(id))
        return fail(err, RPC_INVALID_ARGUMENT,
                    "malformed job id '%s' (expected a lower-case UUID such as "
                    "3f2b6c1e-8a4d-4c2e-9b1f-0a1b2c3d4e5f)",
                    shorten(id, b, sizeof(b)));
    return 0;
}

static int check_limit(const char *what, uint64_t asked, uint64_t dflt, uint64_t min,
                       const char *why_min, uint64_t max, uint64_t *ret, struct rpc_error *err)
{
    if (asked == 0) {
        *ret = dflt;
        return 0;
    }
    if (max && asked > max)
        return fail(err, RPC_INVALID_ARGUMENT, "limits.%s=%llu is above the server's maximum %llu",
                    what, (unsigned long long)asked, (unsigned long long)max);
    if (asked < min)
        return fail(err, RPC_INVALID_ARGUMENT, "limits.%s=%llu is below the minimum %llu (%s)",
                    what, (unsigned long long)asked, (unsigned long long)min, why_min);
    *ret = asked;
    return 0;
}

int rpc_check_start(const Runjob__V1__StartRequest *req, const struct rpc_policy *p,
                    struct limits *ret_limits, struct rpc_error *err)
{
    static const Runjob__V1__Limits no_limits = RUNJOB__V1__LIMITS__INIT;
    const Runjob__V1__Limits *l = req->limits ? req->limits : &no_limits;
    struct limits out;
    size_t total = 0;
    char b[256];

    if (!req->command || !*req->command)
        return fail(err, RPC_INVALID_ARGUMENT, "command is empty (give an absolute path)");
    if (req->command[0] != '/')
        return fail(err, RPC_INVALID_ARGUMENT, "command '%s' is not an absolute path",
                    shorten(req->command, b, sizeof(b)));
    if (strlen(req->command) > RPC_MAX_PATH_BYTES)
        return fail(err, RPC_INVALID_ARGUMENT, "command path is longer than %d bytes",
                    RPC_MAX_PATH_BYTES);
    if (req->n_args > RPC_MAX_ARGS)
        return fail(err, RPC_INVALID_ARGUMENT, "too many arguments: %zu (at most %d)", req->n_args,
                    RPC_MAX_ARGS);
    for (size_t i = 0; i < req->n_args; i++)
        total += strlen(req->args[i] ? req->args[i] : "") + 1;
    if (total > RPC_MAX_ARGS_BYTES)
        return fail(err, RPC_INVALID_ARGUMENT, "arguments total %zu bytes (at most %d)", total,
                    RPC_MAX_ARGS_BYTES);
    if (req->n_env > RPC_MAX_ENV)
        return fail(err, RPC_INVALID_ARGUMENT, "too many environment variables: %zu (at most %d)",
                    req->n_env, RPC_MAX_ENV);
    total = 0;
    for (size_t i = 0; i < req->n_env; i++) {
        const char *kv = req->env[i] ? req->env[i] : "";
        size_t klen = strcspn(kv, "=");
        total += strlen(kv) + 1;
        if (klen == 0 || kv[klen] != '=')
            return fail(err, RPC_INVALID_ARGUMENT, "env[%zu] '%s' is not KEY=VALUE", i,
                        shorten(kv, b, sizeof(b)));
    }
    if (total > RPC_MAX_ENV_BYTES)
        return fail(err, RPC_INVALID_ARGUMENT, "environment totals %zu bytes (at most %d)", total,
                    RPC_MAX_ENV_BYTES);
    if (req->workdir && req->workdir[0] && req->workdir[0] != '/')
        return fail(err, RPC_INVALID_ARGUMENT, "workdir '%s' is not an absolute path",
                    shorten(req->workdir, b, sizeof(b)));
    if (req->workdir && strlen(req->workdir) > RPC_MAX_PATH_BYTES)
        return fail(err, RPC_INVALID_ARGUMENT, "workdir is longer than %d bytes",
                    RPC_MAX_PATH_BYTES);
    if (req->timeout_millis > (uint64_t)RPC_MAX_TIMEOUT_MS)
        return fail(err, RPC_INVALID_ARGUMENT,
                    "timeout_millis=%llu is above the maximum %lld (ten years)",
                    (unsigned long long)req->timeout_millis, (long long)RPC_MAX_TIMEOUT_MS);
    if (req->name && !rpc_name_is_valid(req->name, RPC_MAX_NAME_BYTES))
        return fail(err, RPC_INVALID_ARGUMENT,
                    "job name '%s' is not valid (at most %d bytes of UTF-8, no control "
                    "characters)",
                    shorten(req->name, b, sizeof(b)), RPC_MAX_NAME_BYTES);
    if (req->network != RUNJOB__V1__NETWORK_MODE__NETWORK_MODE_NONE &&
        req->network != RUNJOB__V1__NETWORK_MODE__NETWORK_MODE_HOST)
        return fail(err, RPC_INVALID_ARGUMENT, "unknown network mode %d", (int)req->network);
    if (req->input != RUNJOB__V1__INPUT_MODE__INPUT_MODE_NONE &&
        req->input != RUNJOB__V1__INPUT_MODE__INPUT_MODE_PIPE &&
        req->input != RUNJOB__V1__INPUT_MODE__INPUT_MODE_TTY)
        return fail(err, RPC_INVALID_ARGUMENT, "unknown input mode %d", (int)req->input);
    if (check_terminal_size(req->terminal_size, "terminal_size", err) < 0)
        return -1;
    if (req->network == RUNJOB__V1__NETWORK_MODE__NETWORK_MODE_HOST && !p->allow_host_network)
        return fail(err, RPC_PERMISSION_DENIED,
                    "host networking is not allowed on this server (--allow-host-network)");
#define LIM(f, min, why)                                                                           \
    if (check_limit(#f, l->f, p->defaults.f, min, why, p->maxima.f, &out.f, err) < 0)              \
        return -1;
    LIM(cpu_millis, RPC_MIN_CPU_MILLIS, "the kernel's smallest CPU quota")
    LIM(memory_bytes, RPC_MIN_MEMORY_BYTES, "1 MiB: less cannot even start a program")
    LIM(io_riops, 0, "")
    LIM(io_wiops, 0, "")
    LIM(io_rbps, 0, "")
    LIM(io_wbps, 0, "")
    LIM(pids, RPC_MIN_PIDS, "the job's init and the command")
#undef LIM
    *ret_limits = out;
    return 0;
}

int rpc_check_stop(const Runjob__V1__StopRequest *req, const struct rpc_policy *p, int *ret_signal,
                   int64_t *ret_grace_ms, struct rpc_error *err)
{
    if (check_id(req->id, err) < 0)
        return -1;
    if (req->signal < 0 || req->signal > SIGRTMAX)
        return fail(err, RPC_INVALID_ARGUMENT, "signal %d is not a valid signal number",
                    (int)req->signal);
    if (req->grace_millis > RPC_MAX_GRACE_MS)
        return fail(err, RPC_INVALID_ARGUMENT, "grace_millis=%lld is above the maximum %d",
                    (long long)req->grace_millis, RPC_MAX_GRACE_MS);
    *ret_signal = req->signal ? req->signal : p->default_signal ? p->default_signal : SIGTERM;
    *ret_grace_ms = req->grace_millis == 0  ? p->default_grace_ms
                    : req->grace_millis < 0 ? -1
                                            : req->grace_millis;
    return 0;
}

int rpc_check_status(const Runjob__V1__StatusRequest *req, struct rpc_error *err)
{
    return check_id(req->id, err);
}

int rpc_check_remove(const Runjob__V1__RemoveRequest *req, struct rpc_error *err)
{
    return check_id(req->id, err);
}

int rpc_check_stream(const Runjob__V1__StreamRequest *req, struct rpc_error *err)
{
    if (check_id(req->id, err) < 0)
        return -1;
    switch (req->select) {
    case RUNJOB__V1__OUTPUT_SELECT__OUTPUT_SELECT_ALL:
    case RUNJOB__V1__OUTPUT_SELECT__OUTPUT_SELECT_STDOUT:
    case RUNJOB__V1__OUTPUT_SELECT__OUTPUT_SELECT_STDERR:
        return 0;
    case _RUNJOB__V1__OUTPUT_SELECT_IS_INT_SIZE:
    default:
        return fail(err, RPC_INVALID_ARGUMENT, "unknown output selection %d", (int)req->select);
    }
}

int rpc_check_input(const Runjob__V1__InputRequest *req, bool first, struct rpc_error *err)
{
    if (first && check_id(req->id, err) < 0)
        return -1;
    if (!first && req->id && req->id[0])
        return fail(err, RPC_INVALID_ARGUMENT, "only the first Input message names the job");
    if (req->data.len > RPC_MAX_INPUT_BYTES)
        return fail(err, RPC_INVALID_ARGUMENT, "Input data of %zu bytes is over the %d a message",
                    req->data.len, RPC_MAX_INPUT_BYTES);
    return check_terminal_size(req->terminal_size, "terminal_size", err);
}

/* ---- the published design's requests (jobmanager.v1) ------------------------------------- */

int rpc_check_jobmanager_start(const Jobmanager__V1__JobCreationRequest *req,
                               const struct rpc_policy *p, struct limits *ret_limits,
                               struct rpc_error *err)
{
    Runjob__V1__StartRequest ours = RUNJOB__V1__START_REQUEST__INIT;
    char b[256];

    /* In the message's own words first; the rest reads the same for both. */
    if (!req->programpath || !*req->programpath)
        return fail(err, RPC_INVALID_ARGUMENT, "programPath is empty (give an absolute path)");
    if (req->programpath[0] != '/')
        return fail(err, RPC_INVALID_ARGUMENT, "programPath '%s' is not an absolute path",
                    shorten(req->programpath, b, sizeof(b)));
    ours.name = req->name;
    ours.command = req->programpath;
    ours.args = req->arguments;
    ours.n_args = req->n_arguments;
    return rpc_check_start(&ours, p, ret_limits, err);
}

int rpc_check_jobmanager_id(const Jobmanager__V1__JobId *req, struct rpc_error *err)
{
    return check_id(req->id, err);
}

int rpc_check_jobmanager_stream(const Jobmanager__V1__StreamOutputRequest *req,
                                struct rpc_error *err)
{
    if (!req->jobid)
        return fail(err, RPC_INVALID_ARGUMENT, "jobId is missing");
    if (check_id(req->jobid->id, err) < 0)
        return -1;
    switch (req->outputstream) {
    case JOBMANAGER__V1__OUTPUT_STREAM__UNSPECIFIED:
    case JOBMANAGER__V1__OUTPUT_STREAM__STDOUT:
    case JOBMANAGER__V1__OUTPUT_STREAM__STDERR:
        return 0;
    case _JOBMANAGER__V1__OUTPUT_STREAM_IS_INT_SIZE:
    default:
        return fail(err, RPC_INVALID_ARGUMENT, "unknown outputStream %d", (int)req->outputstream);
    }
}

/* true when m, or a message inside it, kept an unknown field whose number no valid message
 * has (0, or above 2^29-1). protobuf-c 1.4 refuses a one-byte tag of field 0 but takes the
 * same tag written in two or more bytes (0x80 0x00), and then packs it back as the one byte
 * it refuses: found by the fuzz tier (test/fuzz/regressions/rpc_list/). */
static bool has_bad_field_number(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;

    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0 || m->unknown_fields[i].tag > 0x1fffffff)
            return true;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *member = (const char *)m + f->offset;

        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            ProtobufCMessage *const *sub = *(ProtobufCMessage *const *const *)member;
            for (size_t j = 0; j < n; j++)
                if (sub[j] && has_bad_field_number(sub[j]))
                    return true;
        } else {
            const ProtobufCMessage *sub = *(ProtobufCMessage *const *)member;
            if (sub && has_bad_field_number(sub))
                return true;
        }
    }
    return false;
}

/* ---- what protobuf-c lets through ----------------------------------------------------------- */

static bool wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret)
{
    uint64_t v = 0;

    for (unsigned shift = 0; shift < 70 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << (shift < 64 ? shift : 63);
        if (!(b & 0x80)) {
            *ret = v;
            return true;
        }
    }
    return false;
}

/* The wire type a field's values travel with: 0 varint, 1 64-bit, 2 length-delimited, 5 32-bit. */
static unsigned wire_type_of(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 1;
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return 5;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return 2;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_BOOL:
    case PROTOBUF_C_TYPE_ENUM:
    default:
        return 0;
    }
}

#define WIRE_MAX_DEPTH  8
#define WIRE_MAX_FIELDS 64

/* Walks the bytes of a message protobuf-c has already decoded and refuses what it lets through
 * silently: a known field sent with another wire type (a bool sent as a string reads as
 * true), and a string that is not UTF-8 (proto3 requires it) or holds a NUL byte (protobuf-c
 * keeps a string only up to its first NUL, so "/bin/true\0junk" would quietly act as
 * "/bin/true"). Nested messages are walked too; prefix names the path ("limits."). */
static int check_wire(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
                      const char *prefix, int depth, struct rpc_error *err)
{
    const uint8_t *end = p + len;
    unsigned seen[WIRE_MAX_FIELDS] = {0};

    while (p < end) {
        const ProtobufCFieldDescriptor *f;
        uint64_t key, n = 0;
        const uint8_t *val;
        unsigned wt, index = 0;
        char name[160];

        if (!wire_varint(&p, end, &key) || key >> 3 > UINT32_MAX)
            return 0; /* protobuf-c accepted the message; leave its framing to it */
        wt = key & 7;
        switch (wt) {
        case 0:
            if (!wire_varint(&p, end, &n))
                return 0;
            break;
        case 1:
        case 5:
            n = wt == 1 ? 8 : 4;
            if ((uint64_t)(end - p) < n)
                return 0;
            p += n;
            break;
        case 2:
            if (!wire_varint(&p, end, &n) || n > (uint64_t)(end - p))
                return 0;
            p += n;
            break;
        default:
            return 0;
        }
        f = protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3));
        if (!f)
            continue; /* unknown fields are allowed (and kept) */
        if (f - desc->fields >= 0 && f - desc->fields < WIRE_MAX_FIELDS)
            index = seen[f - desc->fields]++;
        if (f->label == PROTOBUF_C_LABEL_REPEATED)
            (void)snprintf(name, sizeof(name), "%s%s[%u]", prefix, f->name, index);
        else
            (void)snprintf(name, sizeof(name), "%s%s", prefix, f->name);
        if (wt != wire_type_of(f->type) &&
            !(wt == 2 && f->label == PROTOBUF_C_LABEL_REPEATED && wire_type_of(f->type) != 2))
            return fail(err, RPC_INVALID_ARGUMENT,
                        "malformed request: field %s was sent with the wrong protobuf wire type",
                        name);
        if (wt != 2)
            continue;
        val = p - n;
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            for (size_t i = 0; i < n;) {
                uint32_t cp;
                size_t l = utf8_next(val + i, (size_t)n - i, &cp);
                if (l == 0)
                    return fail(err, RPC_INVALID_ARGUMENT,
                                "%s is not valid UTF-8 (bad byte at offset %zu)", name, i);
                if (cp == 0)
                    return fail(err, RPC_INVALID_ARGUMENT, "%s contains a NUL byte (at offset %zu)",
                                name, i);
                i += l;
            }
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE && depth < WIRE_MAX_DEPTH) {
            char sub[170];
            (void)snprintf(sub, sizeof(sub), "%s.", name);
            if (check_wire(f->descriptor, val, (size_t)n, sub, depth + 1, err) < 0)
                return -1;
        }
    }
    return 0;
}

ProtobufCMessage *rpc_unpack_request(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
                                     size_t len, struct rpc_error *err)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, buf);

    if (m && has_bad_field_number(m)) {
        protobuf_c_message_free_unpacked(m, NULL);
        m = NULL;
    }
    if (!m) {
        (void)fail(err, RPC_INVALID_ARGUMENT, "malformed request: not a valid %s message",
                   desc->short_name);
        return NULL;
    }
    if (check_wire(desc, buf, len, "", 0, err) < 0) {
        protobuf_c_message_free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

/* ---- methods --------------------------------------------------------------------------- */

#define SERVICE_PATH     "/runjob.v1.JobManager/"
#define JOBMANAGER_PATH  "/jobmanager.v1.JobManager/"
#define JOBMANAGER_AUDIT "jobmanager.v1/"

/* In the protos' order; test_rpc checks them against the service descriptors protoc-c makes. */
static const char *const method_paths[RPC_M_COUNT] = {
    [RPC_M_START] = SERVICE_PATH "Start",
    [RPC_M_STOP] = SERVICE_PATH "Stop",
    [RPC_M_STATUS] = SERVICE_PATH "Status",
    [RPC_M_LIST] = SERVICE_PATH "List",
    [RPC_M_STREAM] = SERVICE_PATH "Stream",
    [RPC_M_PING] = SERVICE_PATH "Ping",
    [RPC_M_METRICS] = SERVICE_PATH "Metrics",
    [RPC_M_REMOVE] = SERVICE_PATH "Remove",
    [RPC_M_INPUT] = SERVICE_PATH "Input",
    [RPC_M_JOBMANAGER_START] = JOBMANAGER_PATH "Start",
    [RPC_M_JOBMANAGER_STOP] = JOBMANAGER_PATH "Stop",
    [RPC_M_JOBMANAGER_QUERY] = JOBMANAGER_PATH "Query",
    [RPC_M_JOBMANAGER_LIST] = JOBMANAGER_PATH "List",
    [RPC_M_JOBMANAGER_STREAM_OUTPUT] = JOBMANAGER_PATH "StreamOutput",
};

/* The published design's names carry their package: its Start is not ours. */
static const char *const jobmanager_names[RPC_M_COUNT - RPC_M_JOBMANAGER_FIRST] = {
    JOBMANAGER_AUDIT "Start", JOBMANAGER_AUDIT "Stop",         JOBMANAGER_AUDIT "Query",
    JOBMANAGER_AUDIT "List",  JOBMANAGER_AUDIT "StreamOutput",
};

const char *rpc_method_path(enum rpc_method m)
{
    return (unsigned)m < RPC_M_COUNT ? method_paths[m] : NULL;
}

const char *rpc_method_name(enum rpc_method m)
{
    if ((unsigned)m >= RPC_M_COUNT)
        return NULL;
    if (m >= RPC_M_JOBMANAGER_FIRST)
        return jobmanager_names[m - RPC_M_JOBMANAGER_FIRST];
    return method_paths[m] + sizeof(SERVICE_PATH) - 1;
}

const ProtobufCMessageDescriptor *rpc_request_descriptor(enum rpc_method m)
{
    switch (m) {
    case RPC_M_START:
        return &runjob__v1__start_request__descriptor;
    case RPC_M_STOP:
        return &runjob__v1__stop_request__descriptor;
    case RPC_M_STATUS:
        return &runjob__v1__status_request__descriptor;
    case RPC_M_LIST:
        return &runjob__v1__list_request__descriptor;
    case RPC_M_STREAM:
        return &runjob__v1__stream_request__descriptor;
    case RPC_M_PING:
        return &runjob__v1__ping_request__descriptor;
    case RPC_M_METRICS:
        return &runjob__v1__metrics_request__descriptor;
    case RPC_M_REMOVE:
        return &runjob__v1__remove_request__descriptor;
    case RPC_M_INPUT:
        return &runjob__v1__input_request__descriptor;
    case RPC_M_JOBMANAGER_START:
        return &jobmanager__v1__job_creation_request__descriptor;
    case RPC_M_JOBMANAGER_STOP:
    case RPC_M_JOBMANAGER_QUERY:
        return &jobmanager__v1__job_id__descriptor;
    case RPC_M_JOBMANAGER_LIST:
        return &jobmanager__v1__nil_message__descriptor;
    case RPC_M_JOBMANAGER_STREAM_OUTPUT:
        return &jobmanager__v1__stream_output_request__descriptor;
    case RPC_M_COUNT:
    default:
        return NULL;
    }
}

int rpc_request_decode(enum rpc_method m, const uint8_t *buf, size_t len,
                       const struct rpc_policy *p, struct rpc_request *ret, struct rpc_error *err)
{
    const ProtobufCMessageDescriptor *desc = rpc_request_descriptor(m);
    struct rpc_request rq = {.method = m};
    int r = 0;

    if (!desc)
        return fail(err, RPC_UNIMPLEMENTED, "unknown method");
    rq.msg = rpc_unpack_request(desc, buf, len, err);
    if (!rq.msg)
        return -1;
    switch (m) {
    case RPC_M_START:
        r = rpc_check_start((const Runjob__V1__StartRequest *)rq.msg, p, &rq.limits, err);
        break;
    case RPC_M_STOP:
        r = rpc_check_stop((const Runjob__V1__StopRequest *)rq.msg, p, &rq.signal, &rq.grace_ms,
                           err);
        break;
    case RPC_M_STATUS:
        r = rpc_check_status((const Runjob__V1__StatusRequest *)rq.msg, err);
        break;
    case RPC_M_STREAM:
        r = rpc_check_stream((const Runjob__V1__StreamRequest *)rq.msg, err);
        break;
    case RPC_M_REMOVE:
        r = rpc_check_remove((const Runjob__V1__RemoveRequest *)rq.msg, err);
        break;
    case RPC_M_INPUT:
        r = rpc_check_input((const Runjob__V1__InputRequest *)rq.msg, true, err);
        break;
    case RPC_M_JOBMANAGER_START:
        r = rpc_check_jobmanager_start((const Jobmanager__V1__JobCreationRequest *)rq.msg, p,
                                       &rq.limits, err);
        break;
    case RPC_M_JOBMANAGER_STOP:
    case RPC_M_JOBMANAGER_QUERY:
        r = rpc_check_jobmanager_id((const Jobmanager__V1__JobId *)rq.msg, err);
        break;
    case RPC_M_JOBMANAGER_STREAM_OUTPUT:
        r = rpc_check_jobmanager_stream((const Jobmanager__V1__StreamOutputRequest *)rq.msg, err);
        break;
    case RPC_M_LIST: /* no fields to check */
    case RPC_M_PING:
    case RPC_M_METRICS:
    case RPC_M_JOBMANAGER_LIST:
    case RPC_M_COUNT:
    default:
        break;
    }
    if (r < 0) {
        protobuf_c_message_free_unpacked(rq.msg, NULL);
        return -1;
    }
    *ret = rq;
    return 0;
}

/* ---- chunk framing --------------------------------------------------------------------- */

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;

    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

size_t rpc_chunk_header_encode(uint8_t hdr[RPC_CHUNK_HDR_MAX], int stream, uint64_t offset,
                               int64_t time_ms, size_t data_len)
{
    size_t n = 0;

    /* Field order on the wire is free in protobuf; data goes last so that it can follow. */
    if (stream) {
        hdr[n++] = 2 << 3 | 0; /* stream, varint */
        n += put_varint(hdr + n, (uint64_t)(int64_t)stream);
    }
    if (offset) {
        hdr[n++] = 3 << 3 | 0; /* offset, varint */
        n += put_varint(hdr + n, offset);
    }
    if (time_ms) {
        hdr[n++] = 4 << 3 | 0; /* time_ms, int64 as varint (two's complement) */
        n += put_varint(hdr + n, (uint64_t)time_ms);
    }
    hdr[n++] = 1 << 3 | 2; /* data, length-delimited */
    n += put_varint(hdr + n, data_len);
    return n; /* streams 1/2: at most 2 + 11 + 11 + 11 = 35 <= RPC_CHUNK_HDR_MAX */
}

/* ---- byte buffers ---------------------------------------------------------------------- */

grpc_byte_buffer *rpc_bb_pack(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(n);
    grpc_byte_buffer *bb;

    (void)protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* The bytes of a received message as one slice (a new reference; zero-copy when the buffer
 * is one plain slice). 0, or -1 with err filled. */
static int bb_bytes(grpc_byte_buffer *bb, grpc_slice *ret, struct rpc_error *err)
{
    grpc_byte_buffer_reader r;

    if (!bb)
        return fail(err, RPC_INVALID_ARGUMENT, "missing request message");
    if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
        bb->data.raw.slice_buffer.count == 1) {
        *ret = grpc_slice_ref(bb->data.raw.slice_buffer.slices[0]);
        return 0;
    }
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return fail(err, RPC_INVALID_ARGUMENT, "malformed request: cannot decompress");
    *ret = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    return 0;
}

ProtobufCMessage *rpc_bb_unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb,
                                struct rpc_error *err)
{
    ProtobufCMessage *m;
    grpc_slice s;

    if (bb_bytes(bb, &s, err) < 0)
        return NULL;
    m = rpc_unpack_request(desc, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), err);
    grpc_slice_unref(s);
    return m;
}

int rpc_bb_decode(enum rpc_method m, grpc_byte_buffer *bb, const struct rpc_policy *p,
                  struct rpc_request *ret, struct rpc_error *err)
{
    grpc_slice s;
    int r;

    if (bb_bytes(bb, &s, err) < 0)
        return -1;
    r = rpc_request_decode(m, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), p, ret, err);
    grpc_slice_unref(s);
    return r;
}

void rpc_error_vset(struct rpc_error *err, int code, const char *fmt, va_list ap)
{
    if (!err)
        return;
    err->code = code;
    (void)vsnprintf(err->message, sizeof(err->message), fmt, ap);
}

void rpc_error_set(struct rpc_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    rpc_error_vset(err, code, fmt, ap);
    va_end(ap);
}

/* absl::SetMutexDeadlockDetectionMode (absl/synchronization/mutex.h) by its symbol in Debian
 * 12's absl (inline namespace debian3): C cannot include the C++ header. Weak: another absl
 * leaves it NULL, and nothing changes. */
extern void absl_set_mutex_deadlock_detection_mode(int mode) __asm__(
    "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE") __attribute__((weak));
#define ABSL_ON_DEADLOCK_CYCLE_IGNORE 0 /* absl::OnDeadlockCycle::kIgnore */

void rpc_grpc_init(void)
{
    /* Debian's absl is built without NDEBUG, so every absl::Mutex lock (gRPC's mutexes) also
     * feeds a process-wide lock graph for deadlock detection, a debugging aid that absl turns
     * off in release builds: in a client process the graph's CPU and ~19 page faults of its
     * arena (bench/RESULTS.md "Cold client"); in the server a global spin lock beside every
     * gRPC mutex (one stream showed no difference: 1.0-1.1 s of server CPU per GiB either
     * way). Off, as in a release build, before gRPC starts its threads. */
    if (absl_set_mutex_deadlock_detection_mode)
        absl_set_mutex_deadlock_detection_mode(ABSL_ON_DEADLOCK_CYCLE_IGNORE);
    grpc_init();
}
