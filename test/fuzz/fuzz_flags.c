/* libFuzzer target: every flag value parser of the client and serve applets (applets/format.h,
 * applets/serve.h, core/log.h), plus the escapers that put untrusted strings into JSON (the
 * client's jb_string, the server's log_json_escape). The first byte picks the parser, the rest
 * is the NUL-terminated value as getopt hands it over. Accepted values are checked against
 * the contract in the headers and formatted back where a formatter exists. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#include "applets/format.h"
#include "applets/serve.h"
#include "core/log.h"
#include "core/rpc.h"

/* Digits only, without leading zeros, compared with the printed value. */
static void check_digits(const char *s, uint64_t v)
{
    char b[32];

    while (*s == '0' && s[1])
        s++;
    (void)snprintf(b, sizeof(b), "%" PRIu64, v);
    FUZZ_CHECK(strcmp(s, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[64];
    char *s;
    uint64_t u = 0, u2 = 0;
    int64_t ms = 0;
    int i = 0, r;

    if (size < 1)
        return 0;
    s = malloc(size);
    FUZZ_CHECK(s);
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    switch (data[0] % 14) {
    case 0: /* --offset, --riops, --wiops, --pids, --server-port */
        r = fmt_parse_uint(s, &u);
        FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
        if (r == 0)
            check_digits(s, u);
        break;
    case 1: /* --memory, --rbps, --wbps */
        r = fmt_parse_size(s, &u);
        FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
        if (r == 0)
            (void)fmt_bytes(out, sizeof(out), u);
        break;
    case 2: /* stop --grace */
        r = fmt_parse_duration(s, &ms);
        FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
        if (r == 0) {
            FUZZ_CHECK(ms >= 0);
            (void)fmt_duration(out, sizeof(out), ms);
        }
        break;
    case 3: /* stop --signal */
        if (fmt_parse_signal(s, &i) == 0) {
            FUZZ_CHECK(i >= 1 && i <= 64);
            (void)fmt_signal_name(out, sizeof(out), i);
        }
        break;
    case 4: /* --cpu */
        r = fmt_parse_cpu(s, &u);
        FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
        break;
    case 5: /* list --state */
        if (fmt_parse_state(s, &i) == 0) {
            int back;
            FUZZ_CHECK(i >= 0 && i < 32); /* list keeps a bit per state */
            if (i != RUNJOB__V1__JOB_STATE__JOB_STATE_FAILED_TO_START) {
                char name[32];
                FUZZ_CHECK(fmt_parse_state(fmt_state_name(name, sizeof(name), i), &back) == 0 &&
                           back == i);
            }
        }
        break;
    case 6: /* a size's round trip: what fmt_bytes prints parses back to the same bytes */
        r = fmt_parse_size(s, &u);
        if (r == 0 && u % 1024 == 0 && u < (1ULL << 50)) {
            char num[32];
            (void)snprintf(num, sizeof(num), "%" PRIu64 "K", u / 1024);
            FUZZ_CHECK(fmt_parse_size(num, &u2) == 0 && u2 == u);
        }
        break;
    case 7: /* a duration's round trip in seconds (serve --stop-grace and stop --grace) */
        r = fmt_parse_duration(s, &ms);
        if (r == 0 && ms % 1000 == 0) {
            char num[32];
            int64_t back = -1;
            (void)snprintf(num, sizeof(num), "%" PRId64 "s", ms / 1000);
            FUZZ_CHECK(fmt_parse_duration(num, &back) == 0 && back == ms);
        }
        break;
    case 8: { /* serve --job-user UID[:GID] */
        uid_t uid;
        gid_t gid;
        r = serve_parse_ids(s, &uid, &gid);
        FUZZ_CHECK(r == 0 || r == -ENOENT || r == -EINVAL || r == -ERANGE);
        if (r == 0)
            FUZZ_CHECK(uid < UINT32_MAX && gid < UINT32_MAX);
        break;
    }
    case 9: { /* serve --log-level */
        enum log_level l;
        if (log_parse_level(s, &l) == 0)
            FUZZ_CHECK(l <= LOG_DEBUG);
        break;
    }
    case 10: { /* serve --log-format */
        enum log_format f;
        if (log_parse_format(s, &f) == 0)
            FUZZ_CHECK(f == LOG_FORMAT_TEXT || f == LOG_FORMAT_JSON);
        break;
    }
    case 11: { /* the client's JSON output of server-sent strings */
        struct strbuf *b = NULL;
        if (strbuf_new(&b) < 0)
            break;
        jb_string(b, s);
        const char *p = strbuf_str(b);
        size_t len = strbuf_len(b);
        bool oom = strbuf_is_failed(b);
        FUZZ_CHECK(oom || (len >= 2 && p[0] == '"' && p[len - 1] == '"' && strlen(p) == len));
        for (size_t k = 0; !oom && k < len; k++)
            FUZZ_CHECK((unsigned char)p[k] >= 0x20); /* control bytes are escaped */
        strbuf_free(b);
        break;
    }
    case 12: { /* the server's audit lines: certificate CNs and peers into JSON */
        char esc[64];
        int n = log_json_escape(esc, (int)sizeof(esc), s);
        /* The length it needed; when cut, cut between escapes: still a valid string body. */
        size_t got = strlen(esc);
        FUZZ_CHECK(n >= 0 && (n < (int)sizeof(esc) ? got == (size_t)n : got < sizeof(esc)));
        for (size_t k = 0; k < got; k++) {
            FUZZ_CHECK((unsigned char)esc[k] >= 0x20 && (unsigned char)esc[k] < 0x7f);
            FUZZ_CHECK(esc[k] != '"');
            if (esc[k] != '\\')
                continue;
            FUZZ_CHECK(k + 1 < got);
            if (esc[k + 1] == 'u') {
                FUZZ_CHECK(k + 5 < got);
                k += 5;
            } else {
                FUZZ_CHECK(esc[k + 1] == '"' || esc[k + 1] == '\\');
                k++;
            }
        }
        break;
    }
    default: { /* durations and sizes of any value format without overflow */
        int64_t v = 0;
        memcpy(&v, data + 1, size - 1 < sizeof(v) ? size - 1 : sizeof(v));
        (void)fmt_duration(out, sizeof(out), v);
        (void)fmt_ago(out, sizeof(out), v / 2, v);
        (void)fmt_bytes(out, sizeof(out), (uint64_t)v);
        (void)fmt_signal_name(out, sizeof(out), (int)v);
        (void)fmt_state_name(out, sizeof(out), (int)v);
        break;
    }
    }
    free(s);
    return 0;
}
