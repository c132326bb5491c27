#include "context-store.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/proc.h"
#include "core/strbuf.h"

/* A config file is a few lines per context; anything this large is not one. */
#define CSTORE_MAX_BYTES (1024 * 1024)

struct cstore {
    struct cstore_context *v;
    size_t n;
    char *current;
};

int cstore_dir(char *buf, size_t cap)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    int n;

    /* The XDG Base Directory spec: a relative XDG_CONFIG_HOME is invalid and ignored. */
    if (xdg && xdg[0] == '/')
        n = snprintf(buf, cap, "%s/runjob", xdg);
    else if (home && *home)
        n = snprintf(buf, cap, "%s/.config/runjob", home);
    else
        return -ENOENT;
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

bool cstore_name_is_valid(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > CSTORE_NAME_MAX || name[0] == '-' || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("._-", name[i]))
            return false;
    return true;
}

int cstore_new(struct cstore **ret)
{
    struct cstore *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    *ret = s;
    return 0;
}

static void context_clear(struct cstore_context *c)
{
    free(c->name);
    free(c->host);
    free(c->ca_path);
    free(c->cert_path);
    free(c->key_path);
    free(c->certs_dir);
    memset(c, 0, sizeof(*c));
}

static void context_clearp(struct cstore_context *c)
{
    context_clear(c);
}

void cstore_free(struct cstore *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        context_clear(&s->v[i]);
    free(s->v);
    free(s->current);
    free(s);
}

size_t cstore_count(const struct cstore *s)
{
    return s->n;
}

const struct cstore_context *cstore_at(const struct cstore *s, size_t i)
{
    return i < s->n ? &s->v[i] : NULL;
}

const struct cstore_context *cstore_find(const struct cstore *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].name, name) == 0)
            return &s->v[i];
    return NULL;
}

const char *cstore_current(const struct cstore *s)
{
    return s->current;
}

static int set_current(struct cstore *s, const char *name)
{
    char *c = NULL;
    if (name && !(c = strdup(name)))
        return -ENOMEM;
    free(s->current);
    s->current = c;
    return 0;
}

int cstore_set_current(struct cstore *s, const char *name)
{
    if (name && !cstore_find(s, name))
        return -ENOENT;
    return set_current(s, name);
}

/* A value the file can hold: one line, not empty, no blanks at either end (the parser trims
 * them). */
static bool value_ok(const char *v)
{
    size_t n;
    if (!v)
        return true;
    n = strlen(v);
    return n > 0 && !strpbrk(v, "\n\r") && !isspace((unsigned char)v[0]) &&
           !isspace((unsigned char)v[n - 1]);
}

static int dup_value(const char *v, char **ret)
{
    *ret = NULL;
    if (v && !(*ret = strdup(v)))
        return -ENOMEM;
    return 0;
}

int cstore_put(struct cstore *s, const struct cstore_context *c, bool replace)
{
    struct cstore_context n = {0};
    size_t at = 0;

    if (!c->name || !cstore_name_is_valid(c->name) || c->port < 0 || c->port > 65535 ||
        !value_ok(c->host) || !value_ok(c->ca_path) || !value_ok(c->cert_path) ||
        !value_ok(c->key_path) || !value_ok(c->certs_dir))
        return -EINVAL;
    while (at < s->n && strcmp(s->v[at].name, c->name) < 0)
        at++;
    bool same = at < s->n && strcmp(s->v[at].name, c->name) == 0;
    if (same && !replace)
        return -EEXIST;

    n.port = c->port;
    if (dup_value(c->name, &n.name) < 0 || dup_value(c->host, &n.host) < 0 ||
        dup_value(c->ca_path, &n.ca_path) < 0 || dup_value(c->cert_path, &n.cert_path) < 0 ||
        dup_value(c->key_path, &n.key_path) < 0 || dup_value(c->certs_dir, &n.certs_dir) < 0) {
        context_clear(&n);
        return -ENOMEM;
    }
    if (same) {
        context_clear(&s->v[at]);
        s->v[at] = n;
        return 0;
    }
    struct cstore_context *v = realloc(s->v, (s->n + 1) * sizeof(*v));
    if (!v) {
        context_clear(&n);
        return -ENOMEM;
    }
    s->v = v;
    memmove(&v[at + 1], &v[at], (s->n - at) * sizeof(*v));
    v[at] = n;
    s->n++;
    return 0;
}

int cstore_remove(struct cstore *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->v[i].name, name) != 0)
            continue;
        context_clear(&s->v[i]);
        memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof(*s->v));
        s->n--;
        if (s->current && strcmp(s->current, name) == 0) {
            free(TAKE_PTR(s->current));
            return 1;
        }
        return 0;
    }
    return -ENOENT;
}

