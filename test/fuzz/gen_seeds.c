/* Writes the seed corpora of the fuzz targets that take structured input: valid (and a few
 * deliberately invalid) requests packed by protobuf-c, stream chunks framed by the server's own
 * rpc_chunk_header_encode, job records written by jobtab_record_format, output logs written by
 * outlog, flag values and command lines. The seeds are committed under test/fuzz/corpus/; this
 * program is how they were made: `make fuzz-seeds` (re)writes them. The /proc and cgroupfs
 * samples in test/fuzz/corpus/proc/ are copies of real files (test/fuzz/README.md).
 *
 * Usage: gen_seeds <corpus-dir> */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/jobtable.h"
#include "core/outlog.h"
#include "core/rpc.h"

static const char *root;

static void put(const char *target, const char *name, const void *buf, size_t len)
{
    char path[4096];
    FILE *f;

    (void)snprintf(path, sizeof(path), "%s/%s", root, target);
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    (void)snprintf(path, sizeof(path), "%s/%s/%s", root, target, name);
    f = fopen(path, "we");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void put_msg(const char *target, const char *name, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);

    if (!buf)
        exit(1);
    (void)protobuf_c_message_pack(m, buf);
    put(target, name, buf, n);
    free(buf);
}

/* A selector byte, then the NUL-separated strings (the flags and client_args targets). */
static void put_sel(const char *target, const char *name, unsigned char sel, const char *s,
                    size_t len)
{
    char buf[1024];

    buf[0] = (char)sel;
    memcpy(buf + 1, s, len);
    put(target, name, buf, len + 1);
}
#define PUT_SEL(t, n, sel, lit) put_sel(t, n, sel, lit, sizeof(lit) - 1)

