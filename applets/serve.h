#pragma once
/* The serve applet's flag value parsers, pure (no I/O), exported for the unit tests and the
 * fuzzers (test/fuzz/fuzz_flags.c). Output parameters are written only on success. */
#include <stdint.h>
#include <sys/types.h>

/* Digits only ("0".."18446744073709551615"): no sign, space or suffix. 0 or -EINVAL. */
int serve_parse_count(const char *s, uint64_t *ret);
/* A count with an optional unit: B, K/KB/M/MB/G/GB/T/TB (powers of 1000), Ki/KiB/Mi/MiB/Gi/GiB/
 * Ti/TiB (powers of 1024). 0, -EINVAL, -ERANGE (overflow). */
int serve_parse_size(const char *s, uint64_t *ret);
/* A duration of at most RPC_MAX_GRACE_MS: N (seconds), Nms, Ns, Nm, Nh. 0, -EINVAL, -ERANGE. */
int serve_parse_duration_ms(const char *s, int64_t *ret);
/* --job-user in its numeric form "UID" (GID = UID) or "UID:GID". 0, -ENOENT (not that form:
 * a user name), -EINVAL (bad GID), -ERANGE (an id of 2^32-1 or more). */
int serve_parse_ids(const char *s, uid_t *ret_uid, gid_t *ret_gid);
