/* Values: human durations, sizes, signal and state names, and the flag values the client and
 * serve parse. Output (JSON, tables, the jobs table): format-output.c. */
#include "format.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/job.h"

/* ---- human units ------------------------------------------------------------------------ */

const char *fmt_duration(char *buf, size_t cap, int64_t ms)
{
    if (ms < 0)
        (void)snprintf(buf, cap, "-");
    else if (ms < 1000)
        (void)snprintf(buf, cap, "%lldms", (long long)ms);
    else if (ms < 60000)
        (void)snprintf(buf, cap, "%lld.%llds", (long long)(ms / 1000),
                       (long long)(ms % 1000 / 100));
    else if (ms < 3600000)
        (void)snprintf(buf, cap, "%lldm%02llds", (long long)(ms / 60000),
                       (long long)(ms / 1000 % 60));
    else if (ms < 86400000)
        (void)snprintf(buf, cap, "%lldh%02lldm", (long long)(ms / 3600000),
                       (long long)(ms / 60000 % 60));
    else
        (void)snprintf(buf, cap, "%lldd%02lldh", (long long)(ms / 86400000),
                       (long long)(ms / 3600000 % 24));
    return buf;
}

const char *fmt_ago(char *buf, size_t cap, int64_t now_ms, int64_t t_ms)
{
    int64_t d = now_ms - t_ms;

    if (t_ms <= 0)
        (void)snprintf(buf, cap, "-");
    else if (d < 1000) /* clock skew between client and server counts as now */
        (void)snprintf(buf, cap, "just now");
    else if (d < 60000)
        (void)snprintf(buf, cap, "%llds ago", (long long)(d / 1000));
    else if (d < 3600000)
        (void)snprintf(buf, cap, "%lldm ago", (long long)(d / 60000));
    else if (d < 86400000)
        (void)snprintf(buf, cap, "%lldh ago", (long long)(d / 3600000));
    else
        (void)snprintf(buf, cap, "%lldd ago", (long long)(d / 86400000));
    return buf;
}

const char *fmt_bytes(char *buf, size_t cap, uint64_t n)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = (double)n;
    size_t u = 0;

    if (n < 1024) {
        (void)snprintf(buf, cap, "%lluB", (unsigned long long)n);
        return buf;
    }
    v /= 1024;
    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024;
        u++;
    }
    if (v < 10)
        (void)snprintf(buf, cap, "%.1f%s", v, units[u]);
    else
        (void)snprintf(buf, cap, "%.0f%s", v, units[u]);
    return buf;
}

const char *fmt_signal_name(char *buf, size_t cap, int sig)
{
    const char *abbrev = sig > 0 && sig < 65 ? sigabbrev_np(sig) : NULL;

    if (abbrev)
        (void)snprintf(buf, cap, "SIG%s", abbrev);
    else
        (void)snprintf(buf, cap, "SIG%d", sig);
    return buf;
}

/* The wire's JobState numbers are core/job's job_state: the client's names are job_state_name's. */
#define SAME_NUMBER(s) _Static_assert((int)RUNJOB__V1__JOB_STATE__JOB_STATE_##s == (int)JOB_##s, #s)
SAME_NUMBER(STARTING);
SAME_NUMBER(RUNNING);
SAME_NUMBER(EXITED);
SAME_NUMBER(KILLED);
SAME_NUMBER(FAILED_TO_START);
SAME_NUMBER(LOST);
#undef SAME_NUMBER

const char *fmt_state_name(char *buf, size_t cap, int state)
{
    const char *name = "?";
    size_t n = 0;

    if (protobuf_c_enum_descriptor_get_value(&runjob__v1__job_state__descriptor, state))
        name = job_state_name((enum job_state)state);
    /* A word for a column: FAILED_TO_START reads "failed" (its error says the rest). */
    for (; name[n] && name[n] != '_' && n + 1 < cap; n++)
        buf[n] = (char)tolower((unsigned char)name[n]);
    if (cap)
        buf[n] = '\0';
    return buf;
}

/* ---- flag values ------------------------------------------------------------------------ */

/* Digits at *s into *ret; advances *s. */
static int parse_digits(const char **s, uint64_t *ret)
{
    uint64_t v = 0;
    const char *p = *s;

    if (!isdigit((unsigned char)*p))
        return -EINVAL;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *s = p;
    *ret = v;
    return 0;
}

