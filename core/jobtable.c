#include "jobtable.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"

#define RECORD_FILE "status"
#define RECORD_TMP "status.tmp"
#define OUTPUT_FILE "output"
#define LOST_MESSAGE "server restarted while the job was running"

struct jobtab_entry {
    struct jobtab *t;
    struct jobtab_spec spec;     /* immutable after add/load */
    struct jobtab_status status; /* under t->lock */
    struct job *job;             /* under t->lock (set once) */
    struct outlog *log;          /* under t->lock (set once) */
    uint64_t seq;                /* insertion order */
    pthread_mutex_t wlock;       /* serialises record writes (one status.tmp per folder) */
};

struct jobtab {
    pthread_mutex_t lock;
    char *state_dir;
    char **admins;
    size_t n_admins;
    unsigned max_running;
    struct jobtab_entry **entries; /* oldest first */
    size_t n, cap;
    struct jobtab_entry **index; /* open addressing on id; cap_index is a power of two */
    size_t cap_index;
};

static const char *const state_names[] = {
    [JOB_STARTING] = "STARTING", [JOB_RUNNING] = "RUNNING",
    [JOB_EXITED] = "EXITED",     [JOB_KILLED] = "KILLED",
    [JOB_FAILED_TO_START] = "FAILED_TO_START", [JOB_LOST] = "LOST",
};

static bool state_is_running(enum job_state s)
{
    return s == JOB_STARTING || s == JOB_RUNNING;
}

/* ---- ids ------------------------------------------------------------------------------- */

