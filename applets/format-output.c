/* The output side of format.h: JSON written from protobuf-c descriptors, aligned tables, and
 * the jobs table of status and list. Value formatting and flag parsing: format.c. */
#include "format.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- JSON ------------------------------------------------------------------------------- */

/* Every append below ignores its error: a failed one marks the strbuf, which the caller checks
 * once (strbuf_is_failed). */

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not one. */
static size_t utf8_seq(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        return (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (p[0] >= 0xe0 && p[0] <= 0xef) {
        if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
            return 0;
        if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0))
            return 0; /* overlong, surrogate */
        return 3;
    }
    if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        if ((p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
            return 0;
        if ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
            return 0;
        return 4;
    }
    return 0;
}

void jb_string(struct strbuf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    char tmp[8];

    (void)strbuf_putn(b, "\"", 1);
    while (*p) {
        size_t n;
        if (*p == '"' || *p == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)*p;
            (void)strbuf_putn(b, tmp, 2);
            p++;
        } else if (*p < 0x20 || *p == 0x7f) {
            int k = snprintf(tmp, sizeof(tmp), "\\u%04x", *p);
            (void)strbuf_putn(b, tmp, (size_t)k);
            p++;
        } else if ((n = utf8_seq(p)) > 0) {
            (void)strbuf_putn(b, (const char *)p, n);
            p += n;
        } else {
            (void)strbuf_putn(b, "\\ufffd", 6); /* invalid UTF-8: the replacement character */
            p++;
        }
    }
    (void)strbuf_putn(b, "\"", 1);
}

static void jb_value(struct strbuf *b, const ProtobufCFieldDescriptor *f, const void *v)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        (void)strbuf_printf(b, "%d", *(const int32_t *)v);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        (void)strbuf_printf(b, "%u", *(const uint32_t *)v);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        (void)strbuf_printf(b, "%lld", (long long)*(const int64_t *)v);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        (void)strbuf_printf(b, "%llu", (unsigned long long)*(const uint64_t *)v);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        (void)strbuf_printf(b, "%.9g", (double)*(const float *)v);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        (void)strbuf_printf(b, "%.17g", *(const double *)v);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        (void)strbuf_puts(b, *(const protobuf_c_boolean *)v ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        int e = *(const int *)v;
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value((const ProtobufCEnumDescriptor *)f->descriptor, e);
        char word[32];
        /* A job's state in the table's (and --state's) words: "exited", not JOB_STATE_EXITED. */
        if (ev && f->descriptor == &runjob__v1__job_state__descriptor)
            jb_string(b, fmt_state_name(word, sizeof(word), e));
        else if (ev && f->descriptor == &runjob__v1__input_mode__descriptor)
            jb_string(b, e == RUNJOB__V1__INPUT_MODE__INPUT_MODE_TTY    ? "tty"
                         : e == RUNJOB__V1__INPUT_MODE__INPUT_MODE_PIPE ? "pipe"
                                                                        : "none");
        else if (ev)
            jb_string(b, ev->name);
        else
            (void)strbuf_printf(b, "%d", e);
        break;
    }
    case PROTOBUF_C_TYPE_STRING:
        jb_string(b, *(char *const *)v);
        break;
    case PROTOBUF_C_TYPE_BYTES: {
        /* Not used by any reply; bytes print as a string of their (escaped) contents. */
        const ProtobufCBinaryData *d = v;
        char *s = strndup((const char *)d->data ? (const char *)d->data : "", d->len);
        jb_string(b, s);
        free(s);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)v;
        if (m)
            jb_message(b, m);
        else
            (void)strbuf_puts(b, "null");
        break;
    }
    }
}

static size_t field_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return 4;
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

/* After a "<what>_time_ms" field (milliseconds since the epoch), "<what>_time" as RFC 3339 in
 * UTC with milliseconds ("2026-12-04T02:30:00.123Z"), for people and for tools that parse
 * dates; null while it is 0 (not yet: a running job's end). */
static void jb_time_beside(struct strbuf *b, const ProtobufCFieldDescriptor *f, const void *v)
{
    size_t n = strlen(f->name);
    int64_t ms;
    char name[64], when[40];
    struct tm tm;

    if (f->type != PROTOBUF_C_TYPE_INT64 || n < 9 || n - 3 >= sizeof(name) ||
        strcmp(f->name + n - 8, "_time_ms") != 0)
        return;
    memcpy(name, f->name, n - 3);
    name[n - 3] = '\0';
    (void)strbuf_putn(b, ",", 1);
    jb_string(b, name);
    (void)strbuf_putn(b, ":", 1);
    ms = *(const int64_t *)v;
    time_t secs = (time_t)(ms / 1000);
    if (ms <= 0 || !gmtime_r(&secs, &tm) ||
        !strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm)) {
        (void)strbuf_puts(b, "null");
        return;
    }
    (void)strbuf_printf(b, "\"%s.%03dZ\"", when, (int)(ms % 1000));
}