int fmt_parse_uint(const char *s, uint64_t *ret)
{
    uint64_t v;
    int r;

    if (!s)
        return -EINVAL;
    if ((r = parse_digits(&s, &v)) < 0)
        return r;
    if (*s)
        return -EINVAL;
    *ret = v;
    return 0;
}

int fmt_parse_size(const char *s, uint64_t *ret)
{
    uint64_t v, mult = 1;
    int r;

    if (!s)
        return -EINVAL;
    if ((r = parse_digits(&s, &v)) < 0)
        return r;
    const char *units = strchr("KMGT", toupper((unsigned char)*s));
    if (*s && units) {
        unsigned power = (unsigned)(units - "KMGT") + 1;
        bool decimal = false;
        s++;
        if (*s == 'i' || *s == 'I') /* KiB, Ki: 1024 */
            s += s[1] == 'B' || s[1] == 'b' ? 2 : 1;
        else if (*s == 'B' || *s == 'b') /* KB, MB: 1000, as disks and network speeds count */
            s++, decimal = true;
        for (unsigned i = 0; i < power; i++)
            mult *= decimal ? 1000 : 1024;
    } else if (*s == 'B' || *s == 'b') {
        s++;
    }
    if (*s)
        return -EINVAL;
    if (v > UINT64_MAX / mult)
        return -ERANGE;
    *ret = v * mult;
    return 0;
}

int fmt_parse_duration(const char *s, int64_t *ret_ms)
{
    uint64_t total = 0;
    bool first = true;

    if (!s || !*s)
        return -EINVAL;
    for (; *s; first = false) {
        uint64_t v, mult;
        int r = parse_digits(&s, &v);
        if (r < 0)
            return r;
        if (strncmp(s, "ms", 2) == 0) {
            mult = 1;
            s += 2;
        } else if (*s == 's' || (*s == '\0' && total == 0 && first)) {
            mult = 1000; /* a bare number is seconds, but only on its own ("1m30" is a typo) */
            s += *s ? 1 : 0;
        } else if (*s == 'm') {
            mult = 60000;
            s++;
        } else if (*s == 'h') {
            mult = 3600000;
            s++;
        } else if (*s == 'd') {
            mult = 86400000;
            s++;
        } else {
            return -EINVAL;
        }
        if (v > (uint64_t)INT64_MAX / mult || total > (uint64_t)INT64_MAX - v * mult)
            return -ERANGE;
        total += v * mult;
    }
    *ret_ms = (int64_t)total;
    return 0;
}

int fmt_parse_signal(const char *s, int *ret)
{
    uint64_t v;

    if (!s || !*s)
        return -EINVAL;
    if (isdigit((unsigned char)*s)) {
        if (fmt_parse_uint(s, &v) < 0 || v < 1 || v > 64)
            return -EINVAL;
        *ret = (int)v;
        return 0;
    }
    if (strncasecmp(s, "SIG", 3) == 0)
        s += 3;
    for (int sig = 1; sig < 65; sig++) {
        const char *a = sigabbrev_np(sig);
        if (a && strcasecmp(a, s) == 0) {
            *ret = sig;
            return 0;
        }
    }
    return -EINVAL;
}

int fmt_parse_cpu(const char *s, uint64_t *ret)
{
    uint64_t v;
    int r;

    if (!s)
        return -EINVAL;
    if ((r = parse_digits(&s, &v)) < 0)
        return r;
    if (*s == 'm')
        s++;
    if (*s)
        return -EINVAL;
    *ret = v;
    return 0;
}

int fmt_parse_state(const char *s, int *ret)
{
    const ProtobufCEnumDescriptor *d = &runjob__v1__job_state__descriptor;

    if (!s)
        return -EINVAL;
    for (unsigned i = 0; i < d->n_values; i++) {
        int v = d->values[i].value;
        char word[32], dashed[32];
        const char *name = job_state_name((enum job_state)v);
        size_t n = 0;

        /* The column's word, or the whole name with '_' or with '-' (failed-to-start). */
        for (; name[n] && n + 1 < sizeof(dashed); n++)
            dashed[n] = name[n] == '_' ? '-' : name[n];
        dashed[n] = '\0';
        if (strcasecmp(s, fmt_state_name(word, sizeof(word), v)) == 0 || strcasecmp(s, name) == 0 ||
            strcasecmp(s, dashed) == 0) {
            *ret = v;
            return 0;
        }
    }
    return -EINVAL;
}
