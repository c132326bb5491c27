#pragma once
/* Log lines to stderr: "runjob[pid]: level: message" (text) or one JSON object per line.
 * Thread-safe: each line is written with a single write(2). */
#include <stdbool.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON = 1 };

/* Set once, before any thread starts: the log settings are a global (docs/STYLE.md "Globals"). */
void log_setup(const char *ident, enum log_level level, enum log_format format);
/* Parses "error|warn|info|debug"; 0 or -EINVAL. */
int log_parse_level(const char *s, enum log_level *ret);
/* Parses "text|json"; 0 or -EINVAL. */
int log_parse_format(const char *s, enum log_format *ret);
bool log_is_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs at error level with ": strerror(-r)" appended; returns r (negative errno). */
int log_errno(int r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_is_enabled(LOG_DEBUG))                                                             \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                       \
    } while (0)

/* Writes s as a JSON string body (no quotes) into buf; returns the length it needed (like
 * snprintf). When that is >= cap the output stops before the first escape that does not fit
 * whole, so it is always a valid JSON string body. Escapes quotes, backslash, control bytes and
 * every byte >= 0x80 (as \u00XX). */
int log_json_escape(char *buf, int cap, const char *s);
