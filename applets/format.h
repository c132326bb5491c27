#pragma once
/* Pure formatting and parsing for the client applets: human durations and sizes, flag values,
 * JSON (walking protobuf-c descriptors, so field names always match the proto) and aligned
 * tables. No I/O except the FILE* the caller passes; every function is thread-safe. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/rpc.h"
#include "core/strbuf.h"

/* ---- human units (write into buf like snprintf; return buf) ---- */
/* 850ms, 12.3s, 4m12s, 2h05m, 3d04h; "-" for negative. */
const char *fmt_duration(char *buf, size_t cap, int64_t ms);
/* "just now", "42s ago", "3m ago", "5h ago", "2d ago"; "-" when t_ms is 0. */
const char *fmt_ago(char *buf, size_t cap, int64_t now_ms, int64_t t_ms);
/* 512B, 1.5KiB, 12MiB, 3.0GiB. */
const char *fmt_bytes(char *buf, size_t cap, uint64_t n);
/* "SIGKILL" for 9, "SIG99" for an unknown number. */
const char *fmt_signal_name(char *buf, size_t cap, int sig);
/* "starting", "running", "exited", "killed", "failed", "lost" ("?" otherwise): core/job's
 * job_state_name, lower case, up to its first '_'. */
const char *fmt_state_name(char *buf, size_t cap, int state);

/* ---- flag values: 0, or -EINVAL (not a value of that kind) / -ERANGE (too large) ---- */
/* Decimal digits only. */
int fmt_parse_uint(const char *s, uint64_t *ret);
/* 4096, 512K, 512M, 1G, 2T: K, M, G, T (and Ki, KiB, ...) are powers of 1024, as in systemd
 * and docker; KB, MB, GB, TB are powers of 1000. Case-insensitive; a trailing B alone = bytes.
 * The client and serve share it, so a size means the same on both sides. */
int fmt_parse_size(const char *s, uint64_t *ret);
/* 10 (seconds), 500ms, 30s, 2m, 1h, 1d, and sums like 1m30s; result in milliseconds. */
int fmt_parse_duration(const char *s, int64_t *ret_ms);
/* TERM, SIGTERM, sigterm, 15 (1..64). */
int fmt_parse_signal(const char *s, int *ret);
/* CPU millis: 500 or 500m. */
int fmt_parse_cpu(const char *s, uint64_t *ret);
/* A state name as printed by fmt_state_name, or whole (failed_to_start, failed-to-start), in
 * any case; sets the JobState. */
int fmt_parse_state(const char *s, int *ret);

/* ---- JSON, appended to a core/strbuf (an allocation failure shows in strbuf_is_failed) ---- */
void jb_string(struct strbuf *b, const char *s); /* quoted and escaped */
/* The message as one JSON object: proto field names, enums by their proto names (a job's
 * state by fmt_state_name's word: "exited"), every field (defaults too), 64-bit integers as
 * numbers, absent sub-messages as null; after each "X_time_ms" an "X_time" in RFC 3339 (UTC,
 * milliseconds), null while it is 0. */
void jb_message(struct strbuf *b, const ProtobufCMessage *m);

/* ---- tables ---- */
struct table;
/* A table with ncols columns and the given header row. NULL on out of memory. */
struct table *table_new(size_t ncols, const char *const *headers);
void table_free(struct table *t); /* NULL-safe */
/* Adds a row of ncols cells (copied; NULL prints as "-"); color is an ANSI SGR code such as
 * "32" for the whole row's cell `color_col`, or NULL. 0 or -ENOMEM. */
int table_add_row(struct table *t, const char *const *cells, int color_col, const char *color);
/* Columns left-aligned, separated by two spaces, padded by display width (UTF-8 aware);
 * colors only when color is true. */
void table_print(const struct table *t, FILE *f, bool color);

/* ---- jobs ---- */
/* The ANSI color for a job's state cell ("32" green for exited 0, "31" red ...). */
const char *fmt_state_color(const Runjob__V1__JobStatus *st);
/* "exited 0", "killed SIGKILL", "running", "failed: <error>" ... one line. */
const char *fmt_status_word(char *buf, size_t cap, const Runjob__V1__JobStatus *st);
/* Builds the status/list table: wide adds command, pid, limits and output size; owner adds
 * the OWNER column. now_ms is "now" for the STARTED column. NULL on out of memory. */
struct table *fmt_jobs_table(Runjob__V1__JobStatus *const *jobs, size_t n, bool wide, bool owner,
                             int64_t now_ms);
/* The exit code a shell would report for the job: exit code, 128+signal, 126 or 127 when it
 * could not start (fmt_start_error_exit_code of its error), 1 when lost or still running. */
int fmt_job_exit_code(const Runjob__V1__JobStatus *st);
/* What sh (and docker run) exit with for a command that could not be run, from the server's
 * words for it (core/shimproto.c): 127 when it is not there ("no such file or directory", a
 * path component that is not a directory, a symbolic link loop, a name too long), else 126
 * (found, but not executable: permission denied, not an executable format, a directory ...). */
int fmt_start_error_exit_code(const char *message);