static void requests(void)
{
    static const char *const id = "3f2b6c1e-8a4d-4c2e-9b1f-0a1b2c3d4e5f";
    Runjob__V1__StartRequest start = RUNJOB__V1__START_REQUEST__INIT;
    Runjob__V1__Limits lim = RUNJOB__V1__LIMITS__INIT;
    Runjob__V1__StopRequest stop = RUNJOB__V1__STOP_REQUEST__INIT;
    Runjob__V1__StatusRequest status = RUNJOB__V1__STATUS_REQUEST__INIT;
    Runjob__V1__ListRequest list = RUNJOB__V1__LIST_REQUEST__INIT;
    Runjob__V1__StreamRequest stream = RUNJOB__V1__STREAM_REQUEST__INIT;
    Runjob__V1__PingRequest ping = RUNJOB__V1__PING_REQUEST__INIT;
    Runjob__V1__RemoveRequest remove = RUNJOB__V1__REMOVE_REQUEST__INIT;
    Runjob__V1__InputRequest input = RUNJOB__V1__INPUT_REQUEST__INIT;
    Runjob__V1__TerminalSize size = RUNJOB__V1__TERMINAL_SIZE__INIT;
    char *args[] = {"-c", "for i in 1 2 3; do echo $i; sleep 1; done", "", "héllo", "--x=%41"};
    char *many[40];

    start.command = "/bin/true";
    put_msg("rpc_start", "minimal", &start.base);
    start.command = "/bin/sh";
    start.name = "nightly-build";
    start.args = args;
    start.n_args = 5;
    lim.cpu_millis = 500;
    lim.memory_bytes = 256 << 20;
    lim.io_riops = 100;
    lim.io_wiops = 200;
    lim.io_rbps = 10 << 20;
    lim.io_wbps = 20 << 20;
    lim.pids = 64;
    start.limits = &lim;
    put_msg("rpc_start", "full", &start.base);
    start.network = RUNJOB__V1__NETWORK_MODE__NETWORK_MODE_HOST;
    put_msg("rpc_start", "host-network", &start.base);
    start.network = RUNJOB__V1__NETWORK_MODE__NETWORK_MODE_NONE;
    start.name = "wörk – 日本語";
    put_msg("rpc_start", "utf8-name", &start.base);
    start.name = "bad\x01name";
    put_msg("rpc_start", "control-in-name", &start.base);
    start.name = NULL;
    lim.memory_bytes = 1ull << 40;
    put_msg("rpc_start", "limit-above-max", &start.base);
    lim.memory_bytes = 0;
    start.command = "bin/ls";
    put_msg("rpc_start", "relative-command", &start.base);
    start.command = "/usr/bin/env";
    for (size_t i = 0; i < sizeof(many) / sizeof(many[0]); i++)
        many[i] = "argument";
    start.args = many;
    start.n_args = sizeof(many) / sizeof(many[0]);
    put_msg("rpc_start", "many-args", &start.base);

    stop.id = (char *)id;
    put_msg("rpc_stop", "default", &stop.base);
    stop.signal = 9;
    stop.grace_millis = 30000;
    put_msg("rpc_stop", "kill-grace", &stop.base);
    stop.signal = 2;
    stop.grace_millis = -1;
    put_msg("rpc_stop", "int-at-once", &stop.base);
    stop.signal = 200;
    put_msg("rpc_stop", "bad-signal", &stop.base);
    stop.signal = 0;
    stop.id = "3F2B6C1E-8A4D-4C2E-9B1F-0A1B2C3D4E5F";
    put_msg("rpc_stop", "upper-case-id", &stop.base);

    status.id = (char *)id;
    put_msg("rpc_status", "valid", &status.base);
    status.id = "3f2b6c1e8a4d4c2e9b1f0a1b2c3d4e5f";
    put_msg("rpc_status", "no-dashes", &status.base);

    remove.id = (char *)id;
    put_msg("rpc_remove", "valid", &remove.base);
    remove.id = "3f2b6c1e-8a4d-4c2e-9b1f-0a1b2c3d4e5f/../x";
    put_msg("rpc_remove", "path", &remove.base);
    input.id = (char *)id;
    input.data.data = (uint8_t *)"echo hi\n";
    input.data.len = 8;
    put_msg("rpc_input", "data", &input.base);
    size.rows = 40;
    size.cols = 120;
    input.terminal_size = &size;
    put_msg("rpc_input", "data-and-size", &input.base);
    size.rows = 0;
    put_msg("rpc_input", "bad-size", &input.base);

    put_msg("rpc_list", "empty", &list.base);
    put("rpc_list", "unknown-field",
        "\x0a\x03"
        "abc\x10\x07",
        7);

    stream.id = (char *)id;
    put_msg("rpc_stream", "all", &stream.base);
    stream.select = RUNJOB__V1__OUTPUT_SELECT__OUTPUT_SELECT_STDERR;
    stream.offset = 4096;
    stream.no_follow = 1;
    put_msg("rpc_stream", "stderr-offset-no-follow", &stream.base);
    stream.select = (Runjob__V1__OutputSelect)7;
    put_msg("rpc_stream", "bad-select", &stream.base);

    put_msg("rpc_ping", "empty", &ping.base);
    put("rpc_ping", "unknown-fields", "\x08\x01\x12\x02hi\x1d\x01\x02\x03\x04", 10);
}

static void chunk(const char *name, int stream, uint64_t offset, int64_t time_ms, const char *data,
                  const Runjob__V1__JobStatus *final)
{
    uint8_t buf[4096];
    size_t n = rpc_chunk_header_encode(buf, stream, offset, time_ms, strlen(data));

    memcpy(buf + n, data, strlen(data));
    n += strlen(data);
    if (final) {
        size_t fl = protobuf_c_message_get_packed_size(&final->base);
        buf[n++] = 5 << 3 | 2;
        buf[n++] = (uint8_t)fl; /* < 128 for the seed below */
        n += protobuf_c_message_pack(&final->base, buf + n);
    }
    put("rpc_chunk", name, buf, n);
}