/* A job's exit_code means something only once it exited, its signal once it was killed: null
 * otherwise, so that a script reading 0 is not told a running, killed or lost job succeeded. */
static bool jb_is_unset(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const Runjob__V1__JobStatus *st = (const Runjob__V1__JobStatus *)m;

    if (m->descriptor != &runjob__v1__job_status__descriptor)
        return false;
    if (strcmp(f->name, "exit_code") == 0)
        return st->state != RUNJOB__V1__JOB_STATE__JOB_STATE_EXITED;
    if (strcmp(f->name, "signal") == 0)
        return st->state != RUNJOB__V1__JOB_STATE__JOB_STATE_KILLED;
    return false;
}

void jb_message(struct strbuf *b, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;

    (void)strbuf_putn(b, "{", 1);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m;
        if (i)
            (void)strbuf_putn(b, ",", 1);
        jb_string(b, f->name);
        (void)strbuf_putn(b, ":", 1);
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(char *const *)(base + f->offset);
            (void)strbuf_putn(b, "[", 1);
            for (size_t k = 0; k < n; k++) {
                if (k)
                    (void)strbuf_putn(b, ",", 1);
                jb_value(b, f, arr + k * field_size(f));
            }
            (void)strbuf_putn(b, "]", 1);
        } else if (jb_is_unset(m, f)) {
            (void)strbuf_puts(b, "null");
        } else {
            jb_value(b, f, base + f->offset);
            jb_time_beside(b, f, base + f->offset);
        }
    }
    (void)strbuf_putn(b, "}", 1);
}

/* ---- tables ----------------------------------------------------------------------------- */

struct table {
    size_t ncols, nrows, cap;
    char **cells;        /* nrows * ncols */
    const char **colors; /* per row: color of cell color_col[row] */
    int *color_col;
};

struct table *table_new(size_t ncols, const char *const *headers)
{
    struct table *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->ncols = ncols;
    if (table_add_row(t, headers, -1, NULL) < 0) {
        table_free(t);
        return NULL;
    }
    return t;
}

void table_free(struct table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->colors);
    free(t->color_col);
    free(t);
}

int table_add_row(struct table *t, const char *const *cells, int color_col, const char *color)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        char **c = realloc(t->cells, cap * t->ncols * sizeof(*c));
        if (!c)
            return -ENOMEM;
        t->cells = c;
        const char **co = realloc(t->colors, cap * sizeof(*co));
        if (!co)
            return -ENOMEM;
        t->colors = co;
        int *cc = realloc(t->color_col, cap * sizeof(*cc));
        if (!cc)
            return -ENOMEM;
        t->color_col = cc;
        t->cap = cap;
    }
    char **row = t->cells + t->nrows * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        row[i] = strdup(cells[i] && *cells[i] ? cells[i] : "-");
        if (!row[i]) {
            for (size_t k = 0; k < i; k++)
                free(row[k]);
            return -ENOMEM;
        }
        /* A cell is one line: newlines and tabs in user strings would break the layout. */
        for (char *p = row[i]; *p; p++)
            if (*p == '\n' || *p == '\t' || *p == '\r')
                *p = ' ';
    }
    t->colors[t->nrows] = color;
    t->color_col[t->nrows] = color_col;
    t->nrows++;
    return 0;
}

/* Display width: code points, not bytes. */
static size_t width(const char *s)
{
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xc0) != 0x80)
            w++;
    return w;
}

void table_print(const struct table *t, FILE *f, bool color)
{
    size_t w[64] = {0};
    size_t ncols = t->ncols < 64 ? t->ncols : 64;

    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < ncols; c++) {
            size_t k = width(t->cells[r * t->ncols + c]);
            if (k > w[c])
                w[c] = k;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            bool colored = color && t->colors[r] && t->color_col[r] == (int)c;
            bool last = c + 1 == ncols;
            if (colored)
                fprintf(f, "\033[%sm%s\033[0m", t->colors[r], cell);
            else
                fputs(cell, f);
            if (!last)
                fprintf(f, "%*s", (int)(w[c] - width(cell) + 2), "");
        }
        fputc('\n', f);
    }
}

/* ---- jobs ------------------------------------------------------------------------------- */