int jobtab_new_id(char buf[JOBTAB_ID_LEN + 1])
{
    uint8_t b[16];
    size_t got = 0;

    while (got < sizeof(b)) {
        ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    (void)snprintf(buf, JOBTAB_ID_LEN + 1,
                   "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                   b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                   b[13], b[14], b[15]);
    return 0;
}

bool jobtab_is_id(const char *s)
{
    for (int i = 0; i < JOBTAB_ID_LEN; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        char c = s[i];
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return s[JOBTAB_ID_LEN] == '\0';
}

/* ---- record text ----------------------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_putn(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        char *p;
        while (cap < b->len + n + 1)
            cap *= 2;
        p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        sb_putn(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* key=value with control bytes, DEL and '%' written as %XX, so a value is one line. */
static void sb_put_str(struct sbuf *b, const char *key, const char *v)
{
    sb_putn(b, key, strlen(key));
    sb_putn(b, "=", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p < 0x20 || *p == 0x7f || *p == '%') {
            char esc[4];
            (void)snprintf(esc, sizeof(esc), "%%%02X", *p);
            sb_putn(b, esc, 3);
        } else {
            sb_putn(b, (const char *)p, 1);
        }
    }
    sb_putn(b, "\n", 1);
}

int jobtab_record_format(const struct jobtab_spec *spec, const struct jobtab_status *st,
                         char **ret_text)
{
    struct sbuf b = {0};
    const struct job_status *js = &st->job;
    unsigned s = (unsigned)js->state;

    sb_printf(&b, "version=1\n");
    sb_put_str(&b, "id", spec->id);
    sb_put_str(&b, "owner", spec->owner);
    sb_put_str(&b, "name", spec->name ? spec->name : "");
    sb_put_str(&b, "command", spec->command);
    for (size_t i = 0; i < spec->n_args; i++)
        sb_put_str(&b, "arg", spec->args[i]);
    sb_printf(&b, "cpu_millis=%" PRIu64 "\n", spec->limits.cpu_millis);
    sb_printf(&b, "memory_bytes=%" PRIu64 "\n", spec->limits.memory_bytes);
    sb_printf(&b, "io_riops=%" PRIu64 "\n", spec->limits.io_riops);
    sb_printf(&b, "io_wiops=%" PRIu64 "\n", spec->limits.io_wiops);
    sb_printf(&b, "io_rbps=%" PRIu64 "\n", spec->limits.io_rbps);
    sb_printf(&b, "io_wbps=%" PRIu64 "\n", spec->limits.io_wbps);
    sb_printf(&b, "pids=%" PRIu64 "\n", spec->limits.pids);
    sb_printf(&b, "network=%s\n", spec->network == JOB_NET_HOST ? "host" : "none");
    sb_printf(&b, "state=%s\n", s < ELEMENTSOF(state_names) ? state_names[s] : "LOST");
    sb_printf(&b, "exit_code=%d\n", js->exit_code);
    sb_printf(&b, "signal=%d\n", js->signal);
    sb_printf(&b, "oom_killed=%d\n", js->oom_killed ? 1 : 0);
    sb_put_str(&b, "error", js->error);
    sb_printf(&b, "start_ms=%" PRId64 "\n", js->start_ms);
    sb_printf(&b, "end_ms=%" PRId64 "\n", js->end_ms);
    sb_printf(&b, "cpu_usec=%" PRIu64 "\n", js->cpu_usec);
    sb_printf(&b, "memory_peak_bytes=%" PRIu64 "\n", js->memory_peak_bytes);
    sb_printf(&b, "output_bytes=%" PRIu64 "\n", st->output_bytes);
    sb_printf(&b, "output_truncated=%d\n", st->output_truncated ? 1 : 0);
    if (b.oom) {
        free(b.p);
        return -ENOMEM;
    }
    *ret_text = b.p;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes a %XX-escaped value of n bytes into a malloc'd string. NULL on malformed or OOM
 * (*bad tells which). */
static char *unescape(const char *v, size_t n, bool *bad)
{
    char *out = malloc(n + 1);
    size_t o = 0;

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '%') {
            int hi = i + 2 < n ? hexval(v[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(v[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                *bad = true;
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = v[i];
        }
    }
    out[o] = '\0';
    return out;
}

static int parse_u64(const char *v, size_t n, uint64_t *ret)
{
    uint64_t x = 0;

    if (n == 0 || n > 20)
        return -EBADMSG;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -EBADMSG;
        if (x > (UINT64_MAX - (uint64_t)(v[i] - '0')) / 10)
            return -EBADMSG;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *ret = x;
    return 0;
}

static int parse_i64(const char *v, size_t n, int64_t *ret)
{
    uint64_t x;
    bool neg = n > 0 && v[0] == '-';

    if (parse_u64(v + neg, n - neg, &x) < 0 || x > (uint64_t)INT64_MAX)
        return -EBADMSG;
    *ret = neg ? -(int64_t)x : (int64_t)x;
    return 0;
}

static int parse_int(const char *v, size_t n, int *ret)
{
    int64_t x;

    if (parse_i64(v, n, &x) < 0 || x < INT_MIN || x > INT_MAX)
        return -EBADMSG;
    *ret = (int)x;
    return 0;
}

void jobtab_spec_clear(struct jobtab_spec *spec)
{
    free(spec->owner);
    free(spec->name);
    free(spec->command);
    for (size_t i = 0; i < spec->n_args; i++)
        free(spec->args[i]);
    free(spec->args);
    memset(spec, 0, sizeof(*spec));
}

static bool key_is(const char *k, size_t kn, const char *want)
{
    return strlen(want) == kn && memcmp(k, want, kn) == 0;
}

/* One key=value line into spec/st. */
static int parse_line(const char *k, size_t kn, const char *v, size_t vn, struct jobtab_spec *spec,
                      struct jobtab_status *st, unsigned *seen)
{
    struct job_status *js = &st->job;
    uint64_t u;
    bool bad = false;
    char **strp = NULL;

#define U64_FIELD(name, dst)                                                                       \
    if (key_is(k, kn, name))                                                                       \
        return parse_u64(v, vn, &(dst));
    U64_FIELD("cpu_millis", spec->limits.cpu_millis)
    U64_FIELD("memory_bytes", spec->limits.memory_bytes)
    U64_FIELD("io_riops", spec->limits.io_riops)
    U64_FIELD("io_wiops", spec->limits.io_wiops)
    U64_FIELD("io_rbps", spec->limits.io_rbps)
    U64_FIELD("io_wbps", spec->limits.io_wbps)
    U64_FIELD("pids", spec->limits.pids)
    U64_FIELD("cpu_usec", js->cpu_usec)
    U64_FIELD("memory_peak_bytes", js->memory_peak_bytes)
    U64_FIELD("output_bytes", st->output_bytes)
#undef U64_FIELD
    if (key_is(k, kn, "version"))
        return parse_u64(v, vn, &u) < 0 || u != 1 ? -EBADMSG : 0;
    if (key_is(k, kn, "exit_code"))
        return parse_int(v, vn, &js->exit_code);
    if (key_is(k, kn, "signal"))
        return parse_int(v, vn, &js->signal);
    if (key_is(k, kn, "start_ms"))
        return parse_i64(v, vn, &js->start_ms);
    if (key_is(k, kn, "end_ms"))
        return parse_i64(v, vn, &js->end_ms);
    if (key_is(k, kn, "oom_killed") || key_is(k, kn, "output_truncated")) {
        if (parse_u64(v, vn, &u) < 0 || u > 1)
            return -EBADMSG;
        if (key_is(k, kn, "oom_killed"))
            js->oom_killed = u;
        else
            st->output_truncated = u;
        return 0;
    }
    if (key_is(k, kn, "network")) {
        if (vn == 4 && memcmp(v, "host", 4) == 0)
            spec->network = JOB_NET_HOST;
        else if (vn == 4 && memcmp(v, "none", 4) == 0)
            spec->network = JOB_NET_NONE;
        else
            return -EBADMSG;
        return 0;
    }
    if (key_is(k, kn, "state")) {
        for (size_t i = 0; i < ELEMENTSOF(state_names); i++)
            if (strlen(state_names[i]) == vn && memcmp(v, state_names[i], vn) == 0) {
                js->state = (enum job_state)i;
                *seen |= 1u << 3;
                return 0;
            }
        return -EBADMSG;
    }
    if (key_is(k, kn, "error")) {
        char *e = unescape(v, vn, &bad);
        if (!e)
            return bad ? -EBADMSG : -ENOMEM;
        (void)snprintf(js->error, sizeof(js->error), "%s", e);
        free(e);
        return 0;
    }
    if (key_is(k, kn, "id")) {
        if (vn != JOBTAB_ID_LEN)
            return -EBADMSG;
        memcpy(spec->id, v, vn);
        spec->id[vn] = '\0';
        if (!jobtab_is_id(spec->id))
            return -EBADMSG;
        *seen |= 1u << 0;
        return 0;
    }
    if (key_is(k, kn, "arg")) {
        char **a = realloc(spec->args, (spec->n_args + 1) * sizeof(*a));
        if (!a)
            return -ENOMEM;
        spec->args = a;
        a[spec->n_args] = unescape(v, vn, &bad);
        if (!a[spec->n_args])
            return bad ? -EBADMSG : -ENOMEM;
        spec->n_args++;
        return 0;
    }
    if (key_is(k, kn, "owner")) {
        strp = &spec->owner;
        *seen |= 1u << 1;
    } else if (key_is(k, kn, "command")) {
        strp = &spec->command;
        *seen |= 1u << 2;
    } else if (key_is(k, kn, "name")) {
        strp = &spec->name;
    } else {
        return 0; /* a key from a newer version: ignore */
    }
    if (*strp)
        return -EBADMSG; /* duplicate */
    *strp = unescape(v, vn, &bad);
    if (!*strp)
        return bad ? -EBADMSG : -ENOMEM;
    return 0;
}

int jobtab_record_parse(const char *text, struct jobtab_spec *ret_spec,
                        struct jobtab_status *ret_st)
{
    struct jobtab_spec spec = {0};
    struct jobtab_status st = {0};
    unsigned seen = 0;
    const char *p = text;
    int r = 0;

    while (*p && r == 0) {
        const char *nl = strchr(p, '\n');
        const char *eq;
        size_t len;

        if (!nl) {
            r = -EBADMSG; /* every line ends with \n: a torn write is refused */
            break;
        }
        len = (size_t)(nl - p);
        eq = memchr(p, '=', len);
        if (!eq || eq == p)
            r = -EBADMSG;
        else
            r = parse_line(p, (size_t)(eq - p), eq + 1, (size_t)(nl - eq - 1), &spec, &st, &seen);
        p = nl + 1;
    }
    if (r == 0 && seen != 0xf)
        r = -EBADMSG;
    if (r == 0 && !spec.name) {
        spec.name = strdup("");
        if (!spec.name)
            r = -ENOMEM;
    }
    if (r < 0) {
        jobtab_spec_clear(&spec);
        return r;
    }
    *ret_spec = spec;
    *ret_st = st;
    return 0;
}

/* ---- files ----------------------------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Room kept for the next record of a job that still runs (RECORD_TMP, allocated ahead), so
 * that its final record still lands when the disk fills up meanwhile (by its own output, say).
 * Best effort: without it the next write simply needs free space, as any write does. */
#define RECORD_RESERVE_MIN 4096

static void reserve_next_record(int dfd, size_t len)
{
    _cleanup_close_ int fd = -1;
    size_t size = (len + 2 * RECORD_RESERVE_MIN - 1) & ~(size_t)(RECORD_RESERVE_MIN - 1);

    fd = openat(dfd, RECORD_TMP, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return;
    if (posix_fallocate(fd, 0, (off_t)size) != 0)
        (void)unlinkat(dfd, RECORD_TMP, 0);
}

/* Writes the record: status.tmp, fsync, rename over status, fsync the folder, so a crash
 * leaves either the old or the new record, never a torn one. status.tmp may hold room
 * reserved by the previous write: it is overwritten in place, then cut to the record. */
static int write_record(struct jobtab *t, const struct jobtab_spec *spec,
                        const struct jobtab_status *st)
{
    _cleanup_free_ char *text = NULL;
    _cleanup_close_ int dfd = -1;
    _cleanup_close_ int fd = -1;
    char dir[PATH_MAX];
    size_t len;
    int r;

    if (snprintf(dir, sizeof(dir), "%s/%s", t->state_dir, spec->id) >= (int)sizeof(dir))
        return -ENAMETOOLONG;
    r = jobtab_record_format(spec, st, &text);
    if (r < 0)
        return r;
    len = strlen(text);
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    fd = openat(dfd, RECORD_TMP, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    r = write_all(fd, text, len);
    if (r < 0)
        return r;
    if (ftruncate(fd, (off_t)len) < 0)
        return -errno;
    if (fsync(fd) < 0)
        return -errno;
    if (renameat(dfd, RECORD_TMP, dfd, RECORD_FILE) < 0)
        return -errno;
    if (fsync(dfd) < 0)
        return -errno;
    if (state_is_running(st->job.state))
        reserve_next_record(dfd, len);
    return 0;
}

static int read_text(int dfd, const char *name, char **ret)
{
    _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    _cleanup_free_ char *buf = NULL;
    size_t len = 0, cap = 0;

    if (fd < 0)
        return -errno;
    for (;;) {
        ssize_t n;
        if (len + 1 >= cap) {
            char *p;
            cap = cap ? cap * 2 : 4096;
            if (cap > (8u << 20))
                return -EFBIG;
            p = realloc(buf, cap);
            if (!p)
                return -ENOMEM;
            buf = p;
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    if (strlen(buf) != len)
        return -EBADMSG;
    *ret = TAKE_PTR(buf);
    return 0;
}

static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];

    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* ---- table ----------------------------------------------------------------------------- */

static uint64_t hash_id(const char *id)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *id; id++)
        h = (h ^ (uint8_t)*id) * 1099511628211ull;
    return h;
}

static int index_grow(struct jobtab *t)
{
    size_t cap = t->cap_index ? t->cap_index * 2 : 256;
    struct jobtab_entry **idx = calloc(cap, sizeof(*idx));

    if (!idx)
        return -ENOMEM;
    for (size_t i = 0; i < t->n; i++) {
        size_t h = (size_t)hash_id(t->entries[i]->spec.id) & (cap - 1);
        while (idx[h])
            h = (h + 1) & (cap - 1);
        idx[h] = t->entries[i];
    }
    free(t->index);
    t->index = idx;
    t->cap_index = cap;
    return 0;
}

/* Appends e to the table (lock held or single-threaded). 0 or -ENOMEM. */
static int insert_locked(struct jobtab *t, struct jobtab_entry *e)
{
    size_t h;

    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        struct jobtab_entry **a = realloc(t->entries, cap * sizeof(*a));
        if (!a)
            return -ENOMEM;
        t->entries = a;
        t->cap = cap;
    }
    if ((t->n + 1) * 2 > t->cap_index) {
        int r = index_grow(t);
        if (r < 0)
            return r;
    }
    h = (size_t)hash_id(e->spec.id) & (t->cap_index - 1);
    while (t->index[h])
        h = (h + 1) & (t->cap_index - 1);
    t->index[h] = e;
    e->seq = t->n;
    t->entries[t->n++] = e;
    return 0;
}

static struct jobtab_entry *find_locked(struct jobtab *t, const char *id)
{
    size_t h;

    if (!t->cap_index)
        return NULL;
    h = (size_t)hash_id(id) & (t->cap_index - 1);
    while (t->index[h]) {
        if (strcmp(t->index[h]->spec.id, id) == 0)
            return t->index[h];
        h = (h + 1) & (t->cap_index - 1);
    }
    return NULL;
}

static struct jobtab_entry *entry_new(struct jobtab *t)
{
    struct jobtab_entry *e = calloc(1, sizeof(*e));

    if (!e)
        return NULL;
    e->t = t;
    (void)pthread_mutex_init(&e->wlock, NULL);
    return e;
}

static void entry_free(struct jobtab_entry *e)
{
    if (!e)
        return;
    jobtab_spec_clear(&e->spec);
    (void)pthread_mutex_destroy(&e->wlock);
    free(e);
}

int jobtab_new(const struct jobtab_config *cfg, struct jobtab **ret)
{
    struct jobtab *t = calloc(1, sizeof(*t));
    size_t n = 0;
    int r;

    if (!t)
        return -ENOMEM;
    (void)pthread_mutex_init(&t->lock, NULL);
    t->max_running = cfg->max_running_per_user;
    t->state_dir = strdup(cfg->state_dir);
    while (cfg->admin_cns && cfg->admin_cns[n])
        n++;
    t->admins = calloc(n + 1, sizeof(char *));
    if (!t->state_dir || !t->admins) {
        jobtab_free(t);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        t->admins[i] = strdup(cfg->admin_cns[i]);
        if (!t->admins[i]) {
            jobtab_free(t);
            return -ENOMEM;
        }
        t->n_admins++;
    }
    r = mkdir_p(t->state_dir, 0700);
    if (r < 0) {
        jobtab_free(t);
        return r;
    }
    *ret = t;
    return 0;
}

void jobtab_free(struct jobtab *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        entry_free(t->entries[i]);
    free(t->entries);
    free(t->index);
    for (size_t i = 0; i < t->n_admins; i++)
        free(t->admins[i]);
    free(t->admins);
    free(t->state_dir);
    (void)pthread_mutex_destroy(&t->lock);
    free(t);
}

static int cmp_start(const void *a, const void *b)
{
    const struct jobtab_entry *x = *(struct jobtab_entry *const *)a;
    const struct jobtab_entry *y = *(struct jobtab_entry *const *)b;

    if (x->status.job.start_ms != y->status.job.start_ms)
        return x->status.job.start_ms < y->status.job.start_ms ? -1 : 1;
    return strcmp(x->spec.id, y->spec.id);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Loads <state>/<name>; NULL when it is not a loadable job folder. */
static struct jobtab_entry *load_one(struct jobtab *t, int sfd, const char *name, bool *ret_lost)
{
    _cleanup_close_ int dfd = -1;
    _cleanup_free_ char *text = NULL;
    struct jobtab_entry *e;
    int r;

    dfd = openat(sfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0)
        return NULL;
    r = read_text(dfd, RECORD_FILE, &text);
    if (r < 0) {
        log_warn("state: job folder '%s' has no readable record (%s), ignoring", name,
                 strerror(-r));
        return NULL;
    }
    e = entry_new(t);
    if (!e)
        return NULL;
    r = jobtab_record_parse(text, &e->spec, &e->status);
    if (r < 0 || strcmp(e->spec.id, name) != 0) {
        log_warn("state: job folder '%s' has a malformed record, ignoring", name);
        entry_free(e);
        return NULL;
    }
    e->status.job.pid = 0;
    *ret_lost = state_is_running(e->status.job.state);
    if (*ret_lost) {
        struct job_status *js = &e->status.job;
        js->state = JOB_LOST;
        (void)snprintf(js->error, sizeof(js->error), "%s", LOST_MESSAGE);
        if (js->end_ms == 0)
            js->end_ms = now_ms();
        r = write_record(t, &e->spec, &e->status);
        if (r < 0)
            log_warn("state: job %s: rewriting its record as LOST failed: %s, ignoring", name,
                     strerror(-r));
    }
    return e;
}

int jobtab_load(struct jobtab *t, jobtab_loaded_fn fn, void *userdata)
{
    DIR *d;
    struct dirent *de;
    struct jobtab_entry **loaded = NULL;
    size_t n = 0, cap = 0;
    int r = 0;

    d = opendir(t->state_dir);
    if (!d)
        return -errno;
    while ((de = readdir(d))) {
        struct jobtab_entry *e;
        bool was_running = false;

        if (!jobtab_is_id(de->d_name))
            continue;
        e = load_one(t, dirfd(d), de->d_name, &was_running);
        if (!e)
            continue;
        if (n == cap) {
            size_t c = cap ? cap * 2 : 64;
            struct jobtab_entry **a = realloc(loaded, c * sizeof(*a));
            if (!a) {
                entry_free(e);
                r = -ENOMEM;
                break;
            }
            loaded = a;
            cap = c;
        }
        /* Keep the LOST flag next to its entry through the sort. */
        e->seq = was_running;
        loaded[n++] = e;
    }
    (void)closedir(d);
    if (r == 0 && n > 0)
        qsort(loaded, n, sizeof(*loaded), cmp_start);
    for (size_t i = 0; i < n; i++) {
        bool was_running = loaded[i]->seq != 0;
        if (r == 0)
            r = insert_locked(t, loaded[i]);
        if (r < 0) {
            entry_free(loaded[i]);
            continue;
        }
        if (fn)
            fn(loaded[i], was_running, userdata);
    }
    free(loaded);
    return r < 0 ? r : (int)n;
}

int jobtab_add(struct jobtab *t, const char *owner, const char *name, const char *command,
               const char *const *args, size_t n_args, const struct job_limits *limits,
               enum job_network network, struct jobtab_entry **ret)
{
    struct jobtab_entry *e;
    char dir[PATH_MAX];
    unsigned running = 0;
    int r;

    e = entry_new(t);
    if (!e)
        return -ENOMEM;
    e->spec.owner = strdup(owner);
    e->spec.name = strdup(name ? name : "");
    e->spec.command = strdup(command);
    e->spec.args = calloc(n_args + 1, sizeof(char *));
    if (!e->spec.owner || !e->spec.name || !e->spec.command || !e->spec.args) {
        entry_free(e);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n_args; i++) {
        e->spec.args[i] = strdup(args[i]);
        if (!e->spec.args[i]) {
            entry_free(e);
            return -ENOMEM;
        }
        e->spec.n_args++;
    }
    e->spec.limits = *limits;
    e->spec.network = network;
    e->status.job.state = JOB_STARTING;
    e->status.job.start_ms = now_ms();

    (void)pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->n; i++) {
        struct jobtab_entry *o = t->entries[i];
        if (!state_is_running(o->status.job.state) || strcmp(o->spec.owner, owner) != 0)
            continue;
        running++;
        if (e->spec.name[0] && strcmp(o->spec.name, e->spec.name) == 0) {
            (void)pthread_mutex_unlock(&t->lock);
            entry_free(e);
            return -EEXIST;
        }
    }
    if (t->max_running && running >= t->max_running) {
        (void)pthread_mutex_unlock(&t->lock);
        entry_free(e);
        return -EUSERS;
    }
    do {
        r = jobtab_new_id(e->spec.id);
    } while (r == 0 && find_locked(t, e->spec.id));
    if (r == 0)
        r = insert_locked(t, e);
    (void)pthread_mutex_unlock(&t->lock);
    if (r < 0) {
        entry_free(e);
        return r;
    }
    /* From here the entry is in the table (its name reserved); the caller records a failure
     * below through jobtab_entry_set_status, which frees the name again. */
    if (snprintf(dir, sizeof(dir), "%s/%s", t->state_dir, e->spec.id) >= (int)sizeof(dir))
        r = -ENAMETOOLONG;
    else if (mkdir(dir, 0700) < 0)
        r = -errno;
    else {
        r = write_record(t, &e->spec, &e->status);
        if (r < 0) { /* e.g. ENOSPC: leave no folder without a record behind */
            _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0)
                (void)unlinkat(dfd, RECORD_TMP, 0);
            (void)rmdir(dir);
        }
    }
    if (r < 0) {
        struct jobtab_status st = e->status;
        st.job.state = JOB_FAILED_TO_START;
        st.job.end_ms = now_ms();
        (void)snprintf(st.job.error, sizeof(st.job.error), "the server could not record the job");
        (void)pthread_mutex_lock(&t->lock);
        e->status = st;
        (void)pthread_mutex_unlock(&t->lock);
        return r;
    }
    *ret = e;
    return 0;
}

bool jobtab_is_admin(struct jobtab *t, const char *cn)
{
    for (size_t i = 0; i < t->n_admins; i++)
        if (strcmp(t->admins[i], cn) == 0)
            return true;
    return false;
}

bool jobtab_may_access(struct jobtab *t, const struct jobtab_entry *e, const char *cn)
{
    return strcmp(e->spec.owner, cn) == 0 || jobtab_is_admin(t, cn);
}

struct jobtab_entry *jobtab_lookup(struct jobtab *t, const char *id, const char *cn)
{
    struct jobtab_entry *e;

    (void)pthread_mutex_lock(&t->lock);
    e = find_locked(t, id);
    (void)pthread_mutex_unlock(&t->lock);
    if (e && !jobtab_may_access(t, e, cn))
        return NULL;
    return e;
}

int jobtab_list(struct jobtab *t, const char *cn, struct jobtab_entry ***ret, size_t *ret_n)
{
    bool admin = jobtab_is_admin(t, cn);
    struct jobtab_entry **a;
    size_t n = 0;

    (void)pthread_mutex_lock(&t->lock);
    a = malloc((t->n + 1) * sizeof(*a));
    if (!a) {
        (void)pthread_mutex_unlock(&t->lock);
        return -ENOMEM;
    }
    for (size_t i = 0; i < t->n; i++)
        if (admin || strcmp(t->entries[i]->spec.owner, cn) == 0)
            a[n++] = t->entries[i];
    (void)pthread_mutex_unlock(&t->lock);
    *ret = a;
    *ret_n = n;
    return 0;
}

void jobtab_foreach(struct jobtab *t, void (*fn)(struct jobtab_entry *e, void *userdata),
                    void *userdata)
{
    struct jobtab_entry **a;
    size_t n;

    (void)pthread_mutex_lock(&t->lock);
    n = t->n;
    a = malloc((n + 1) * sizeof(*a));
    if (a && n > 0) /* entries is NULL in an empty table */
        memcpy(a, t->entries, n * sizeof(*a));
    (void)pthread_mutex_unlock(&t->lock);
    if (!a)
        return;
    for (size_t i = 0; i < n; i++)
        fn(a[i], userdata);
    free(a);
}

const struct jobtab_spec *jobtab_entry_spec(const struct jobtab_entry *e)
{
    return &e->spec;
}

void jobtab_entry_get_status(struct jobtab_entry *e, struct jobtab_status *ret)
{
    (void)pthread_mutex_lock(&e->t->lock);
    *ret = e->status;
    (void)pthread_mutex_unlock(&e->t->lock);
}

int jobtab_entry_set_status(struct jobtab_entry *e, const struct jobtab_status *st)
{
    struct jobtab *t = e->t;
    struct jobtab_status latest;
    int r;

    (void)pthread_mutex_lock(&t->lock);
    /* An end seen first (a job that exits before its starter reports RUNNING) wins: a job
     * never goes back from an end state to a running one. */
    if (state_is_running(e->status.job.state) || !state_is_running(st->job.state)) {
        e->status = *st;
        if (!state_is_running(e->status.job.state))
            e->status.job.pid = 0;
    }
    (void)pthread_mutex_unlock(&t->lock);

    /* Whoever writes, writes the latest status, so an older one never lands last. */
    (void)pthread_mutex_lock(&e->wlock);
    jobtab_entry_get_status(e, &latest);
    r = write_record(t, &e->spec, &latest);
    (void)pthread_mutex_unlock(&e->wlock);
    return r;
}

bool jobtab_entry_is_running(struct jobtab_entry *e)
{
    struct jobtab_status st;
    jobtab_entry_get_status(e, &st);
    return state_is_running(st.job.state);
}

void jobtab_entry_attach(struct jobtab_entry *e, struct job *j, struct outlog *log)
{
    (void)pthread_mutex_lock(&e->t->lock);
    e->job = j;
    e->log = log;
    (void)pthread_mutex_unlock(&e->t->lock);
}

struct job *jobtab_entry_job(struct jobtab_entry *e)
{
    struct job *j;
    (void)pthread_mutex_lock(&e->t->lock);
    j = e->job;
    (void)pthread_mutex_unlock(&e->t->lock);
    return j;
}

struct outlog *jobtab_entry_log(struct jobtab_entry *e)
{
    struct outlog *l;
    (void)pthread_mutex_lock(&e->t->lock);
    l = e->log;
    (void)pthread_mutex_unlock(&e->t->lock);
    return l;
}

int jobtab_entry_output_path(struct jobtab *t, const struct jobtab_entry *e, char *buf,
                             size_t len)
{
    if (snprintf(buf, len, "%s/%s/%s", t->state_dir, e->spec.id, OUTPUT_FILE) >= (int)len)
        return -ENAMETOOLONG;
    return 0;
}
