#pragma once
/* The serve applet's own flag value parsers, pure (no I/O), exported for the unit tests and the
 * fuzzers (test/fuzz/fuzz_flags.c). Output parameters are written only on success. */
#include <stdint.h>
#include <sys/types.h>

/* Counts, sizes and durations go through applets/format.h (fmt_parse_uint, fmt_parse_size,
 * fmt_parse_duration), shared with the client so that a value means the same on both sides. */
/* --job-user in its numeric form "UID" (GID = UID) or "UID:GID". 0, -ENOENT (not that form:
 * a user name), -EINVAL (bad GID), -ERANGE (an id of 2^32-1 or more). */
int serve_parse_ids(const char *s, uid_t *ret_uid, gid_t *ret_gid);
