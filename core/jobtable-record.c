#include "jobtable.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "jobtable-internal.h"
#include "id.h"
#include "proc.h"
#include "strbuf.h"

/* ---- record text ----------------------------------------------------------------------- */

/* key=value with control bytes, DEL and '%' written as %XX, so a value is one line. */
static void put_str(struct strbuf *b, const char *key, const char *v)
{
    (void)strbuf_printf(b, "%s=", key);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p < 0x20 || *p == 0x7f || *p == '%')
            (void)strbuf_printf(b, "%%%02X", *p);
        else
            (void)strbuf_putn(b, (const char *)p, 1);
    }
    (void)strbuf_putn(b, "\n", 1);
}

int jobtab_record_format(const struct jobtab_spec *spec, const struct jobtab_status *st,
                         char **ret_text)
{
    _cleanup_(strbuf_freep) struct strbuf *b = NULL;
    const struct job_status *js = &st->job;
    unsigned s = (unsigned)js->state;
    int r;

    r = strbuf_new(&b);
    if (r < 0)
        return r;
    /* Each append's error is ignored: a failed one marks b, and strbuf_detach reports it. */
    (void)strbuf_printf(b, "version=1\n");
    put_str(b, "id", spec->id);
    put_str(b, "owner", spec->owner);
    put_str(b, "name", spec->name ? spec->name : "");
    put_str(b, "command", spec->command);
    for (size_t i = 0; i < spec->n_args; i++)
        put_str(b, "arg", spec->args[i]);
    (void)strbuf_printf(b, "cpu_millis=%" PRIu64 "\n", spec->limits.cpu_millis);
    (void)strbuf_printf(b, "memory_bytes=%" PRIu64 "\n", spec->limits.memory_bytes);
    (void)strbuf_printf(b, "io_riops=%" PRIu64 "\n", spec->limits.io_riops);
    (void)strbuf_printf(b, "io_wiops=%" PRIu64 "\n", spec->limits.io_wiops);
    (void)strbuf_printf(b, "io_rbps=%" PRIu64 "\n", spec->limits.io_rbps);
    (void)strbuf_printf(b, "io_wbps=%" PRIu64 "\n", spec->limits.io_wbps);
    (void)strbuf_printf(b, "pids=%" PRIu64 "\n", spec->limits.pids);
    (void)strbuf_printf(b, "network=%s\n", spec->network == JOB_NET_HOST ? "host" : "none");
    if (spec->input != JOB_INPUT_NONE)
        (void)strbuf_printf(b, "input=%s\n", spec->input == JOB_INPUT_TTY ? "tty" : "pipe");
    (void)strbuf_printf(b, "created_ns=%" PRIu64 "\n", spec->created_ns);
    if (spec->workdir && spec->workdir[0])
        put_str(b, "workdir", spec->workdir);
    if (spec->timeout_ms > 0)
        (void)strbuf_printf(b, "timeout_ms=%" PRId64 "\n", spec->timeout_ms);
    (void)strbuf_printf(b, "state=%s\n",
                        s <= JOB_LOST ? job_state_name((enum job_state)s) : "LOST");
    (void)strbuf_printf(b, "exit_code=%d\n", js->exit_code);
    (void)strbuf_printf(b, "signal=%d\n", js->signal);
    (void)strbuf_printf(b, "oom_killed=%d\n", js->oom_killed ? 1 : 0);
    if (js->timed_out)
        (void)strbuf_printf(b, "timed_out=1\n");
    put_str(b, "error", js->error);
    (void)strbuf_printf(b, "start_ms=%" PRId64 "\n", js->start_ms);
    (void)strbuf_printf(b, "end_ms=%" PRId64 "\n", js->end_ms);
    (void)strbuf_printf(b, "cpu_usec=%" PRIu64 "\n", js->cpu_usec);
    (void)strbuf_printf(b, "memory_peak_bytes=%" PRIu64 "\n", js->memory_peak_bytes);
    (void)strbuf_printf(b, "output_bytes=%" PRIu64 "\n", st->output_bytes);
    (void)strbuf_printf(b, "output_truncated=%d\n", st->output_truncated ? 1 : 0);
    return strbuf_detach(b, ret_text);
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
    free(spec->workdir);
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
    U64_FIELD("created_ns", spec->created_ns)
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
    if (key_is(k, kn, "timeout_ms"))
        return parse_i64(v, vn, &spec->timeout_ms);
    if (key_is(k, kn, "oom_killed") || key_is(k, kn, "output_truncated") ||
        key_is(k, kn, "timed_out")) {
        if (parse_u64(v, vn, &u) < 0 || u > 1)
            return -EBADMSG;
        if (key_is(k, kn, "oom_killed"))
            js->oom_killed = u;
        else if (key_is(k, kn, "timed_out"))
            js->timed_out = u;
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
    if (key_is(k, kn, "input")) {
        if (vn == 4 && memcmp(v, "pipe", 4) == 0)
            spec->input = JOB_INPUT_PIPE;
        else if (vn == 3 && memcmp(v, "tty", 3) == 0)
            spec->input = JOB_INPUT_TTY;
        else
            return -EBADMSG;
        return 0;
    }
    if (key_is(k, kn, "state")) {
        for (enum job_state i = JOB_STARTING; i <= JOB_LOST; i++)
            if (strlen(job_state_name(i)) == vn && memcmp(v, job_state_name(i), vn) == 0) {
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
        if (!id_is_valid(spec->id))
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
    } else if (key_is(k, kn, "workdir")) {
        strp = &spec->workdir;
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

/* ---- files: the atomic write ----------------------------------------------------------- */

int jobtab_rec_reserve(int dfd, const char *name, size_t size)
{
    _cleanup_close_ int fd = -1;
    int r;

    fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    /* Blocks past the end of an empty file: the record written into it later needs no
     * allocation, and no truncation either (the size is the record's). */
    if (fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)size) < 0) {
        r = -errno;
        (void)unlinkat(dfd, name, 0);
        return r;
    }
    return 0;
}

/* n bytes rounded up to whole RECORD_RESERVE_MIN units: the room a record of n bytes takes. */
static size_t record_room(size_t n)
{
    return (n + RECORD_RESERVE_MIN - 1) & ~(size_t)(RECORD_RESERVE_MIN - 1);
}

/* Room kept for the next record of a job that still runs (RECORD_TMP, allocated ahead), so
 * that its final record still lands when the disk fills up meanwhile (by its own output, say):
 * this record's room and one unit more. Best effort: without it the next write simply needs
 * free space, as any write does. */
static void reserve_next_record(int dfd, size_t len)
{
    (void)jobtab_rec_reserve(dfd, RECORD_TMP, record_room(len + RECORD_RESERVE_MIN));
}

/* The same room in the existing status.tmp (the previous record after an exchange): blocks
 * already there are kept, only what is missing is allocated. */
static void reserve_next_record_in(int dfd, size_t len)
{
    _cleanup_close_ int fd = openat(dfd, RECORD_TMP, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);

    if (fd >= 0)
        (void)fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)record_room(len + RECORD_RESERVE_MIN));
}