static void chunks(void)
{
    Runjob__V1__JobStatus st = RUNJOB__V1__JOB_STATUS__INIT;
    Runjob__V1__Usage usage = RUNJOB__V1__USAGE__INIT;

    chunk("stdout", 1, 0, 1714000000123, "hello\n", NULL);
    chunk("stderr-offset", 2, 123456, 1714000000999, "warning: disk almost full\n", NULL);
    chunk("empty", 1, 0, 0, "", NULL);
    st.id = "3f2b6c1e-8a4d-4c2e-9b1f-0a1b2c3d4e5f";
    st.state = RUNJOB__V1__JOB_STATE__JOB_STATE_EXITED;
    st.exit_code = 3;
    usage.cpu_usec = 12345;
    usage.output_bytes = 42;
    st.usage = &usage;
    chunk("final-status", 1, 42, 1714000001000, "", &st);
}

static void record(const char *name, const char *const *args, size_t n_args, enum job_state state,
                   const char *error)
{
    struct jobtab_spec spec = {
        .id = "3f2b6c1e-8a4d-4c2e-9b1f-0a1b2c3d4e5f",
        .owner = "alice",
        .name = "nightly-build",
        .command = "/bin/sh",
        .args = (char **)args,
        .n_args = n_args,
        .limits = {.cpu_millis = 1000,
                   .memory_bytes = 512000000,
                   .io_riops = 400000,
                   .io_wiops = 400000,
                   .pids = 1024},
    };
    struct jobtab_status st = {.job = {.state = state, .start_ms = 1714000000000}};
    char *text;

    if (state > JOB_RUNNING) {
        st.job.end_ms = 1714000004321;
        st.job.cpu_usec = 98765;
        st.job.memory_peak_bytes = 1 << 20;
        st.output_bytes = 4096;
    }
    if (state == JOB_KILLED) {
        st.job.signal = 9;
        st.job.oom_killed = true;
        st.output_truncated = true;
    }
    (void)snprintf(st.job.error, sizeof(st.job.error), "%s", error);
    if (jobtab_record_format(&spec, &st, &text) < 0)
        exit(1);
    put("jobtab_record", name, text, strlen(text));
    free(text);
}

static void records(void)
{
    static const char *const args[] = {"-c", "echo 100% done\n\tnext line", "", "日本語"};

    record("running", args, 4, JOB_RUNNING, "");
    record("exited", args, 1, JOB_EXITED, "");
    record("killed-oom", NULL, 0, JOB_KILLED, "");
    record("failed-to-start", args, 2, JOB_FAILED_TO_START, "exec '/bin/sh': No such file");
    record("lost", NULL, 0, JOB_LOST, "server restarted while the job was running");
}

static void outlogs(void)
{
    char dir[] = "/tmp/gen-seeds.XXXXXX";
    char path[64];
    struct outlog *l;
    char *buf;
    FILE *f;
    long n;

    if (!mkdtemp(dir))
        exit(1);
    (void)snprintf(path, sizeof(path), "%s/output", dir);
    /* Real logs: a mixed one, and one cut at its cap (truncated flag and marker). */
    for (int cut = 0; cut < 2; cut++) {
        if (outlog_create(path, cut ? 64 : 0, &l) < 0)
            exit(1);
        (void)outlog_append(l, OUTLOG_STDOUT, "hello\n", 6);
        (void)outlog_append(l, OUTLOG_STDERR, "oops: something failed\n", 23);
        for (int i = 0; i < 8; i++)
            (void)outlog_append(l, OUTLOG_STDOUT, "line of output\n", 15);
        outlog_close(l);
        outlog_free(l);
        f = fopen(path, "re");
        if (!f || fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0)
            exit(1);
        buf = malloc((size_t)n + 1);
        if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
            exit(1);
        (void)fclose(f);
        put("outlog", cut ? "capped" : "mixed", buf, (size_t)n);
        free(buf);
        (void)unlink(path);
    }
    (void)rmdir(dir);
}