const char *cstore_names(const struct cstore *s, char *buf, size_t cap)
{
    size_t len = 0;

    if (cap)
        buf[0] = '\0';
    for (size_t i = 0; i < s->n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", s->v[i].name);
    return buf;
}

/* ---- the file ---------------------------------------------------------------------------- */

static int parse_error(int line, int *ret_line, char *msg, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int parse_error(int line, int *ret_line, char *msg, size_t cap, const char *fmt, ...)
{
    va_list ap;

    *ret_line = line;
    va_start(ap, fmt);
    (void)vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return -EBADMSG;
}

static char *trim(char *s)
{
    char *e;
    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* The field of c that key names, or NULL (port is apart: a number). */
static char **field(struct cstore_context *c, const char *key)
{
    if (strcmp(key, "server-host") == 0)
        return &c->host;
    if (strcmp(key, "ca-cert-path") == 0)
        return &c->ca_path;
    if (strcmp(key, "client-cert-path") == 0)
        return &c->cert_path;
    if (strcmp(key, "client-key-path") == 0)
        return &c->key_path;
    if (strcmp(key, "certs-dir") == 0)
        return &c->certs_dir;
    return NULL;
}

/* Strict (bad NULL): the first bad line is the error. Salvaging: each bad line goes to bad and
 * is dropped, with the settings under a bad [NAME] line, and the rest is kept. */
static int parse(const char *text, struct cstore **ret, int *ret_line, char *msg, size_t cap,
                 cstore_bad_line_fn bad, void *ctx)
{
    _cleanup_(cstore_freep) struct cstore *s = NULL;
    _cleanup_free_ char *copy = strdup(text);
    _cleanup_(context_clearp) struct cstore_context cur = {0};
    bool in_section = false, skipping = false;
    char *next = copy;
    int line = 0, r;

#define BAD(...)                                                                                   \
    do {                                                                                           \
        r = parse_error(line, ret_line, msg, cap, __VA_ARGS__);                                    \
        if (!bad)                                                                                  \
            return r;                                                                              \
        bad(ctx, line, msg);                                                                       \
    } while (0)

    if (!copy || cstore_new(&s) < 0)
        return -ENOMEM;
    /* strtok_r would merge empty lines and so miscount them: split by hand. */
    for (char *l = next; l; l = next) {
        char *nl = strchr(l, '\n');
        next = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        line++;
        char *t = trim(l);
        if (!*t || *t == '#')
            continue;
        if (*t == '[') {
            size_t n = strlen(t);
            if (in_section && (r = cstore_put(s, &cur, false)) < 0)
                return r == -ENOMEM ? r : parse_error(line, ret_line, msg, cap, "bad context");
            context_clear(&cur);
            in_section = false;
            skipping = true; /* until this line proves a good [NAME] */
            if (t[n - 1] != ']') {
                BAD("a section is [NAME]");
                continue;
            }
            t[n - 1] = '\0';
            char *name = trim(t + 1);
            if (!cstore_name_is_valid(name)) {
                BAD("'%s' is not a context name (letters, digits, '.', '_', '-')", name);
                continue;
            }
            if (cstore_find(s, name)) {
                BAD("context '%s' is defined twice", name);
                continue;
            }
            if (!(cur.name = strdup(name)))
                return -ENOMEM;
            in_section = true;
            skipping = false;
            continue;
        }
        if (skipping)
            continue; /* a setting of a dropped section: reported with its [NAME] */
        char *eq = strchr(t, '=');
        if (!eq) {
            BAD("expected KEY = VALUE or [NAME]");
            continue;
        }
        *eq = '\0';
        char *key = trim(t), *val = trim(eq + 1);
        if (!*val) {
            BAD("'%s' has no value", key);
            continue;
        }
        if (!in_section) {
            if (strcmp(key, "current") != 0) {
                BAD("'%s' before any [NAME] section (only 'current' goes there)", key);
                continue;
            }
            if (s->current) {
                BAD("'current' is set twice");
                continue;
            }
            if (set_current(s, val) < 0)
                return -ENOMEM;
            continue;
        }
        char **f = field(&cur, key);
        bool dup = f ? *f != NULL : strcmp(key, "server-port") == 0 && cur.port;
        if (!f && strcmp(key, "server-port") != 0) {
            BAD("unknown key '%s' (server-host, server-port, ca-cert-path, client-cert-path, "
                "client-key-path, certs-dir)",
                key);
            continue;
        }
        if (dup) {
            BAD("'%s' is set twice", key);
            continue;
        }
        if (!f) {
            char *end;
            errno = 0;
            long p = strtol(val, &end, 10);
            if (errno || *end || p < 1 || p > 65535 || !isdigit((unsigned char)*val)) {
                BAD("server-port '%s' is not a port (1-65535)", val);
                continue;
            }
            cur.port = (int)p;
        } else if (!(*f = strdup(val))) {
            return -ENOMEM;
        }
    }
    if (in_section) {
        r = cstore_put(s, &cur, false);
        context_clear(&cur);
        if (r < 0)
            return r == -ENOMEM ? r : parse_error(line, ret_line, msg, cap, "bad context");
    }
    *ret = TAKE_PTR(s);
    return 0;
#undef BAD
}

int cstore_parse(const char *text, struct cstore **ret, int *ret_line, char *msg, size_t cap)
{
    return parse(text, ret, ret_line, msg, cap, NULL, NULL);
}

int cstore_parse_salvage(const char *text, struct cstore **ret, cstore_bad_line_fn bad, void *ctx)
{
    char msg[256];
    int line;

    return parse(text, ret, &line, msg, sizeof(msg), bad, ctx);
}

int cstore_format(const struct cstore *s, char **ret)
{
    _cleanup_(strbuf_freep) struct strbuf *b = NULL;

    if (strbuf_new(&b) < 0)
        return -ENOMEM;
    (void)strbuf_puts(b, "# runjob contexts: `runjob context --help` describes this file\n");
    if (s->current)
        (void)strbuf_printf(b, "current = %s\n", s->current);
    for (size_t i = 0; i < s->n; i++) {
        const struct cstore_context *c = &s->v[i];
        (void)strbuf_printf(b, "\n[%s]\n", c->name);
        if (c->host)
            (void)strbuf_printf(b, "server-host = %s\n", c->host);
        if (c->port)
            (void)strbuf_printf(b, "server-port = %d\n", c->port);
        if (c->ca_path)
            (void)strbuf_printf(b, "ca-cert-path = %s\n", c->ca_path);
        if (c->cert_path)
            (void)strbuf_printf(b, "client-cert-path = %s\n", c->cert_path);
        if (c->key_path)
            (void)strbuf_printf(b, "client-key-path = %s\n", c->key_path);
        if (c->certs_dir)
            (void)strbuf_printf(b, "certs-dir = %s\n", c->certs_dir);
    }
    if (strbuf_is_failed(b))
        return -ENOMEM;
    return strbuf_detach(b, ret);
}

/* cstore_load's reading, for a parse of either kind. */
static int load(const char *dir, struct cstore **ret, int *ret_line, char *msg, size_t cap,
                cstore_bad_line_fn bad, void *ctx)
{
    _cleanup_close_ int dfd = -1, fd = -1;
    _cleanup_free_ char *text = NULL;
    int r;

    *ret_line = 0;
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 && errno == ENOENT)
        return cstore_new(ret);
    if (dfd < 0)
        return -errno;
    fd = openat(dfd, CSTORE_FILE, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0 && errno == ENOENT)
        return cstore_new(ret);
    if (fd < 0)
        return -errno;
    if ((r = proc_read_fd(fd, CSTORE_MAX_BYTES, &text, NULL)) < 0)
        return r;
    return parse(text, ret, ret_line, msg, cap, bad, ctx);
}

int cstore_load(const char *dir, struct cstore **ret, int *ret_line, char *msg, size_t cap)
{
    return load(dir, ret, ret_line, msg, cap, NULL, NULL);
}

int cstore_load_salvage(const char *dir, struct cstore **ret, cstore_bad_line_fn bad, void *ctx)
{
    char msg[256];
    int line;

    return load(dir, ret, &line, msg, sizeof(msg), bad, ctx);
}

/* mkdir -p with mode 0700 for what it makes. */
static int make_dirs(const char *dir)
{
    char path[4096];
    size_t n = strlen(dir);

    if (n >= sizeof(path))
        return -ENAMETOOLONG;
    memcpy(path, dir, n + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int cstore_save(const struct cstore *s, const char *dir)
{
    _cleanup_free_ char *text = NULL;
    char tmp[4096], dst[4096];
    int fd, r;

    if ((r = cstore_format(s, &text)) < 0)
        return r;
    if ((r = make_dirs(dir)) < 0)
        return r;
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, CSTORE_FILE) >= sizeof(tmp) ||
        (size_t)snprintf(dst, sizeof(dst), "%s/%s", dir, CSTORE_FILE) >= sizeof(dst))
        return -ENAMETOOLONG;
    /* mkstemp makes the file 0600: certificate paths are nobody else's business. A reader
     * sees the old file or the new one whole, never a half-written one. */
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    r = proc_write_fd(fd, text, strlen(text));
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, dst) < 0)
        r = -errno;
    if (r < 0)
        (void)unlink(tmp);
    return r;
}