/* Whether a file of len bytes holds more blocks than len needs (room reserved past its end).
 * A truncation frees them, but costs a truncation (extent walk, block bitmaps) even when there
 * is nothing to free. */
static bool has_room_past(const struct stat *sb, size_t len)
{
    return (uint64_t)sb->st_blocks * 512 > record_room(len);
}

/* Gives back the room past the end of dfd/name (ext4 frees blocks kept past the end even by a
 * truncation to the same size). Best effort: the room is only disk space. */
static void trim_record(int dfd, const char *name)
{
    _cleanup_close_ int fd = openat(dfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat sb;

    if (fd >= 0 && fstat(fd, &sb) == 0 && has_room_past(&sb, (size_t)sb.st_size))
        (void)ftruncate(fd, sb.st_size);
}

/* Puts status.tmp in place of status. After the first record, the two are exchanged
 * (RENAME_EXCHANGE): status.tmp then holds the previous record, which is the room for the next
 * write and what a load falls back to when a machine crash left status torn; no file is freed,
 * so ext4 without a journal does not skip ever more recently freed inodes at each new file (it
 * checks each one, one by one, for 1-5 minutes after its deletion). 1 when exchanged, 0 when
 * renamed (the first record, or a file system without RENAME_EXCHANGE), or -errno. */
static int replace_record(int dfd)
{
    if (renameat2(dfd, RECORD_TMP, dfd, RECORD_FILE, RENAME_EXCHANGE) == 0)
        return 1;
    if (errno != ENOENT && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        return -errno;
    if (renameat(dfd, RECORD_TMP, dfd, RECORD_FILE) < 0)
        return -errno;
    return 0;
}

/* Writes the record: status.tmp, then in place of status (replace_record), so that a crash of
 * the server (whose writes the page cache keeps) leaves either the old or the new record, never
 * a torn one. Durability against a crash of the machine is the flusher's (jobtable-flush.c): it
 * fsyncs the file and the folder shortly after, for every record written meanwhile at once.
 * status.tmp may hold room reserved by the previous write (past its end): the record is written
 * into it. */
int jobtab_rec_write(struct jobtab_entry *e, const struct jobtab_status *st, bool new_folder)
{
    _cleanup_free_ char *text = NULL;
    _cleanup_close_ int dfd = -1;
    _cleanup_close_ int fd = -1;
    char dir[PATH_MAX];
    struct stat sb;
    bool running = jobtab_state_is_running(st->job.state);
    size_t len;
    bool spare;
    int r;

    if (snprintf(dir, sizeof(dir), "%s/%s", e->t->state_dir, e->spec.id) >= (int)sizeof(dir))
        return -ENAMETOOLONG;
    r = jobtab_record_format(&e->spec, st, &text);
    if (r < 0)
        return r;
    len = strlen(text);
    /* status.tmp was status until the last exchange: until that exchange is durable, a power
     * loss can bring the old names back, and an overwrite in place would then tear the only
     * record on the disk. A job's first two records never get here (the second goes into the
     * spare's spare); a third within the flusher's window waits for one sync. */
    if (e->tmp_is_prev && (r = jobtab_flusher_settle(e)) < 0)
        return r;
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    fd = openat(dfd, RECORD_TMP, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    r = proc_write_fd(fd, text, len);
    if (r < 0)
        return r;
    /* A reserve is empty (its room lies past its end): a running job's record needs cutting
     * only when it replaces a longer leftover (a previous record, or a write cut short by a
     * crash), which keeps a truncation (journal work) off the Start path. An ended job's record
     * gives the room past its end back: nothing follows it. */
    if (fstat(fd, &sb) < 0)
        return -errno;
    if ((sb.st_size > (off_t)len || (!running && has_room_past(&sb, len))) &&
        ftruncate(fd, (off_t)len) < 0)
        return -errno;
    r = replace_record(dfd);
    if (r < 0)
        return r;
    jobtab_flusher_queue(e, new_folder);
    spare = e->spare;
    e->spare = false;
    e->tmp_is_prev = r == 1;
    if (r == 1) {
        /* status.tmp is the previous record now: the next write's room (a running job's record
         * hardly grows: reserve_next_record tops it up to the same room as a new reserve), or,
         * for an ended job, a copy kept without its room. */
        if (running)
            reserve_next_record_in(dfd, len);
        else
            trim_record(dfd, RECORD_TMP);
        if (spare)
            (void)unlinkat(dfd, RECORD_SPARE, 0);
        return 0;
    }
    /* A spare's spare is already allocated: a rename instead of a new allocation (grown only
     * for a first record too long to leave the next one room in it). */
    if (running) {
        if (!spare || renameat(dfd, RECORD_SPARE, dfd, RECORD_TMP) < 0)
            reserve_next_record(dfd, len);
        else if (len + RECORD_GROWTH_MAX > RECORD_RESERVE_MIN)
            reserve_next_record_in(dfd, len);
    } else if (spare) {
        (void)unlinkat(dfd, RECORD_SPARE, 0); /* an ended job keeps only its record */
    }
    return 0;
}

int jobtab_rec_write_latest(struct jobtab_entry *e)
{
    struct jobtab_status latest;
    int r;

    (void)pthread_mutex_lock(&e->wlock);
    /* A removed job's folder is about to go (jobtab_entry_trash): no record brings it back. */
    if (jobtab_entry_is_removed(e)) {
        (void)pthread_mutex_unlock(&e->wlock);
        return 0;
    }
    jobtab_entry_get_status(e, &latest);
    r = jobtab_rec_write(e, &latest, false);
    (void)pthread_mutex_unlock(&e->wlock);
    return r;
}

int jobtab_rec_read(int dfd, const char *name, char **ret_text)
{
    _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    _cleanup_free_ char *buf = NULL;
    size_t len;
    int r;

    if (fd < 0)
        return -errno;
    if ((r = proc_read_fd(fd, 8u << 20, &buf, &len)) < 0)
        return r;
    if (strlen(buf) != len) /* a NUL inside: not a record of ours */
        return -EBADMSG;
    *ret_text = TAKE_PTR(buf);
    return 0;
}
