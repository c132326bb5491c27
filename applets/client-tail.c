/* Where `stream --tail N` begins: the offset of the last N lines of a job's output, found by
 * reading ever larger windows back from the end (64 KiB, then 4x each time), so that a
 * gigabyte of output costs a read of about its tail, not all of it. The server knows bytes,
 * not lines; the lines are counted here. */
#include <stdlib.h>
#include <string.h>

#include "applets/client.h"

#define TAIL_FIRST_WINDOW (64 * 1024)

/* The bytes of [off, end-of-output-now) of the selection, appended to *buf. 0 or -1 (err set).
 * An offset past the end is no error here: it reads nothing. */
static int read_window(struct rpc_client *c, const struct follow_opts *f, uint64_t off,
                       uint8_t **buf, size_t *len, struct rpc_error *err)
{
    Runjob__V1__StreamRequest req = RUNJOB__V1__STREAM_REQUEST__INIT;
    struct rpc_stream *s = NULL;
    struct rpc_chunk ch;
    size_t cap = 0;
    int r;

    *buf = NULL;
    *len = 0;
    req.id = (char *)f->id;
    req.select = f->select;
    req.offset = off;
    req.no_follow = true;
    if (rpc_client_stream_open(c, &req, &s, err) < 0)
        return -1;
    while ((r = rpc_client_stream_next(s, &ch, err)) > 0) {
        if (!ch.len)
            continue;
        if (*len + ch.len > cap) {
            size_t ncap = cap ? cap * 2 : 64 * 1024;
            uint8_t *nb;
            while (ncap < *len + ch.len)
                ncap *= 2;
            if (!(nb = realloc(*buf, ncap))) {
                rpc_error_set(err, RPC_RESOURCE_EXHAUSTED, "out of memory");
                r = -1;
                break;
            }
            *buf = nb;
            cap = ncap;
        }
        memcpy(*buf + *len, ch.data, ch.len);
        *len += ch.len;
    }
    rpc_client_stream_free(s);
    if (r < 0 && err->code == RPC_OUT_OF_RANGE) /* past the end of an ended job's output */
        r = 0;
    if (r < 0) {
        free(*buf);
        *buf = NULL;
        *len = 0;
        return -1;
    }
    return 0;
}

int client_tail_lines(const uint8_t *buf, size_t len, uint64_t lines, size_t *ret)
{
    size_t p = len, count = 0;

    if (lines == 0) {
        *ret = len;
        return 1;
    }
    if (p && buf[p - 1] == '\n') /* the last line's own newline starts nothing */
        p--;
    while (p > 0) {
        if (buf[p - 1] == '\n' && ++count == lines) {
            *ret = p;
            return 1;
        }
        p--;
    }
    *ret = 0;
    return 0;
}

int client_tail_offset(const struct client_opts *o, struct rpc_client *c,
                       const struct follow_opts *f, uint64_t lines, uint64_t *ret)
{
    Runjob__V1__StatusRequest sreq = RUNJOB__V1__STATUS_REQUEST__INIT;
    Runjob__V1__JobStatus *st = NULL;
    struct rpc_error err = {0};
    uint64_t end, window = TAIL_FIRST_WINDOW;

    sreq.id = (char *)f->id;
    if (rpc_client_status(c, &sreq, &st, &err) < 0)
        return client_fail(o, &err);
    /* Both outputs' bytes: the end of all, a bound on the end of one. */
    end = st->usage ? st->usage->output_bytes : 0;
    protobuf_c_message_free_unpacked(&st->base, NULL);
    for (;;) {
        uint64_t off = end > window ? end - window : 0;
        uint8_t *buf;
        size_t len, at;
        int found;

        if (read_window(c, f, off, &buf, &len, &err) < 0)
            return client_fail(o, &err);
        found = client_tail_lines(buf, len, lines, &at);
        free(buf);
        /* Nothing read past the end of one output: its end is further back. */
        if (off > 0 && (!found || (len == 0 && lines == 0))) {
            window *= 4;
            continue;
        }
        *ret = off + at;
        return 0;
    }
}
