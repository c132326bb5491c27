/* The client's OutputChunk decoder (declared in core/rpc.h): pure, no grpc, so the fuzz tier
 * and the unit tests drive it with plain bytes. */
#include "rpc.h"

#include <errno.h>

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < 10; i++) {
        if (*p >= end)
            return -EBADMSG;
        uint8_t b = *(*p)++;
        if (i == 9 && b > 1) /* more than 64 bits */
            return -EBADMSG;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *ret = v;
            return 0;
        }
    }
    return -EBADMSG;
}

int rpc_chunk_parse(const uint8_t *buf, size_t len, struct rpc_chunk *ret)
{
    const uint8_t *p = buf, *end = buf + len;
    struct rpc_chunk c = {.data = buf, .len = 0};
    const uint8_t *status_bytes = NULL;
    size_t status_len = 0;
    bool have_status = false;

    if (!buf && len)
        return -EBADMSG;
    while (p < end) {
        uint64_t key, v;
        int r = read_varint(&p, end, &key);
        if (r < 0)
            return r;
        uint64_t field = key >> 3;
        unsigned wt = key & 7;
        if (field == 0 || field > 536870911u)
            return -EBADMSG;

        switch (wt) {
        case 0: /* varint */
            if ((r = read_varint(&p, end, &v)) < 0)
                return r;
            if (field == 2)
                c.stream = (int)(int32_t)v;
            else if (field == 3)
                c.offset = v;
            else if (field == 4)
                c.time_ms = (int64_t)v;
            else if (field == 1 || field == 5)
                return -EBADMSG;
            break;
        case 2: /* length-delimited */
            if ((r = read_varint(&p, end, &v)) < 0)
                return r;
            if (v > (uint64_t)(end - p))
                return -EBADMSG;
            if (field == 1) {
                c.data = p;
                c.len = (size_t)v;
            } else if (field == 5) {
                status_bytes = p;
                status_len = (size_t)v;
                have_status = true;
            } else if (field >= 2 && field <= 4) {
                return -EBADMSG;
            }
            p += v;
            break;
        case 1: /* fixed64 */
        case 5: /* fixed32 */
            if (field <= 5)
                return -EBADMSG;
            if ((size_t)(end - p) < (wt == 1 ? 8u : 4u))
                return -EBADMSG;
            p += wt == 1 ? 8 : 4;
            break;
        default: /* groups (3, 4) do not exist in proto3; 6 and 7 are invalid */
            return -EBADMSG;
        }
    }

    if (have_status) {
        c.final_status = runjob__v1__job_status__unpack(NULL, status_len, status_bytes);
        if (!c.final_status)
            return -EBADMSG; /* protobuf-c does not tell malformed from out of memory */
    }
    *ret = c;
    return 0;
}
