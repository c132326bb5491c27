/* The client: the zero-copy OutputChunk decoder against protobuf-c (and random bytes), human
 * formatting and flag-value parsing, JSON validity, tables, and errors in plain words. Each
 * verb's flag parsing is in test_client_flags.c. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "applets/applets.h"
#include "applets/client.h"
#include "applets/format.h"
#include "core/rpc-client-internal.h"
#include "core/rpc.h"
#include "test_client.h"

/* ---- the OutputChunk decoder ------------------------------------------------------------- */

static uint8_t *pack_chunk(const Runjob__V1__OutputChunk *m, size_t *len)
{
    *len = runjob__v1__output_chunk__get_packed_size(m);
    uint8_t *buf = malloc(*len + 1);
    runjob__v1__output_chunk__pack(m, buf);
    return buf;
}

Test(client, chunk_parse_matches_protobuf_c)
{
    static uint8_t big[300000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    struct {
        size_t n;
        int stream;
        uint64_t offset;
        int64_t time_ms;
    } cases[] = {
        {0, 0, 0, 0},
        {1, 1, 0, 0},
        {5, 2, 12345, 1700000000123},
        {127, 1, UINT64_MAX, -1},
        {128, 2, 1, INT64_MAX},
        {sizeof(big), 1, 1ull << 40, INT64_MIN},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        Runjob__V1__OutputChunk m = RUNJOB__V1__OUTPUT_CHUNK__INIT;
        m.data.data = big;
        m.data.len = cases[k].n;
        m.stream = cases[k].stream;
        m.offset = cases[k].offset;
        m.time_ms = cases[k].time_ms;
        size_t len;
        uint8_t *buf = pack_chunk(&m, &len);
        struct rpc_chunk c;
        cr_assert_eq(rpc_chunk_parse(buf, len, &c), 0, "case %zu", k);
        cr_expect_eq(c.len, cases[k].n);
        cr_expect_eq(c.stream, cases[k].stream);
        cr_expect_eq(c.offset, cases[k].offset);
        cr_expect_eq(c.time_ms, cases[k].time_ms);
        cr_expect_null(c.final_status);
        if (c.len) { /* zero copy: the bytes are the buffer's own */
            cr_expect(c.data >= buf && c.data + c.len <= buf + len);
            cr_expect_eq(memcmp(c.data, big, c.len), 0);
        }
        free(buf);
    }
}

Test(client, chunk_parse_final_status)
{
    Runjob__V1__OutputChunk m = RUNJOB__V1__OUTPUT_CHUNK__INIT;
    Runjob__V1__JobStatus st = RUNJOB__V1__JOB_STATUS__INIT;
    Runjob__V1__Usage u = RUNJOB__V1__USAGE__INIT;
    char *args[] = {"-l", "/tmp"};
    st.id = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    st.command = "/bin/ls";
    st.args = args;
    st.n_args = 2;
    st.state = RUNJOB__V1__JOB_STATE__JOB_STATE_KILLED;
    st.signal = 9;
    u.memory_peak_bytes = 1 << 20;
    st.usage = &u;
    m.final_status = &st;
    m.offset = 99;
    size_t len;
    uint8_t *buf = pack_chunk(&m, &len);
    struct rpc_chunk c;
    cr_assert_eq(rpc_chunk_parse(buf, len, &c), 0);
    cr_assert_not_null(c.final_status);
    cr_expect_str_eq(c.final_status->id, st.id);
    cr_expect_eq(c.final_status->n_args, 2);
    cr_expect_str_eq(c.final_status->args[1], "/tmp");
    cr_expect_eq(c.final_status->signal, 9);
    cr_expect_eq(c.final_status->usage->memory_peak_bytes, 1 << 20);
    cr_expect_eq(c.len, 0);
    cr_expect_eq(c.offset, 99);
    protobuf_c_message_free_unpacked(&c.final_status->base, NULL);
    free(buf);
}

Test(client, chunk_parse_skips_unknown_fields)
{
    /* data "hi", then field 9 varint, field 10 fixed64, field 11 bytes, field 12 fixed32 */
    const uint8_t buf[] = {0x0a, 2, 'h',  'i', 0x48, 0x96, 0x01, 0x51, 1, 2, 3, 4, 5,    6,
                           7,    8, 0x5a, 3,   'x',  'y',  'z',  0x65, 1, 2, 3, 4, 0x10, 2};
    struct rpc_chunk c;
    cr_assert_eq(rpc_chunk_parse(buf, sizeof(buf), &c), 0);
    cr_expect_eq(c.len, 2);
    cr_expect_eq(c.data, buf + 2);
    cr_expect_eq(c.stream, 2);
}

Test(client, chunk_parse_rejects_malformed)
{
    const struct {
        const char *what;
        uint8_t b[16];
        size_t n;
    } bad[] = {
        {"truncated tag", {0x80}, 1},
        {"truncated data length", {0x0a}, 1},
        {"data longer than the message", {0x0a, 5, 'a'}, 3},
        {"field 0", {0x00, 1}, 2},
        {"data as varint", {0x08, 1}, 2},
        {"stream as bytes", {0x12, 1, 'a'}, 3},
        {"offset as fixed64", {0x19, 1, 2, 3, 4, 5, 6, 7, 8}, 9},
        {"start group", {0x0b}, 1},
        {"end group", {0x0c}, 1},
        {"wire type 6", {0x0e}, 1},
        {"eleven-byte varint",
         {0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
         12},
        {"varint past 64 bits",
         {0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
         11},
        {"truncated fixed32", {0x65, 1, 2}, 3},
        {"final_status not a JobStatus", {0x2a, 2, 0x08, 0x80}, 4},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct rpc_chunk c = {.len = 77};
        cr_expect_eq(rpc_chunk_parse(bad[i].b, bad[i].n, &c), -EBADMSG, "%s", bad[i].what);
        cr_expect_eq(c.len, 77, "%s: ret written on failure", bad[i].what);
    }
    struct rpc_chunk c;
    cr_expect_eq(rpc_chunk_parse(NULL, 0, &c), 0); /* an empty message is a valid chunk */
}

Test(client, chunk_parse_prefixes_agree_with_protobuf_c)
{
    Runjob__V1__OutputChunk m = RUNJOB__V1__OUTPUT_CHUNK__INIT;
    Runjob__V1__JobStatus st = RUNJOB__V1__JOB_STATUS__INIT;
    st.id = "abc";
    st.error = "an error";
    m.data.data = (uint8_t *)"hello world";
    m.data.len = 11;
    m.stream = 1;
    m.offset = 300;
    m.time_ms = 1700000000000;
    m.final_status = &st;
    size_t len;
    uint8_t *buf = pack_chunk(&m, &len);
    for (size_t n = 0; n <= len; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan catches any overread */
        memcpy(copy, buf, n);
        struct rpc_chunk c;
        int ours = rpc_chunk_parse(copy, n, &c);
        Runjob__V1__OutputChunk *theirs = runjob__v1__output_chunk__unpack(NULL, n, copy);
        cr_expect_eq(ours == 0, theirs != NULL, "prefix %zu: ours %d, protobuf-c %s", n, ours,
                     theirs ? "ok" : "rejects");
        if (ours == 0 && theirs) {
            cr_expect_eq(c.len, theirs->data.len);
            cr_expect_eq(c.offset, theirs->offset);
            cr_expect_eq(c.time_ms, theirs->time_ms);
            cr_expect_eq(c.final_status != NULL, theirs->final_status != NULL);
        }
        if (ours == 0 && c.final_status)
            protobuf_c_message_free_unpacked(&c.final_status->base, NULL);
        if (theirs)
            runjob__v1__output_chunk__free_unpacked(theirs, NULL);
        free(copy);
    }
    free(buf);
}

Test(client, chunk_parse_random_bytes_never_crash)
{
    unsigned seed = 12345;
    Runjob__V1__OutputChunk m = RUNJOB__V1__OUTPUT_CHUNK__INIT;
    Runjob__V1__JobStatus st = RUNJOB__V1__JOB_STATUS__INIT;
    st.id = "x";
    m.data.data = (uint8_t *)"0123456789abcdef";
    m.data.len = 16;
    m.offset = 1 << 20;
    m.final_status = &st;
    size_t vlen;
    uint8_t *valid = pack_chunk(&m, &vlen);
    int accepted = 0;

    for (int iter = 0; iter < 50000; iter++) {
        size_t n;
        uint8_t *b;
        if (iter % 2) { /* pure noise */
            n = (size_t)(rand_r(&seed) % 48);
            b = malloc(n ? n : 1);
            for (size_t i = 0; i < n; i++)
                b[i] = (uint8_t)rand_r(&seed);
        } else { /* a valid message with a few bytes flipped */
            n = vlen;
            b = malloc(n);
            memcpy(b, valid, n);
            for (int k = 0; k < 1 + rand_r(&seed) % 3; k++)
                b[rand_r(&seed) % n] = (uint8_t)rand_r(&seed);
        }
        struct rpc_chunk c;
        if (rpc_chunk_parse(b, n, &c) == 0) {
            accepted++;
            cr_assert(c.len == 0 || (c.data >= b && c.data + c.len <= b + n));
            if (c.final_status)
                protobuf_c_message_free_unpacked(&c.final_status->base, NULL);
        }
        free(b);
    }
    cr_expect_gt(accepted, 0);
    free(valid);
}

/* ---- human formats ----------------------------------------------------------------------- */

Test(client, job_id_parse_lowers_full_ids_only)
{
    char id[ID_LEN + 1] = "untouched";

    cr_assert(client_job_id_parse("7C9E6679-7425-40DE-944B-E07FC1F90AE7", id));
    cr_expect_str_eq(id, "7c9e6679-7425-40de-944b-e07fc1f90ae7");
    strcpy(id, "untouched");
    cr_expect_not(client_job_id_parse("7C9E6679-7425-40DE-944B-E07FC1F90AE", id)); /* short */
    cr_expect_not(client_job_id_parse("7C9E6679x7425-40DE-944B-E07FC1F90AE7", id));
    cr_expect_not(client_job_id_parse("backup", id));
    cr_expect_str_eq(id, "untouched");
}

Test(client, durations)
{
    char b[32];
    cr_expect_str_eq(fmt_duration(b, sizeof(b), 0), "0ms");
    cr_expect_str_eq(fmt_duration(b, sizeof(b), 850), "850ms");
    cr_expect_str_eq(fmt_duration(b, sizeof(b), 12345), "12.3s");
    cr_expect_str_eq(fmt_duration(b, sizeof(b), 252000), "4m12s");
    cr_expect_str_eq(fmt_duration(b, sizeof(b), 2 * 3600000 + 5 * 60000), "2h05m");
    cr_expect_str_eq(fmt_duration(b, sizeof(b), 3 * 86400000LL + 4 * 3600000), "3d04h");
    cr_expect_str_eq(fmt_duration(b, sizeof(b), -5), "-");
    cr_expect_str_eq(fmt_ago(b, sizeof(b), 1000000, 0), "-");
    cr_expect_str_eq(fmt_ago(b, sizeof(b), 1000000, 999500), "just now");
    cr_expect_str_eq(fmt_ago(b, sizeof(b), 1000000, 1000500), "just now");
    cr_expect_str_eq(fmt_ago(b, sizeof(b), 1000000, 958000), "42s ago");
    cr_expect_str_eq(fmt_ago(b, sizeof(b), 10000000, 10000000 - 180000), "3m ago");
    cr_expect_str_eq(fmt_ago(b, sizeof(b), 100000000, 100000000 - 5 * 3600000), "5h ago");
    cr_expect_str_eq(fmt_ago(b, sizeof(b), 1000000000, 1000000000 - 2 * 86400000), "2d ago");
}

Test(client, sizes_and_signals)
{
    char b[32];
    cr_expect_str_eq(fmt_bytes(b, sizeof(b), 0), "0B");
    cr_expect_str_eq(fmt_bytes(b, sizeof(b), 1023), "1023B");
    cr_expect_str_eq(fmt_bytes(b, sizeof(b), 1536), "1.5KiB");
    cr_expect_str_eq(fmt_bytes(b, sizeof(b), 12 << 20), "12MiB");
    cr_expect_str_eq(fmt_bytes(b, sizeof(b), 3ull << 30), "3.0GiB");
    cr_expect_str_eq(fmt_bytes(b, sizeof(b), UINT64_MAX), "16EiB");
    cr_expect_str_eq(fmt_signal_name(b, sizeof(b), 9), "SIGKILL");
    cr_expect_str_eq(fmt_signal_name(b, sizeof(b), 15), "SIGTERM");
    cr_expect_str_eq(fmt_signal_name(b, sizeof(b), 99), "SIG99");
    cr_expect_str_eq(fmt_state_name(b, sizeof(b), 0), "starting");
    cr_expect_str_eq(fmt_state_name(b, sizeof(b), 1), "running");
    cr_expect_str_eq(fmt_state_name(b, sizeof(b), 2), "exited");
    cr_expect_str_eq(fmt_state_name(b, sizeof(b), 3), "killed");
    cr_expect_str_eq(fmt_state_name(b, sizeof(b), 4), "failed");
    cr_expect_str_eq(fmt_state_name(b, sizeof(b), 5), "lost");
    cr_expect_str_eq(fmt_state_name(b, sizeof(b), 42), "?");
    cr_expect_str_eq(fmt_state_name(b, sizeof(b), -1), "?");
    cr_expect_str_eq(fmt_state_name(b, 4, 1), "run");
}

Test(client, parse_values)
{
    uint64_t u;
    int64_t d;
    int s;

    cr_expect_eq(fmt_parse_size("4096", &u), 0);
    cr_expect_eq(u, 4096);
    cr_expect_eq(fmt_parse_size("512K", &u), 0);
    cr_expect_eq(u, 512 << 10);
    cr_expect_eq(fmt_parse_size("512M", &u), 0);
    cr_expect_eq(u, 512ull << 20);
    cr_expect_eq(fmt_parse_size("2g", &u), 0);
    cr_expect_eq(u, 2ull << 30);
    cr_expect_eq(fmt_parse_size("1GiB", &u), 0);
    cr_expect_eq(u, 1ull << 30);
    cr_expect_eq(fmt_parse_size("3T", &u), 0);
    cr_expect_eq(u, 3ull << 40);
    cr_expect_eq(fmt_parse_size("512Mi", &u), 0);
    cr_expect_eq(u, 512ull << 20);
    cr_expect_eq(fmt_parse_size("512MB", &u), 0, "MB is the decimal megabyte");
    cr_expect_eq(u, 512000000);
    cr_expect_eq(fmt_parse_size("4kb", &u), 0);
    cr_expect_eq(u, 4000);
    cr_expect_eq(fmt_parse_size("100B", &u), 0);
    cr_expect_eq(u, 100);
    const char *bad_sizes[] = {"",     "M",  "-1",   "1.5G", "12X",   "1 G", "1GG",
                               "0x10", " 1", "1KBB", "1iB",  "1KiBB", "1BB"};
    for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++)
        cr_expect_eq(fmt_parse_size(bad_sizes[i], &u), -EINVAL, "'%s'", bad_sizes[i]);
    cr_expect_eq(fmt_parse_size("99999999999999999999", &u), -ERANGE);
    cr_expect_eq(fmt_parse_size("20000000000T", &u), -ERANGE);

    cr_expect_eq(fmt_parse_duration("10", &d), 0);
    cr_expect_eq(d, 10000);
    cr_expect_eq(fmt_parse_duration("500ms", &d), 0);
    cr_expect_eq(d, 500);
    cr_expect_eq(fmt_parse_duration("1m30s", &d), 0);
    cr_expect_eq(d, 90000);
    cr_expect_eq(fmt_parse_duration("2h", &d), 0);
    cr_expect_eq(d, 7200000);
    cr_expect_eq(fmt_parse_duration("1d", &d), 0);
    cr_expect_eq(d, 86400000);
    const char *bad_durations[] = {"", "s", "-1", "1.5s", "10x", "1m30", "ms"};
    for (size_t i = 0; i < sizeof(bad_durations) / sizeof(bad_durations[0]); i++)
        cr_expect_neq(fmt_parse_duration(bad_durations[i], &d), 0, "'%s'", bad_durations[i]);
    cr_expect_eq(fmt_parse_duration("99999999999999999999d", &d), -ERANGE);
    cr_expect_eq(fmt_parse_duration("9999999999999999d", &d), -ERANGE);

    cr_expect_eq(fmt_parse_signal("TERM", &s), 0);
    cr_expect_eq(s, 15);
    cr_expect_eq(fmt_parse_signal("sigkill", &s), 0);
    cr_expect_eq(s, 9);
    cr_expect_eq(fmt_parse_signal("2", &s), 0);
    cr_expect_eq(s, 2);
    const char *bad_signals[] = {"", "0", "65", "SIG", "FOO", "-9", "9x"};
    for (size_t i = 0; i < sizeof(bad_signals) / sizeof(bad_signals[0]); i++)
        cr_expect_eq(fmt_parse_signal(bad_signals[i], &s), -EINVAL, "'%s'", bad_signals[i]);

    cr_expect_eq(fmt_parse_cpu("500", &u), 0);
    cr_expect_eq(u, 500);
    cr_expect_eq(fmt_parse_cpu("1500m", &u), 0);
    cr_expect_eq(u, 1500);
    cr_expect_neq(fmt_parse_cpu("0.5", &u), 0);
    cr_expect_neq(fmt_parse_cpu("m", &u), 0);

    cr_expect_eq(fmt_parse_state("running", &s), 0);
    cr_expect_eq(s, RUNJOB__V1__JOB_STATE__JOB_STATE_RUNNING);
    cr_expect_eq(fmt_parse_state("FAILED", &s), 0);
    cr_expect_eq(s, RUNJOB__V1__JOB_STATE__JOB_STATE_FAILED_TO_START);
    cr_expect_eq(fmt_parse_state("failed_to_start", &s), 0);
    cr_expect_eq(fmt_parse_state("Failed-To-Start", &s), 0);
    cr_expect_eq(s, RUNJOB__V1__JOB_STATE__JOB_STATE_FAILED_TO_START);
    cr_expect_eq(fmt_parse_state("LOST", &s), 0);
    cr_expect_eq(s, RUNJOB__V1__JOB_STATE__JOB_STATE_LOST);
    cr_expect_eq(fmt_parse_state("done", &s), -EINVAL);
    cr_expect_eq(fmt_parse_state("failed_to-start", &s), -EINVAL);
    cr_expect_eq(fmt_parse_state("failed_", &s), -EINVAL);
    cr_expect_eq(fmt_parse_state("", &s), -EINVAL);
    cr_expect_eq(fmt_parse_uint("12a", &u), -EINVAL);
}

/* ---- JSON and tables ----------------------------------------------------------------------- */

static Runjob__V1__JobStatus *sample_status(void)
{
    static Runjob__V1__JobStatus st = RUNJOB__V1__JOB_STATUS__INIT;
    static Runjob__V1__Usage u = RUNJOB__V1__USAGE__INIT;
    static Runjob__V1__Limits l = RUNJOB__V1__LIMITS__INIT;
    static char *args[] = {"-c", "echo \"hi\"\n\ttab \\ back", "caf\xc3\xa9", "bad\xff\x01"};
    st.id = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    st.name = "build \xe2\x9c\x93";
    st.owner = "alice";
    st.command = "/bin/sh";
    st.args = args;
    st.n_args = 4;
    st.state = RUNJOB__V1__JOB_STATE__JOB_STATE_EXITED;
    st.exit_code = 3;
    st.start_time_ms = 1700000000000;
    st.end_time_ms = 1700000004200;
    u.cpu_usec = 1500000;
    u.memory_peak_bytes = 12 << 20;
    u.output_truncated = true;
    st.usage = &u;
    l.memory_bytes = 1 << 30;
    st.limits = &l;
    return &st;
}

Test(client, json_strings)
{
    _cleanup_(strbuf_freep) struct strbuf *b = NULL;

    cr_assert_eq(strbuf_new(&b), 0);
    jb_string(b, "a\"b\\c\n\x01\x7f caf\xc3\xa9 \xff \xe2\x9c\x93 \xed\xa0\x80");
    cr_expect_str_eq(strbuf_str(b),
                     "\"a\\\"b\\\\c\\u000a\\u0001\\u007f caf\xc3\xa9 \\ufffd \xe2\x9c\x93 "
                     "\\ufffd\\ufffd\\ufffd\"");
    cr_expect(json_valid(strbuf_str(b)));
}

/* The JSON of m in a fresh buffer (the caller frees it). */
static struct strbuf *json_of(const ProtobufCMessage *m)
{
    struct strbuf *b = NULL;

    cr_assert_eq(strbuf_new(&b), 0);
    jb_message(b, m);
    cr_assert_not(strbuf_is_failed(b));
    return b;
}

Test(client, json_job_status_is_valid_and_uses_proto_names)
{
    struct strbuf *b = json_of(&sample_status()->base);
    cr_expect(json_valid(strbuf_str(b)), "%s", strbuf_str(b));
    cr_expect(json_check(strbuf_str(b),
                         "d[\"id\"]==\"7c9e6679-7425-40de-944b-e07fc1f90ae7\" and "
                         "d[\"owner\"]==\"alice\" and d[\"state\"]==\"exited\" and "
                         "d[\"exit_code\"]==3 and d[\"args\"][1]==\"echo \\\"hi\\\"\\n\\ttab "
                         "\\\\ back\" and d[\"usage\"][\"output_truncated\"] is True and "
                         "d[\"limits\"][\"memory_bytes\"]==1073741824 and "
                         "d[\"start_time_ms\"]==1700000000000 and "
                         "d[\"start_time\"]==\"2023-11-14T22:13:20.000Z\" and "
                         "d[\"end_time\"]==\"2023-11-14T22:13:24.200Z\" and "
                         "d[\"network\"]==\"NETWORK_MODE_NONE\""),
              "%s", strbuf_str(b));
    strbuf_free(b);

    Runjob__V1__JobStatus *jobs[] = {sample_status(), sample_status()};
    Runjob__V1__ListResponse lr = RUNJOB__V1__LIST_RESPONSE__INIT;
    lr.jobs = jobs;
    lr.n_jobs = 2;
    b = json_of(&lr.base);
    cr_expect(json_check(strbuf_str(b),
                         "len(d[\"jobs\"])==2 and d[\"jobs\"][1][\"name\"]==\"build \\u2713\""),
              "%s", strbuf_str(b));
    strbuf_free(b);

    Runjob__V1__JobStatus empty = RUNJOB__V1__JOB_STATUS__INIT;
    b = json_of(&empty.base);
    cr_expect(json_check(strbuf_str(b), "d[\"usage\"] is None and d[\"args\"]==[] and "
                                        "d[\"state\"]==\"starting\" and d[\"end_time\"] is None"),
              "%s", strbuf_str(b));
    strbuf_free(b);
}

static char *render(struct table *t, bool color)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    table_print(t, f, color);
    fclose(f);
    return s;
}

Test(client, table_alignment_and_color)
{
    const char *h[] = {"A", "LONGER", "C"};
    struct table *t = table_new(3, h);
    const char *r1[] = {"x\xc3\xa9", NULL, "last"};
    const char *r2[] = {"long cell", "b", ""};
    cr_assert_eq(table_add_row(t, r1, 1, "31"), 0);
    cr_assert_eq(table_add_row(t, r2, -1, NULL), 0);
    char *s = render(t, false);
    cr_expect_str_eq(s, "A          LONGER  C\n"
                        "x\xc3\xa9         -       last\n"
                        "long cell  b       -\n");
    free(s);
    s = render(t, true);
    cr_expect(strstr(s, "\033[31m-\033[0m"), "%s", s);
    free(s);
    table_free(t);
}

Test(client, jobs_table_columns)
{
    Runjob__V1__JobStatus *jobs[] = {sample_status()};
    struct table *t = fmt_jobs_table(jobs, 1, false, false, 1700000064200);
    char *s = render(t, false);
    cr_expect(strstr(s, "STATE") && strstr(s, "EXIT") && strstr(s, "SIGNAL"), "%s", s);
    cr_expect(strstr(s, "exited") && strstr(s, "1m ago") && strstr(s, "4.2s"), "%s", s);
    cr_expect(strstr(s, "12MiB") && strstr(s, "1.5s") && strstr(s, "truncated"), "%s", s);
    cr_expect(!strstr(s, "OWNER") && !strstr(s, "COMMAND"), "%s", s);
    free(s);
    table_free(t);
    t = fmt_jobs_table(jobs, 1, false, true, 1700000064200);
    s = render(t, false);
    cr_expect(strstr(s, "OWNER") && strstr(s, "alice"), "%s", s);
    free(s);
    table_free(t);
    t = fmt_jobs_table(jobs, 1, true, false, 1700000064200);
    s = render(t, false);
    cr_expect(strstr(s, "COMMAND") && strstr(s, "/bin/sh -c") && strstr(s, "mem=1.0GiB"), "%s", s);
    cr_expect(!strstr(s, "\n\t"), "a tab inside a cell breaks the layout");
    free(s);
    table_free(t);
    char w[128];
    jobs[0]->state = RUNJOB__V1__JOB_STATE__JOB_STATE_KILLED;
    jobs[0]->signal = 9;
    cr_expect_str_eq(fmt_status_word(w, sizeof(w), jobs[0]), "killed by SIGKILL");
    cr_expect_eq(fmt_job_exit_code(jobs[0]), 137);
    jobs[0]->state = RUNJOB__V1__JOB_STATE__JOB_STATE_EXITED;
    cr_expect_eq(fmt_job_exit_code(jobs[0]), 3);
}

/* sh's 127 for a command that is not there, 126 for one that cannot be executed, from the
 * server's words (core/shimproto.c) behind "the job could not start: ". */
Test(client, start_error_exit_codes)
{
    cr_expect_eq(fmt_start_error_exit_code("the job could not start: '/bin/nope': no such file or "
                                           "directory"),
                 127);
    cr_expect_eq(fmt_start_error_exit_code("'/etc/x/y': a path component is not a directory"), 127);
    cr_expect_eq(fmt_start_error_exit_code("'/l': Too many levels of symbolic links"), 127);
    cr_expect_eq(fmt_start_error_exit_code("'/aaa': File name too long"), 127);
    cr_expect_eq(fmt_start_error_exit_code("'/etc/passwd': not executable"), 126);
    cr_expect_eq(fmt_start_error_exit_code("'/tmp': is a directory"), 126);
    cr_expect_eq(fmt_start_error_exit_code("'/x': permission denied"), 126);
    cr_expect_eq(fmt_start_error_exit_code("'/x': not an executable format"), 126);
    cr_expect_eq(fmt_start_error_exit_code(NULL), 126);

    Runjob__V1__JobStatus st = RUNJOB__V1__JOB_STATUS__INIT;
    st.state = RUNJOB__V1__JOB_STATE__JOB_STATE_FAILED_TO_START;
    st.error = "'/bin/nope': no such file or directory";
    cr_expect_eq(fmt_job_exit_code(&st), 127);
    st.error = "'/etc/passwd': not executable";
    cr_expect_eq(fmt_job_exit_code(&st), 126);
}

/* ---- errors in plain words, from the strings gRPC 1.51 really gives --------------------- */

static const char *describe_facts(int code, const char *details, const struct rpc_call_facts *f)
{
    static struct rpc_error err;
    struct rpc_peer peer = {.where = "127.0.0.1:8080",
                            .host = "127.0.0.1",
                            .ca_path = "certs/root-ca-cert.pem",
                            .cert_path = "certs/alice-cert.pem"};
    memset(&err, 0, sizeof(err));
    rpc_client_describe(&peer, code, details, NULL, f, &err);
    cr_expect_eq(err.code, code);
    return err.message;
}

static const char *describe(int code, const char *details, int64_t deadline_ms)
{
    struct rpc_call_facts f = {.deadline_ms = deadline_ms};
    return describe_facts(code, details, &f);
}

/* The same words early and late: a handshake nobody answers (a stopped server: the kernel
 * accepts, nothing reads) fails after gRPC's 20 s connect timeout with the words a closed
 * handshake has; a connection that breaks under a stream that had data is no certificate
 * problem. */
Test(client, errors_silence_and_breaks_are_not_certificates)
{
    const char *hs = "failed to connect to all addresses; last error: UNKNOWN: "
                     "ipv4:127.0.0.1:47697: Handshake read failed";
    struct rpc_call_facts silent = {.deadline_ms = 30000, .elapsed_ms = 20015};
    cr_expect_str_eq(describe_facts(RPC_UNAVAILABLE, hs, &silent),
                     "127.0.0.1:8080 did not answer within 20 s (is the server running and "
                     "responsive?)");
    struct rpc_call_facts quick = {.deadline_ms = 30000, .elapsed_ms = 40};
    cr_expect_str_eq(describe_facts(RPC_UNAVAILABLE, hs, &quick),
                     "TLS handshake with 127.0.0.1:8080 failed (wrong certificates?)");

    struct rpc_call_facts broke = {.elapsed_ms = 1000, .answered = true};
    cr_expect_str_eq(describe_facts(RPC_UNAVAILABLE, "Socket closed", &broke),
                     "127.0.0.1:8080 closed the connection in the middle of the call (did the "
                     "server stop or restart?): Socket closed");
    struct rpc_call_facts refused = {.elapsed_ms = 1000};
    cr_expect(strstr(describe_facts(RPC_UNAVAILABLE, "Socket closed", &refused),
                     "did it reject our certificate"));
    struct rpc_call_facts cut = {.deadline_ms = 30000, .elapsed_ms = 5100};
    cr_expect_str_eq(describe_facts(RPC_UNAVAILABLE, "Socket closed", &cut),
                     "127.0.0.1:8080 closed the connection after 5 s without finishing the TLS "
                     "handshake (a server gives a handshake 5 s: is it overloaded?)");
}

Test(client, errors_in_plain_words)
{
    cr_expect_str_eq(describe(RPC_UNAVAILABLE,
                              "failed to connect to all addresses; last error: "
                              "UNKNOWN: ipv4:127.0.0.1:1: Failed to connect to "
                              "remote host: Connection refused",
                              0),
                     "cannot connect to 127.0.0.1:8080: connection refused — is `runjob serve` "
                     "running?");
    cr_expect_str_eq(describe(RPC_UNAVAILABLE,
                              "failed to connect to all addresses; last error: "
                              "UNKNOWN: ipv4:127.0.0.1:18443: Ssl handshake "
                              "failed: SSL_ERROR_SSL: error:0A000086:SSL "
                              "routines::certificate verify failed",
                              0),
                     "rejected the server's certificate: it is not signed by the CA in "
                     "'certs/root-ca-cert.pem'");
    cr_expect(strstr(describe(RPC_UNAVAILABLE,
                              "failed to connect to all addresses; last error: "
                              "UNKNOWN: ipv4:127.0.0.1:58071: Peer name vm is "
                              "not in peer certificate",
                              0),
                     "server name mismatch"));
    cr_expect(strstr(describe(RPC_UNAVAILABLE,
                              "failed to connect to all addresses; last error: "
                              "UNAVAILABLE: ipv4:127.0.0.1:1: Socket closed",
                              0),
                     "closed the connection (did it reject our certificate "
                     "'certs/alice-cert.pem'?)"));
    cr_expect(
        strstr(describe(RPC_UNAVAILABLE, "ssl3_read_bytes: tlsv13 alert certificate required", 0),
               "the server rejected our client certificate 'certs/alice-cert.pem'"));
    cr_expect(strstr(describe(RPC_UNAVAILABLE,
                              "connection attempt timed out before receiving "
                              "SETTINGS frame",
                              0),
                     "does not answer as a runjob server"));
    cr_expect(strstr(describe(RPC_UNAVAILABLE, "DNS resolution failed for nosuch.invalid:8080", 0),
                     "cannot resolve the server host '127.0.0.1'"));
    cr_expect_str_eq(describe(RPC_DEADLINE_EXCEEDED, "Deadline Exceeded", 30000),
                     "no answer from 127.0.0.1:8080 within 30000 ms (deadline exceeded)");
    /* the message size limit: the server's (our request is too big) or our own */
    cr_expect_str_eq(describe(RPC_RESOURCE_EXHAUSTED,
                              "Received message larger than max (1228805 vs. 1048576)", 0),
                     "the request is 1228805 bytes, more than the server accepts (1048576): too "
                     "many or too long arguments");
    cr_expect_str_eq(describe(RPC_RESOURCE_EXHAUSTED,
                              "Received message larger than max (16777300 vs. 16777216)", 0),
                     "the server sent a message larger than 16777216 bytes");
    /* the server's own words pass through */
    cr_expect_str_eq(describe(RPC_NOT_FOUND, "no job 'x'", 0), "no job 'x'");
    cr_expect_str_eq(describe(RPC_PERMISSION_DENIED, "", 0), "PERMISSION_DENIED");
    cr_expect_str_eq(describe(RPC_CANCELLED, NULL, 0), "cancelled");
}

/* Stop answers after the grace period: the deadline covers it, and without a grace whatever
 * default the server may have (`serve --stop-grace 1h`), not the usual 10 s. */
Test(client, stop_deadline_covers_the_grace)
{
    cr_expect_eq(rpc_client_stop_deadline_ms(30000, 5000), 35000);
    cr_expect_eq(rpc_client_stop_deadline_ms(30000, RPC_MAX_GRACE_MS),
                 30000 + (int64_t)RPC_MAX_GRACE_MS);
    cr_expect_eq(rpc_client_stop_deadline_ms(30000, -1), 30000, "kill at once: no grace");
    cr_expect_geq(rpc_client_stop_deadline_ms(30000, 0), 30000 + (int64_t)RPC_MAX_GRACE_MS,
                  "the server's default grace may be as long as RPC_MAX_GRACE_MS");
}

/* ---- stream --tail: where the last lines begin ------------------------------------------- */

Test(client, tail_lines_begin_where_asked)
{
    const uint8_t *b = (const uint8_t *)"one\ntwo\nthree\n";
    size_t at;

    cr_expect_eq(client_tail_lines(b, 14, 1, &at), 1);
    cr_expect_eq(at, 8, "three\\n starts at 8");
    cr_expect_eq(client_tail_lines(b, 14, 2, &at), 1);
    cr_expect_eq(at, 4);
    cr_expect_eq(client_tail_lines(b, 14, 3, &at), 0, "the first line has no newline before it");
    cr_expect_eq(at, 0);
    cr_expect_eq(client_tail_lines(b, 14, 0, &at), 1);
    cr_expect_eq(at, 14, "0 lines: the end");
    /* a last line without its newline is a line */
    cr_expect_eq(client_tail_lines((const uint8_t *)"a\nb", 3, 1, &at), 1);
    cr_expect_eq(at, 2);
    cr_expect_eq(client_tail_lines((const uint8_t *)"", 0, 5, &at), 0);
    cr_expect_eq(at, 0);
    cr_expect_eq(client_tail_lines((const uint8_t *)"\n\n\n", 3, 2, &at), 1);
    cr_expect_eq(at, 1, "empty lines count");
}

/* ---- the client certificate's dates ------------------------------------------------------ */

Test(client, cert_dates_checked_before_dialing)
{
    char msg[512];
    const int64_t nb = 1790000000; /* 2026-09-21 */
    const int64_t na = 1793577600; /* 2026-11-02 00:00:00 UTC */

    cr_expect_eq(client_cert_time_check("/c/a.pem", nb, na, nb, msg, sizeof(msg)), 0);
    cr_expect_eq(client_cert_time_check("/c/a.pem", nb, na, na, msg, sizeof(msg)), 0);
    cr_expect_eq(client_cert_time_check("/c/a.pem", nb, na, na + 1, msg, sizeof(msg)),
                 -EKEYEXPIRED);
    cr_expect_str_eq(msg, "client certificate /c/a.pem expired on 2026-11-02; make a new one "
                          "with `runjob certs --clients-only`");
    cr_expect_eq(client_cert_time_check("/c/a.pem", nb, na, nb - 86400, msg, sizeof(msg)),
                 -EKEYREJECTED);
    cr_expect(strstr(msg, "client certificate /c/a.pem is not valid until 2026-09-21"), "%s", msg);
}
