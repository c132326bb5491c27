#pragma once
/* The client's contexts: named sets of connection settings (server, port, CA, certificate,
 * key), one of them current, kept in one text file, <dir>/contexts, where <dir> is
 * $XDG_CONFIG_HOME/runjob (~/.config/runjob when XDG_CONFIG_HOME is unset or not absolute).
 *
 * The file's format (written whole by cstore_save; hand edits are read the same way):
 *
 *   # a comment: '#' first on the line (after blanks)
 *   current = prod                   optional, before any section: the context in use
 *
 *   [prod]                           a context: name of letters, digits, '.', '_', '-'
 *   server-host = build.example.com  keys are the connection flags' long names, each
 *   server-port = 8443               optional and at most once; the value is the rest of the
 *   ca-cert-path = /abs/root-ca.pem  line, blanks around it dropped. certs-dir is where
 *   client-cert-path = /abs/a.pem    `-u USER` finds USER-cert.pem and USER-key.pem while the
 *   client-key-path = /abs/a-key.pem context is in use
 *   certs-dir = /abs/certs
 *
 * Paths are used as written: `runjob context add` writes them absolute, so that a context works
 * from any directory; a relative one from a hand edit is relative to the working directory.
 * Contexts are kept sorted by name. Nothing here prints; errors are -errno, and a parse error
 * also a line number and a message. */
#include <stdbool.h>
#include <stddef.h>

#include "core/cleanup.h"

#define CSTORE_FILE     "contexts"
#define CSTORE_NAME_MAX 64

/* One context; NULL / 0 for what it does not set. Owned by its store. */
struct cstore_context {
    char *name;
    char *host;
    int port;
    char *ca_path, *cert_path, *key_path, *certs_dir;
};

struct cstore;

/* The directory of the file, from the environment: 0, -ENOENT when neither XDG_CONFIG_HOME
 * (absolute) nor HOME is set, -ENAMETOOLONG. */
int cstore_dir(char *buf, size_t cap);
/* A name a context may have: 1 to CSTORE_NAME_MAX of [A-Za-z0-9._-], not starting with '-'
 * or '.'. */
bool cstore_name_is_valid(const char *name);

/* An empty store. 0 or -ENOMEM. */
int cstore_new(struct cstore **ret);
void cstore_free(struct cstore *s); /* NULL-safe */
DEFINE_CLEANUP(struct cstore *, cstore_free)

/* Parses the file's text: 0, -ENOMEM, or -EBADMSG with *ret_line (1-based) and msg set. */
int cstore_parse(const char *text, struct cstore **ret, int *ret_line, char *msg, size_t cap);
/* A line cstore_parse_salvage drops: its number (1-based) and what is wrong with it. */
typedef void (*cstore_bad_line_fn)(void *ctx, int line, const char *msg);
/* As cstore_parse, but a bad line is reported to bad and dropped (a bad [NAME] line with the
 * settings under it), so that a damaged file can be rewritten with what is good in it. 0 or
 * -ENOMEM. */
int cstore_parse_salvage(const char *text, struct cstore **ret, cstore_bad_line_fn bad, void *ctx);
/* The file's text for s (malloc'd). 0 or -ENOMEM. */
int cstore_format(const struct cstore *s, char **ret);
/* Reads and parses <dir>/contexts; a missing file (or directory) is an empty store. 0,
 * -errno from reading, or cstore_parse's errors. */
int cstore_load(const char *dir, struct cstore **ret, int *ret_line, char *msg, size_t cap);
/* cstore_load with cstore_parse_salvage's parse. */
int cstore_load_salvage(const char *dir, struct cstore **ret, cstore_bad_line_fn bad, void *ctx);
/* Writes <dir>/contexts atomically: the directory made (0700, parents too) when missing, a
 * temporary file of mode 0600 in it written, synced and renamed over the old one. 0 or
 * -errno. */
int cstore_save(const struct cstore *s, const char *dir);

size_t cstore_count(const struct cstore *s);
/* The i-th context in name order (i < cstore_count). */
const struct cstore_context *cstore_at(const struct cstore *s, size_t i);
/* The context called name, or NULL. */
const struct cstore_context *cstore_find(const struct cstore *s, const char *name);
/* The current context's name, or NULL. It may name no context (a hand edit). */
const char *cstore_current(const struct cstore *s);
/* Makes name current (NULL: none). 0, -ENOENT when there is no such context, -ENOMEM. */
int cstore_set_current(struct cstore *s, const char *name);
/* Adds a copy of c; one of that name is replaced when replace is true. 0, -EEXIST, -EINVAL
 * (an invalid name, a port out of 1-65535, a value with a newline or empty), -ENOMEM. */
int cstore_put(struct cstore *s, const struct cstore_context *c, bool replace);
/* Removes the context called name: 0, or 1 when it was the current one (none is current
 * now); -ENOENT when there is none. */
int cstore_remove(struct cstore *s, const char *name);
/* The names, ", "-separated, into buf ("" when there are none); returns buf. */
const char *cstore_names(const struct cstore *s, char *buf, size_t cap);