const char *fmt_state_color(const Runjob__V1__JobStatus *st)
{
    switch (st->state) {
    case RUNJOB__V1__JOB_STATE__JOB_STATE_STARTING:
    case RUNJOB__V1__JOB_STATE__JOB_STATE_RUNNING:
        return "36"; /* cyan */
    case RUNJOB__V1__JOB_STATE__JOB_STATE_EXITED:
        return st->exit_code == 0 ? "32" : "31";
    case RUNJOB__V1__JOB_STATE__JOB_STATE_KILLED:
        return "33";
    case RUNJOB__V1__JOB_STATE__JOB_STATE_FAILED_TO_START:
        return "31";
    case RUNJOB__V1__JOB_STATE__JOB_STATE_LOST:
        return "35";
    case _RUNJOB__V1__JOB_STATE_IS_INT_SIZE:
        break;
    }
    return NULL;
}

const char *fmt_status_word(char *buf, size_t cap, const Runjob__V1__JobStatus *st)
{
    char sig[32], name[32];

    switch (st->state) {
    case RUNJOB__V1__JOB_STATE__JOB_STATE_EXITED:
        (void)snprintf(buf, cap, "exited with code %d%s", st->exit_code,
                       st->timed_out ? " (timed out)" : "");
        break;
    case RUNJOB__V1__JOB_STATE__JOB_STATE_KILLED:
        (void)snprintf(buf, cap, "killed by %s%s%s", fmt_signal_name(sig, sizeof(sig), st->signal),
                       st->oom_killed ? " (out of memory)" : "",
                       st->timed_out ? " (timed out)" : "");
        break;
    case RUNJOB__V1__JOB_STATE__JOB_STATE_FAILED_TO_START:
    case RUNJOB__V1__JOB_STATE__JOB_STATE_LOST:
        (void)snprintf(buf, cap, "%s%s%s", fmt_state_name(name, sizeof(name), st->state),
                       st->error && *st->error ? ": " : "", st->error ? st->error : "");
        break;
    case RUNJOB__V1__JOB_STATE__JOB_STATE_STARTING:
    case RUNJOB__V1__JOB_STATE__JOB_STATE_RUNNING:
    case _RUNJOB__V1__JOB_STATE_IS_INT_SIZE:
        (void)snprintf(buf, cap, "%s", fmt_state_name(name, sizeof(name), st->state));
        break;
    }
    return buf;
}

int fmt_start_error_exit_code(const char *message)
{
    static const char *const not_found[] = {"no such file or directory", "is not a directory",
                                            "too many levels of symbolic links",
                                            "file name too long"};

    for (size_t i = 0; message && i < sizeof(not_found) / sizeof(not_found[0]); i++)
        if (strcasestr(message, not_found[i]))
            return 127;
    return 126;
}

int fmt_job_exit_code(const Runjob__V1__JobStatus *st)
{
    switch (st->state) {
    case RUNJOB__V1__JOB_STATE__JOB_STATE_EXITED:
        return st->exit_code & 0xff;
    case RUNJOB__V1__JOB_STATE__JOB_STATE_KILLED:
        return 128 + st->signal;
    case RUNJOB__V1__JOB_STATE__JOB_STATE_FAILED_TO_START:
        return fmt_start_error_exit_code(st->error);
    case RUNJOB__V1__JOB_STATE__JOB_STATE_STARTING:
    case RUNJOB__V1__JOB_STATE__JOB_STATE_RUNNING:
    case RUNJOB__V1__JOB_STATE__JOB_STATE_LOST:
    case _RUNJOB__V1__JOB_STATE_IS_INT_SIZE:
        break;
    }
    return 1;
}

static void join_command(char *buf, size_t cap, const Runjob__V1__JobStatus *st)
{
    size_t n = 0;
    int k = snprintf(buf, cap, "%s", st->command ? st->command : "");
    n = k > 0 ? (size_t)k : 0;
    for (size_t i = 0; i < st->n_args && n < cap; i++) {
        k = snprintf(buf + n, cap - n, " %s", st->args[i]);
        if (k < 0)
            break;
        n += (size_t)k;
    }
}

