#pragma once
/* Job ids as text: the canonical lower-case UUID that names a job on the wire, in the state
 * directory and in cgroups. Its own module so that the job table, core/rpc and the client
 * check ids alike without depending on one another. */
#include <stdbool.h>

#define ID_LEN 36 /* 8-4-4-4-12 hex digits and their dashes */

/* true when s is a canonical UUID: 8-4-4-4-12 lower-case hex digits, then the NUL. Pure. */
bool id_is_valid(const char *s);
