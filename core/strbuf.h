#pragma once
/* A growable NUL-terminated string for building text: status records, JSON. Allocation
 * failure is sticky: the first append that cannot grow the buffer marks it failed, every later
 * append does nothing, and strbuf_detach() reports it, so a builder may ignore each append and
 * check once at the end. One owner; not thread-safe. */
#include <stdbool.h>
#include <stddef.h>

struct strbuf;

/* An empty buffer in *ret. 0 or -ENOMEM. */
int strbuf_new(struct strbuf **ret);
void strbuf_free(struct strbuf *b); /* NULL-safe */

/* Appends n bytes of s (which may hold NULs). 0, or -ENOMEM: b is failed from then on. */
int strbuf_putn(struct strbuf *b, const char *s, size_t n);
/* Appends the string s. 0 or -ENOMEM, as strbuf_putn(). */
int strbuf_puts(struct strbuf *b, const char *s);
/* Appends printf output, however long. 0, -ENOMEM as strbuf_putn(), or -EINVAL for an output
 * error of vsnprintf (b is left as it was). */
int strbuf_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The text so far, NUL-terminated ("" when empty). Valid until the next call on b. */
const char *strbuf_str(const struct strbuf *b);
size_t strbuf_len(const struct strbuf *b);
/* Whether an append failed for want of memory. */
bool strbuf_is_failed(const struct strbuf *b);

/* Gives the text away: *ret_str is malloc'd (the caller frees it) and b is left empty for
 * reuse. 0, or -ENOMEM if an append failed (b keeps its text and stays failed) or, for an
 * empty text, the copy of "" did. */
int strbuf_detach(struct strbuf *b, char **ret_str);

#include "cleanup.h"
DEFINE_CLEANUP(struct strbuf *, strbuf_free)
