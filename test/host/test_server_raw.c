/* A raw gRPC client against a real `runjob serve` (RUNJOB_BIN, default bin/runjob): hand-built
 * malformed protobuf to every method -> INVALID_ARGUMENT (and the server keeps serving); an
 * unknown method -> UNIMPLEMENTED. Test code may include grpc. Needs root (the server does). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

static char dir[64];
static pid_t server_pid = -1;
static int port;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf;
    long n;
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = calloc(1, (size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return buf;
}

static const char *runjob(void)
{
    const char *b = getenv("RUNJOB_BIN");
    return b ? b : "bin/runjob";
}

static void start_server(void)
{
    char cmd[1024], log[128];

    if (geteuid() != 0)
        cr_skip_test("needs root (runjob serve)");
    snprintf(dir, sizeof(dir), "/tmp/test_server_raw.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), "%s certs -q --out %s/certs --user alice >/dev/null", runjob(), dir);
    cr_assert_eq(system(cmd), 0, "runjob certs failed");
    snprintf(log, sizeof(log), "%s/server.log", dir);
    server_pid = fork();
    if (server_pid == 0) {
        char ca[128], cert[128], key[128], state[128];
        snprintf(ca, sizeof(ca), "%s/certs/ca-clients-bundle.pem", dir);
        snprintf(cert, sizeof(cert), "%s/certs/server-cert.pem", dir);
        snprintf(key, sizeof(key), "%s/certs/server-key.pem", dir);
        snprintf(state, sizeof(state), "%s/state", dir);
        (void)!freopen(log, "w", stderr);
        execl(runjob(), "runjob", "serve", "-H", "127.0.0.1", "-P", "0", "--state-dir", state,
              "--client-pem-path", ca, "--server-cert-path", cert, "--server-key-path", key,
              (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100 && !port; i++) {
        char *text;
        usleep(100 * 1000);
        text = slurp(log);
        char *p = strstr(text, "listening on 127.0.0.1:");
        if (p)
            port = atoi(p + strlen("listening on 127.0.0.1:"));
        free(text);
    }
    cr_assert_gt(port, 0, "server did not come up");
}

static void stop_server(void)
{
    char cmd[128];
    int st;
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, &st, 0);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    (void)!system(cmd);
}

/* One unary call with raw request bytes; returns the status code. */
static grpc_status_code call_raw(grpc_channel *ch, const char *method, const void *req, size_t len)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec dl =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(10, GPR_TIMESPAN));
    grpc_call *call =
        grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                 grpc_slice_from_static_string(method), NULL, dl, NULL);
    grpc_slice s = grpc_slice_from_copied_buffer(req, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_byte_buffer *resp = NULL;
    grpc_metadata_array md, trail;
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details;
    grpc_op ops[6];
    grpc_event ev;

    grpc_slice_unref(s);
    grpc_metadata_array_init(&md);
    grpc_metadata_array_init(&trail);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &resp;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trail;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    cr_assert_eq(grpc_call_start_batch(call, ops, 6, (void *)1, NULL), GRPC_CALL_OK);
    ev = grpc_completion_queue_pluck(cq, (void *)1, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    cr_assert_eq(ev.type, GRPC_OP_COMPLETE);
    grpc_byte_buffer_destroy(bb);
    if (resp)
        grpc_byte_buffer_destroy(resp);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&md);
    grpc_metadata_array_destroy(&trail);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    return status;
}

static grpc_channel *dial(void)
{
    char p[128], target[64];
    char *ca, *cert, *key;
    grpc_ssl_pem_key_cert_pair kp;
    grpc_channel_credentials *creds;
    grpc_channel *ch;

    snprintf(p, sizeof(p), "%s/certs/root-ca-cert.pem", dir);
    ca = slurp(p);
    snprintf(p, sizeof(p), "%s/certs/alice-cert.pem", dir);
    cert = slurp(p);
    snprintf(p, sizeof(p), "%s/certs/alice-key.pem", dir);
    key = slurp(p);
    kp.private_key = key;
    kp.cert_chain = cert;
    creds = grpc_ssl_credentials_create_ex(ca, &kp, NULL, NULL);
    snprintf(target, sizeof(target), "localhost:%d", port);
    ch = grpc_channel_create(target, creds, NULL);
    grpc_channel_credentials_release(creds);
    free(ca);
    free(cert);
    free(key);
    return ch;
}

TestSuite(server_raw, .init = start_server, .fini = stop_server, .timeout = 120);

Test(server_raw, malformed_protobuf_is_invalid_argument)
{
    static const char *methods[] = {
        "/runjob.v1.JobManager/Start",  "/runjob.v1.JobManager/Stop",
        "/runjob.v1.JobManager/Status", "/runjob.v1.JobManager/List",
        "/runjob.v1.JobManager/Stream", "/runjob.v1.JobManager/Ping",
    };
    static const struct {
        const char *bytes;
        size_t len;
    } junk[] = {
        {"\x0a\x05"
         "a",
         3},                                     /* length past the end */
        {"\x08\xff\xff\xff\xff\xff\xff\xff", 8}, /* unterminated varint */
        {"\x0f", 1},                             /* wire type 7 */
        {"\x00\x01", 2},                         /* field 0 */
        {"\x0b", 1},                             /* start group */
    };
    grpc_channel *ch;

    grpc_init();
    ch = dial();
    for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++)
        for (size_t j = 0; j < sizeof(junk) / sizeof(junk[0]); j++) {
            grpc_status_code st = call_raw(ch, methods[m], junk[j].bytes, junk[j].len);
            cr_expect_eq(st, GRPC_STATUS_INVALID_ARGUMENT, "%s junk %zu -> %d", methods[m], j,
                         (int)st);
        }
    /* Still serving: an empty Ping is valid. */
    cr_expect_eq(call_raw(ch, "/runjob.v1.JobManager/Ping", "", 0), GRPC_STATUS_OK);
    /* A valid-looking but semantically bad Status (id field = "x") -> INVALID_ARGUMENT. */
    cr_expect_eq(call_raw(ch, "/runjob.v1.JobManager/Status", "\x0a\x01x", 3),
                 GRPC_STATUS_INVALID_ARGUMENT);
    cr_expect_eq(call_raw(ch, "/runjob.v1.JobManager/Nope", "", 0), GRPC_STATUS_UNIMPLEMENTED);
    cr_expect_eq(call_raw(ch, "/other.Service/Ping", "", 0), GRPC_STATUS_UNIMPLEMENTED);
    grpc_channel_destroy(ch);
    grpc_shutdown();
}