struct table *fmt_jobs_table(Runjob__V1__JobStatus *const *jobs, size_t n, bool wide, bool owner,
                             int64_t now_ms)
{
    /* clang-format off */
    enum { ID, NAME, OWNER, STATE, EXIT, SIGNAL, STARTED, DURATION, MEMORY, CPU, FLAGS, ERROR,
           PID, OUTPUT, LIMITS, COMMAND, NCOLS };
    /* clang-format on */
    static const char *const headers[NCOLS] = {
        "ID",     "NAME", "OWNER", "STATE", "EXIT", "SIGNAL", "STARTED", "DURATION",
        "MEMORY", "CPU",  "FLAGS", "ERROR", "PID",  "OUTPUT", "LIMITS",  "COMMAND"};
    /* The columns shown, in order. */
    int cols[NCOLS], nc = 0;
    for (int c = 0; c < NCOLS; c++) {
        if (c == OWNER && !owner && !wide)
            continue;
        if ((c == PID || c == OUTPUT || c == LIMITS || c == COMMAND) && !wide)
            continue;
        cols[nc++] = c;
    }
    const char *hdr[NCOLS];
    for (int i = 0; i < nc; i++)
        hdr[i] = headers[cols[i]];
    struct table *t = table_new((size_t)nc, hdr);
    if (!t)
        return NULL;

    for (size_t j = 0; j < n; j++) {
        const Runjob__V1__JobStatus *st = jobs[j];
        char exitc[16] = "", sig[32] = "", started[32], dur[32] = "", mem[32] = "", cpu[32] = "",
             flags[32] = "", pid[16] = "", out[32] = "", limits[160] = "", cmd[512], state[16];
        const char *cell[NCOLS];
        int color_col = -1;

        if (st->state == RUNJOB__V1__JOB_STATE__JOB_STATE_EXITED)
            (void)snprintf(exitc, sizeof(exitc), "%d", st->exit_code);
        if (st->state == RUNJOB__V1__JOB_STATE__JOB_STATE_KILLED)
            fmt_signal_name(sig, sizeof(sig), st->signal);
        fmt_ago(started, sizeof(started), now_ms, st->start_time_ms);
        if (st->start_time_ms > 0)
            fmt_duration(dur, sizeof(dur),
                         (st->end_time_ms > 0 ? st->end_time_ms : now_ms) - st->start_time_ms);
        if (st->usage) {
            fmt_bytes(mem, sizeof(mem), st->usage->memory_peak_bytes);
            fmt_duration(cpu, sizeof(cpu), (int64_t)(st->usage->cpu_usec / 1000));
            fmt_bytes(out, sizeof(out), st->usage->output_bytes);
        }
        {
            bool trunc = st->usage && st->usage->output_truncated;
            bool gap = st->usage && st->usage->output_dropped_bytes;
            (void)snprintf(flags, sizeof(flags), "%s%s%s%s%s%s%s", st->oom_killed ? "oom" : "",
                           st->oom_killed && (trunc || gap || st->timed_out) ? "," : "",
                           st->timed_out ? "timeout" : "",
                           st->timed_out && (trunc || gap) ? "," : "", trunc ? "truncated" : "",
                           trunc && gap ? "," : "", gap ? "dropped" : "");
        }
        if (st->pid > 0)
            (void)snprintf(pid, sizeof(pid), "%d", st->pid);
        if (st->limits) { /* only the limits that apply; 0 is "none" */
            const Runjob__V1__Limits *l = st->limits;
            char v[32];
            size_t k = 0;
            const struct {
                const char *name;
                uint64_t val;
                bool bytes;
            } lim[] = {{"cpu", l->cpu_millis, false}, {"mem", l->memory_bytes, true},
                       {"pids", l->pids, false},      {"riops", l->io_riops, false},
                       {"wiops", l->io_wiops, false}, {"rbps", l->io_rbps, true},
                       {"wbps", l->io_wbps, true}};
            for (size_t i = 0; i < sizeof(lim) / sizeof(lim[0]) && k < sizeof(limits); i++) {
                if (!lim[i].val)
                    continue;
                if (lim[i].bytes)
                    fmt_bytes(v, sizeof(v), lim[i].val);
                else
                    (void)snprintf(v, sizeof(v), "%llu%s", (unsigned long long)lim[i].val,
                                   i == 0 ? "m" : "");
                int w = snprintf(limits + k, sizeof(limits) - k, "%s%s=%s", k ? " " : "",
                                 lim[i].name, v);
                if (w < 0)
                    break;
                k += (size_t)w;
            }
        }
        join_command(cmd, sizeof(cmd), st);

        const char *all[NCOLS] = {
            [ID] = st->id,       [NAME] = st->name,
            [OWNER] = st->owner, [STATE] = fmt_state_name(state, sizeof(state), st->state),
            [EXIT] = exitc,      [SIGNAL] = sig,
            [STARTED] = started, [DURATION] = dur,
            [MEMORY] = mem,      [CPU] = cpu,
            [FLAGS] = flags,     [ERROR] = st->error,
            [PID] = pid,         [OUTPUT] = out,
            [LIMITS] = limits,   [COMMAND] = cmd};
        for (int i = 0; i < nc; i++) {
            cell[i] = all[cols[i]];
            if (cols[i] == STATE)
                color_col = i;
        }
        if (table_add_row(t, cell, color_col, fmt_state_color(st)) < 0) {
            table_free(t);
            return NULL;
        }
    }
    return t;
}