static void flags(void)
{
    PUT_SEL("flags", "uint", 0, "8080");
    PUT_SEL("flags", "size", 1, "512MiB");
    PUT_SEL("flags", "duration", 2, "1m30s");
    PUT_SEL("flags", "signal", 3, "SIGTERM");
    PUT_SEL("flags", "cpu", 4, "500m");
    PUT_SEL("flags", "state", 5, "failed_to_start");
    PUT_SEL("flags", "serve-size", 6, "4GiB");
    PUT_SEL("flags", "serve-duration", 7, "500ms");
    PUT_SEL("flags", "serve-ids", 8, "65534:65534");
    PUT_SEL("flags", "log-level", 9, "debug");
    PUT_SEL("flags", "log-format", 10, "json");
    PUT_SEL("flags", "json-string", 11, "h\xc3\xa9llo\x01\"\\\xff");
    PUT_SEL("flags", "audit-escape", 12, "CN=al\"ice\\\x80");
    PUT_SEL("flags", "formatters", 13, "\x40\x42\x0f\x00\x00\x00\x00\x00");
}

static void client_args(void)
{
    PUT_SEL("client_args", "start-full", 0,
            "--name\0build\0--memory\0"
            "512M\0--cpu\0"
            "500m\0--pids\0"
            "100\0/bin/sh\0--\0-c\0echo hi");
    PUT_SEL("client_args", "run-command-flag", 1,
            "-A\0x\0-c\0/bin/ls\0-o\0json\0--network\0host\0-f");
    PUT_SEL("client_args", "connection", 0,
            "-H\0::1\0-P\0"
            "8443\0--riops\0"
            "100\0--wbps\0"
            "10M\0--ca-cert-path\0/tmp/ca.pem\0"
            "--user\0alice\0/usr/bin/env");
    PUT_SEL("client_args", "help", 0, "-h");
    PUT_SEL("client_args", "bad-value", 0, "--memory\0lots\0/bin/true");
    /* The words after the command: runjob's, then `--` and the command's. */
    PUT_SEL("client_args", "flags-after-command", 0,
            "/usr/bin/echo\0-A\0hello world\0--server-host=localhost\0-P\0"
            "8443\0--ca-cert-path=/tmp/ca.pem\0-j4\0--\0-n\0hi");
    PUT_SEL("client_args", "refused-after-command", 1, "/bin/ls\0-A\0/tmp\0-fu\0x\0--net");
}

/* The contexts file, as `runjob context` writes it and as hands may leave it. */
#define PUT_TEXT(t, n, lit) put(t, n, lit, sizeof(lit) - 1)
static void contexts(void)
{
    PUT_TEXT("context_store", "written",
             "# runjob contexts: `runjob context --help` describes this file\n"
             "current = prod\n"
             "\n"
             "[prod]\n"
             "server-host = build.example.com\n"
             "server-port = 8443\n"
             "ca-cert-path = /home/alice/certs/root-ca-cert.pem\n"
             "client-cert-path = /home/alice/certs/alice-cert.pem\n"
             "client-key-path = /home/alice/certs/alice-key.pem\n"
             "certs-dir = /home/alice/certs\n"
             "\n"
             "[lab]\n"
             "server-host = ::1\n");
    PUT_TEXT("context_store", "hand-edited",
             "  # indented comment\r\n"
             "current=lab\r\n"
             "[ lab ]\n"
             "server-port=80\n"
             "ca-cert-path =  /a b/ca.pem  \n");
    PUT_TEXT("context_store", "bad-key", "[a]\nserver-hots = x\n");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
        return 2;
    }
    root = argv[1];
    requests();
    chunks();
    records();
    outlogs();
    flags();
    client_args();
    contexts();
    return 0;
}
