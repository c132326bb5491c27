#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Set once by log_setup() before threads start; read-only afterwards (docs/STYLE.md
 * "Globals"). */
static struct {
    const char *ident;
    enum log_level level;
    enum log_format format;
} log_config = {"runjob", LOG_INFO, LOG_FORMAT_TEXT};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_setup(const char *ident, enum log_level level, enum log_format format)
{
    log_config.ident = ident;
    log_config.level = level;
    log_config.format = format;
}

int log_parse_level(const char *s, enum log_level *ret)
{
    for (int i = 0; i <= LOG_DEBUG; i++)
        if (strcmp(s, level_names[i]) == 0) {
            *ret = (enum log_level)i;
            return 0;
        }
    return -EINVAL;
}

int log_parse_format(const char *s, enum log_format *ret)
{
    if (strcmp(s, "text") == 0)
        *ret = LOG_FORMAT_TEXT;
    else if (strcmp(s, "json") == 0)
        *ret = LOG_FORMAT_JSON;
    else
        return -EINVAL;
    return 0;
}

bool log_is_enabled(enum log_level level)
{
    return level <= log_config.level;
}

int log_json_escape(char *buf, int cap, const char *s)
{
    int n = 0, used = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char tmp[8];
        const char *out = tmp;
        int len;
        if (*p == '"' || *p == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)*p;
            len = 2;
        } else if (*p < 0x20 || *p == 0x7f || *p >= 0x80) {
            /* Bytes >= 0x80 are escaped too: a log line must stay valid JSON whatever a user
             * put in a job name or argument. */
            len = snprintf(tmp, sizeof(tmp), "\\u%04x", *p);
        } else {
            tmp[0] = (char)*p;
            len = 1;
        }
        /* whole escapes only: a cut "\u00" would make the line invalid JSON */
        if (n + len < cap && n == used) {
            memcpy(buf + n, out, (size_t)len);
            used += len;
        }
        n += len;
    }
    if (cap > 0)
        buf[used] = '\0';
    return n;
}

__attribute__((format(printf, 3, 0))) static void
log_vwrite(enum log_level level, const char *suffix, const char *fmt, va_list ap)
{
    char msg[2048];
    char line[4096 + 512]; /* the escaped message, the suffix (strerror) and the JSON keys */
    int len;

    if (!log_is_enabled(level))
        return;
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    if (log_config.format == LOG_FORMAT_JSON) {
        char esc[4096];
        struct timespec ts;
        (void)clock_gettime(CLOCK_REALTIME, &ts);
        (void)log_json_escape(esc, sizeof(esc), msg);
        len = snprintf(line, sizeof(line),
                       "{\"time_ms\":%lld,\"level\":\"%s\",\"pid\":%d,\"msg\":\"%s%s\"}\n",
                       (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, level_names[level],
                       (int)getpid(), esc, suffix);
    } else {
        len = snprintf(line, sizeof(line), "%s[%d]: %s: %s%s\n", log_config.ident, (int)getpid(),
                       level_names[level], msg, suffix);
    }
    if (len > (int)sizeof(line) - 1) { /* cannot happen with the sizes above; keep the newline */
        len = (int)sizeof(line) - 1;
        line[len - 1] = '\n';
    }
    /* One write per line so concurrent threads never interleave inside a line. */
    (void)!write(STDERR_FILENO, line, (size_t)len);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, "", fmt, ap);
    va_end(ap);
}

int log_errno(int r, const char *fmt, ...)
{
    char suffix[256];
    va_list ap;
    (void)snprintf(suffix, sizeof(suffix), ": %s", strerror(r < 0 ? -r : r));
    va_start(ap, fmt);
    log_vwrite(LOG_ERROR, suffix, fmt, ap);
    va_end(ap);
    return r;
}
