#include "strbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first allocation: a status record or a status reply's JSON fits in one or two. */
#define STRBUF_MIN_CAP 256

struct strbuf {
    char *p; /* NULL until the first append */
    size_t len, cap;
    bool failed;
};

int strbuf_new(struct strbuf **ret)
{
    struct strbuf *b = calloc(1, sizeof(*b));

    if (!b)
        return -ENOMEM;
    *ret = b;
    return 0;
}

void strbuf_free(struct strbuf *b)
{
    if (!b)
        return;
    free(b->p);
    free(b);
}

static int fail(struct strbuf *b)
{
    b->failed = true;
    return -ENOMEM;
}

/* Room for n more bytes and the NUL. 0 or -ENOMEM (b failed). */
static int reserve(struct strbuf *b, size_t n)
{
    size_t need, cap;
    char *p;

    if (b->failed)
        return -ENOMEM;
    if (n > SIZE_MAX - b->len - 1)
        return fail(b);
    need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : STRBUF_MIN_CAP;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = realloc(b->p, cap);
    if (!p)
        return fail(b);
    b->p = p;
    b->cap = cap;
    return 0;
}

int strbuf_putn(struct strbuf *b, const char *s, size_t n)
{
    int r = reserve(b, n);

    if (r < 0)
        return r;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int strbuf_puts(struct strbuf *b, const char *s)
{
    return strbuf_putn(b, s, strlen(s));
}

int strbuf_printf(struct strbuf *b, const char *fmt, ...)
{
    va_list ap;
    size_t room;
    int n, r;

    if (b->failed)
        return -ENOMEM;
    /* Straight into the free tail when it fits; else measure, grow and print again. */
    room = b->cap - b->len;
    va_start(ap, fmt);
    n = vsnprintf(room ? b->p + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        if (b->p)
            b->p[b->len] = '\0'; /* vsnprintf may have written part of it */
        return -EINVAL;
    }
    if ((size_t)n >= room) {
        r = reserve(b, (size_t)n);
        if (r < 0) {
            if (b->p)
                b->p[b->len] = '\0';
            return r;
        }
        va_start(ap, fmt);
        n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->p[b->len] = '\0';
            return -EINVAL;
        }
    }
    b->len += (size_t)n;
    return 0;
}

const char *strbuf_str(const struct strbuf *b)
{
    return b->p ? b->p : "";
}

size_t strbuf_len(const struct strbuf *b)
{
    return b->len;
}

bool strbuf_is_failed(const struct strbuf *b)
{
    return b->failed;
}

int strbuf_detach(struct strbuf *b, char **ret_str)
{
    char *s;

    if (b->failed)
        return -ENOMEM;
    s = b->p ? b->p : strdup("");
    if (!s)
        return -ENOMEM;
    b->p = NULL;
    b->len = b->cap = 0;
    *ret_str = s;
    return 0;
}
