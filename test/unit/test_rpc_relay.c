/* The relay protocol (core/rpc-relay.c) and a client's calls through an agent (core/rpc-client.c),
 * against a scripted agent on a thread: frames, the HELLO's answer, replies, statuses, a vanished
 * agent, a cancelled stream, an Input call's ready key and its end; the calls an agent turns away
 * before its YES going directly, and those it took never again. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/rpc-internal.h"
#include "core/rpc-relay-internal.h"
#include "core/rpc.h"

static void pair(int sv[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

Test(rpc_relay, frames_round_trip)
{
    struct relay_frame f = {0};
    struct iovec v[3] = {{(void *)"ab", 2}, {(void *)"", 0}, {(void *)"cde", 3}};
    int sv[2];

    pair(sv);
    cr_assert_eq(relay_send(sv[0], RELAY_MSG, v, 3), 0);
    cr_assert_eq(relay_send_bytes(sv[0], RELAY_END, NULL, 0), 0);
    cr_assert_eq(relay_recv(sv[1], &f), 1);
    cr_assert_eq(f.type, RELAY_MSG);
    cr_assert_eq(f.len, 5);
    cr_assert_str_eq((char *)f.data, "abcde");
    cr_assert_eq(relay_recv(sv[1], &f), 1);
    cr_assert_eq(f.type, RELAY_END);
    cr_assert_eq(f.len, 0);
    close(sv[0]);
    cr_assert_eq(relay_recv(sv[1], &f), 0, "the end between frames is 0");
    relay_frame_free(&f);
    close(sv[1]);
}

static void *send_big(void *arg)
{
    int fd = *(int *)arg;
    size_t n = 3 << 20;
    char *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(i * 7);
    (void)relay_send_bytes(fd, RELAY_MSG, p, n);
    free(p);
    return NULL;
}

Test(rpc_relay, big_frame_across_many_reads)
{
    struct relay_frame f = {0};
    pthread_t t;
    int sv[2];

    pair(sv);
    cr_assert_eq(pthread_create(&t, NULL, send_big, &sv[0]), 0);
    cr_assert_eq(relay_recv(sv[1], &f), 1);
    pthread_join(t, NULL);
    cr_assert_eq(f.len, (size_t)3 << 20);
    for (size_t i = 0; i < f.len; i += 4099)
        cr_assert_eq(f.data[i], (uint8_t)(i * 7));
    relay_frame_free(&f);
    close(sv[0]);
    close(sv[1]);
}

Test(rpc_relay, malformed_frames)
{
    struct relay_frame f = {0};
    int sv[2];
    /* a header alone, then a cut payload, then a length over the maximum */
    const uint8_t cut[] = {10, 0, 0, 0, 'M', 'x', 'y'};
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0x7f, 'M'};
    const uint8_t half[] = {1, 0};

    pair(sv);
    cr_assert_eq(write(sv[0], cut, sizeof(cut)), (ssize_t)sizeof(cut));
    close(sv[0]);
    cr_assert_eq(relay_recv(sv[1], &f), -EBADMSG);
    close(sv[1]);

    pair(sv);
    cr_assert_eq(write(sv[0], huge, sizeof(huge)), (ssize_t)sizeof(huge));
    cr_assert_eq(relay_recv(sv[1], &f), -EBADMSG);
    close(sv[0]);
    close(sv[1]);

    pair(sv);
    cr_assert_eq(write(sv[0], half, sizeof(half)), (ssize_t)sizeof(half));
    close(sv[0]);
    cr_assert_eq(relay_recv(sv[1], &f), -EBADMSG, "a cut header");
    close(sv[1]);
    relay_frame_free(&f);
}

Test(rpc_relay, a_vanished_peer_is_epipe_not_sigpipe)
{
    int sv[2];

    pair(sv);
    close(sv[1]);
    cr_assert_eq(relay_send_bytes(sv[0], RELAY_END, NULL, 0), -EPIPE);
    close(sv[0]);
}

Test(rpc_relay, payload_codecs)
{
    struct relay_frame f = {.type = RELAY_CALL};
    uint8_t call[RELAY_CALL_BYTES];
    char buf[RELAY_SETTINGS_MAX], big[RELAY_SETTINGS_MAX + 10];
    const char *d, *e;
    int m, code;
    int64_t dl;

    relay_call_encode(call, RPC_M_LIST, 123456789012LL);
    f.data = call;
    f.len = sizeof(call);
    cr_assert_eq(relay_call_decode(&f, &m, &dl), 0);
    cr_assert_eq(m, RPC_M_LIST);
    cr_assert_eq(dl, 123456789012LL);
    f.len--;
    cr_assert_eq(relay_call_decode(&f, &m, &dl), -EBADMSG);

    uint8_t st[] = {5, 0, 0, 0, 'n', 'o', 0, 'x', 0};
    f = (struct relay_frame){.type = RELAY_STATUS, .data = st, .len = sizeof(st)};
    cr_assert_eq(relay_status_decode(&f, &code, &d, &e), 0);
    cr_assert_eq(code, 5);
    cr_assert_str_eq(d, "no");
    cr_assert_str_eq(e, "x");
    f.len = 7; /* the error string's NUL missing */
    cr_assert_eq(relay_status_decode(&f, &code, &d, &e), -EBADMSG);
    f.type = RELAY_MSG;
    f.len = sizeof(st);
    cr_assert_eq(relay_status_decode(&f, &code, &d, &e), -EBADMSG);

    cr_assert_gt(relay_settings("h:1", "/a", "/b", "/c", buf), 0);
    cr_assert(strstr(buf, "\n/a -\n"), "a file that is not there: '-' for its identity");
    char same[RELAY_SETTINGS_MAX];
    int n = relay_settings("h:1", "/proc/self/exe", "/b", "/c", buf);
    cr_assert_eq(relay_settings("h:1", "/proc/self/exe", "/b", "/c", same), n);
    cr_assert_eq(memcmp(buf, same, (size_t)n), 0, "the same files: the same settings");
    cr_assert_neq(relay_settings("h:1", "/dev/null", "/b", "/c", same), -1);
    cr_assert_neq(strcmp(buf, same), 0, "another file: other settings");
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(relay_settings("h:1", big, "/b", "/c", buf), -ENAMETOOLONG);
}

/* ---- a scripted agent ------------------------------------------------------------------- */

struct script {
    char path[108];
    int listen_fd;
    bool say_no;   /* answer the open's HELLO with NO */
    bool reply_no; /* answer the call's HELLO with NO (another agent since the open) */
    int mode;      /* what to do with the call */
    int calls;     /* TURN_AWAY: how many calls' connections to turn away */
    int method;    /* the call it got */
    char got[64];  /* its first message's bytes, as text when it is one */
    size_t got_len;
};

enum {
    ANSWER_PING,
    ANSWER_ERROR,
    VANISH,
    STREAM_THEN_WAIT,
    INPUT_READY,
    TURN_AWAY, /* the agent at its cap: a STATUS at once, and closed */
    HANG_UP,   /* the call's HELLO read, then closed without an answer */
    NO_CALL,   /* no call comes */
};

static void send_status(int fd, int code, const char *details)
{
    uint8_t c[4] = {(uint8_t)code, 0, 0, 0};
    struct iovec v[4] = {{c, 4}, {(void *)details, strlen(details) + 1}, {(void *)"", 1}};
    cr_assert_eq(relay_send(fd, RELAY_STATUS, v, 3), 0);
}

static void send_message(int fd, const ProtobufCMessage *m)
{
    uint8_t buf[4096];
    size_t n = protobuf_c_message_pack(m, buf);
    cr_assert_eq(relay_send_bytes(fd, RELAY_MSG, buf, n), 0);
}

static void *agent(void *arg)
{
    struct script *s = arg;
    struct relay_frame f = {0};
    int64_t dl;
    int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);

    /* The client's check at its open: a HELLO alone. */
    cr_assert_geq(fd, 0);
    cr_assert_eq(relay_recv(fd, &f), 1);
    cr_assert_eq(f.type, RELAY_HELLO);
    cr_assert(strstr((char *)f.data, "runjob-relay-2 " RUNJOB_VERSION "\nlocalhost:7\n"));
    cr_assert_eq(relay_send_bytes(fd, s->say_no ? RELAY_NO : RELAY_YES, NULL, 0), 0);
    cr_assert_eq(relay_recv(fd, &f), 0, "nothing after the open's HELLO");
    close(fd);
    if (s->say_no || s->mode == NO_CALL) {
        relay_frame_free(&f);
        return NULL;
    }
    if (s->mode == TURN_AWAY) {
        for (int i = 0; i < s->calls; i++) {
            fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            cr_assert_geq(fd, 0);
            rpc_relay_refuse(fd, "the runjob agent serves 512 connections at once already; this "
                                 "command can go without it");
            close(fd);
        }
        relay_frame_free(&f);
        return NULL;
    }
    /* The call: its HELLO again, then CALL, without waiting for the YES. */
    fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    cr_assert_geq(fd, 0);
    cr_assert_eq(relay_recv(fd, &f), 1);
    cr_assert_eq(f.type, RELAY_HELLO);
    if (s->mode == HANG_UP)
        goto out;
    cr_assert_eq(relay_recv(fd, &f), 1);
    cr_assert_eq(relay_call_decode(&f, &s->method, &dl), 0);
    cr_assert_eq(relay_send_bytes(fd, s->reply_no ? RELAY_NO : RELAY_YES, NULL, 0), 0);
    if (s->reply_no)
        goto out;
    if (relay_recv(fd, &f) == 1 && f.type == RELAY_MSG) {
        s->got_len = f.len < sizeof(s->got) ? f.len : sizeof(s->got);
        memcpy(s->got, f.data, s->got_len);
    }
    switch (s->mode) {
    case ANSWER_PING: {
        Runjob__V1__PingResponse r = RUNJOB__V1__PING_RESPONSE__INIT;
        r.version = (char *)"9.9";
        r.peer_cn = (char *)"alice";
        cr_assert_eq(relay_send_bytes(fd, RELAY_HEADERS, NULL, 0), 0);
        send_message(fd, &r.base);
        send_status(fd, RPC_OK, "");
        break;
    }
    case ANSWER_ERROR:
        send_status(fd, RPC_NOT_FOUND, "no job has the id 'x'");
        break;
    case VANISH:
    case TURN_AWAY:
    case HANG_UP:
    case NO_CALL:
        break;
    case STREAM_THEN_WAIT: {
        Runjob__V1__OutputChunk c = RUNJOB__V1__OUTPUT_CHUNK__INIT;
        c.data.data = (uint8_t *)"hello";
        c.data.len = 5;
        c.offset = 42;
        send_message(fd, &c.base);
        while (relay_recv(fd, &f) == 1) /* until the client cancels: it closes */
            ;
        break;
    }
    case INPUT_READY: {
        Runjob__V1__InputResponse r = RUNJOB__V1__INPUT_RESPONSE__INIT;
        r.bytes = 3;
        cr_assert_eq(
            relay_send_bytes(fd, RELAY_HEADERS, RPC_INPUT_READY_KEY, sizeof(RPC_INPUT_READY_KEY)),
            0);
        while (relay_recv(fd, &f) == 1 && f.type != RELAY_END)
            ;
        send_message(fd, &r.base);
        send_status(fd, RPC_OK, "");
        break;
    }
    }
out:
    relay_frame_free(&f);
    close(fd);
    return NULL;
}

static struct rpc_client *open_relayed(struct script *s, pthread_t *t)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct rpc_client_config cfg = {.host = "localhost",
                                    .port = 7,
                                    .ca_path = "/nonexistent/ca.pem",
                                    .cert_path = "/nonexistent/cert.pem",
                                    .key_path = "/nonexistent/key.pem"};
    struct rpc_client *c = NULL;

    (void)snprintf(s->path, sizeof(s->path), "/tmp/runjob-relay-test.%d", getpid());
    (void)unlink(s->path);
    memcpy(sa.sun_path, s->path, strlen(s->path) + 1);
    s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(s->listen_fd, 4), 0);
    cr_assert_eq(pthread_create(t, NULL, agent, s), 0);
    int r = rpc_client_open_relay(&cfg, s->path, &c);
    cr_assert_eq(r, s->say_no ? 0 : 1);
    cr_assert_eq(rpc_client_relayed(c), !s->say_no);
    return c;
}

static void close_agent(struct script *s, pthread_t t)
{
    pthread_join(t, NULL);
    close(s->listen_fd);
    (void)unlink(s->path);
}

/* A Ping through c fails as UNAVAILABLE, its message saying words. */
static void ping_fails(struct rpc_client *c, const char *words)
{
    Runjob__V1__PingRequest req = RUNJOB__V1__PING_REQUEST__INIT;
    Runjob__V1__PingResponse *pong = NULL;
    struct rpc_error err = {0};

    cr_assert_eq(rpc_client_ping(c, &req, &pong, &err), -1);
    cr_assert_eq(err.code, RPC_UNAVAILABLE);
    cr_assert(strstr(err.message, words), "%s", err.message);
}

Test(rpc_relay, nothing_listening_is_a_direct_dial)
{
    struct rpc_client_config cfg = {
        .host = "localhost", .port = 7, .ca_path = "a", .cert_path = "b", .key_path = "c"};
    struct rpc_client *c = NULL;

    cr_assert_eq(rpc_client_open_relay(&cfg, "/nonexistent/agent.sock", &c), 0);
    cr_assert_eq(rpc_client_open_relay(&cfg, "", &c), 0);
    cr_assert_null(c);
}

Test(rpc_relay, an_agent_for_other_settings_says_no)
{
    struct script s = {.say_no = true};
    pthread_t t;
    struct rpc_client *c = open_relayed(&s, &t);

    cr_assert_null(c);
    close_agent(&s, t);
}

Test(rpc_relay, unary_reply_and_error)
{
    struct script s = {.mode = ANSWER_PING};
    Runjob__V1__PingRequest req = RUNJOB__V1__PING_REQUEST__INIT;
    Runjob__V1__PingResponse *pong = NULL;
    Runjob__V1__StatusRequest sreq = RUNJOB__V1__STATUS_REQUEST__INIT;
    Runjob__V1__JobStatus *st = NULL;
    struct rpc_error err = {0};
    pthread_t t;
    struct rpc_client *c = open_relayed(&s, &t);

    cr_assert_eq(rpc_client_ping(c, &req, &pong, &err), 0, "%s", err.message);
    cr_assert_str_eq(pong->version, "9.9");
    cr_assert_str_eq(pong->peer_cn, "alice");
    protobuf_c_message_free_unpacked(&pong->base, NULL);
    close_agent(&s, t);
    cr_assert_eq(s.method, RPC_M_PING);
    rpc_client_free(c);

    s = (struct script){.mode = ANSWER_ERROR};
    c = open_relayed(&s, &t);
    sreq.id = (char *)"x";
    cr_assert_eq(rpc_client_status(c, &sreq, &st, &err), -1);
    cr_assert_eq(err.code, RPC_NOT_FOUND);
    cr_assert(strstr(err.message, "no job has the id 'x'"), "%s", err.message);
    close_agent(&s, t);
    cr_assert_eq(s.method, RPC_M_STATUS);
    cr_assert_eq(s.got_len, 3, "the request went through as its bytes");
    rpc_client_free(c);
}

/* A call that went directly, the agent having turned it away (why): the direct dial's own error
 * (the test's certificate files do not exist), saying why it did not go through the agent. */
static void went_directly(const struct rpc_error *err, const char *why)
{
    cr_assert_eq(err->code, RPC_FAILED_PRECONDITION, "%s", err->message);
    cr_assert(strstr(err->message, "cannot read CA certificate '/nonexistent/ca.pem'"), "%s",
              err->message);
    cr_assert(strstr(err->message, "(directly: the runjob agent at /tmp/runjob-relay-test."), "%s",
              err->message);
    cr_assert(strstr(err->message, why), "%s", err->message);
}

static void ping_goes_directly(struct rpc_client *c, const char *why)
{
    Runjob__V1__PingRequest req = RUNJOB__V1__PING_REQUEST__INIT;
    Runjob__V1__PingResponse *pong = NULL;
    struct rpc_error err = {0};

    cr_assert_eq(rpc_client_ping(c, &req, &pong, &err), -1);
    went_directly(&err, why);
}

/* Once the agent has said YES it may have passed the call on: a Start would run twice. */
Test(rpc_relay, a_call_the_agent_took_is_never_made_again)
{
    struct script s = {.mode = VANISH};
    pthread_t t;
    struct rpc_client *c = open_relayed(&s, &t);

    ping_fails(c, "lost the runjob agent");
    close_agent(&s, t);
    cr_assert(rpc_client_relayed(c), "the call did not go directly");
    rpc_client_free(c);
}

Test(rpc_relay, an_agent_gone_since_the_open_the_call_goes_directly)
{
    struct script s = {.mode = NO_CALL};
    pthread_t t;
    struct rpc_client *c = open_relayed(&s, &t);

    close_agent(&s, t); /* the socket removed */
    ping_goes_directly(c, "cannot be reached (No such file or directory)");
    cr_assert_not(rpc_client_relayed(c), "ping's \"via agent\" would not be true");
    rpc_client_free(c);
}

Test(rpc_relay, an_agent_replaced_since_the_open_the_call_goes_directly)
{
    struct script s = {.mode = ANSWER_PING, .reply_no = true};
    pthread_t t;
    struct rpc_client *c = open_relayed(&s, &t);

    ping_goes_directly(c, "holds a connection with other settings now");
    close_agent(&s, t);
    rpc_client_free(c);
}

Test(rpc_relay, an_agent_gone_before_its_answer_the_call_goes_directly)
{
    struct script s = {.mode = HANG_UP};
    pthread_t t;
    struct rpc_client *c = open_relayed(&s, &t);

    ping_goes_directly(c, "closed the connection before it answered");
    close_agent(&s, t);
    rpc_client_free(c);
}

/* The agent at its cap: unary, stream and Input calls all go directly. */
Test(rpc_relay, an_agent_at_its_cap_the_calls_go_directly)
{
    struct script s = {.mode = TURN_AWAY, .calls = 3};
    Runjob__V1__StreamRequest sreq = RUNJOB__V1__STREAM_REQUEST__INIT;
    struct rpc_stream *st = NULL;
    struct rpc_input *in = NULL;
    struct rpc_error err = {0};
    pthread_t t;
    struct rpc_client *c = open_relayed(&s, &t);
    const char *why = "turned the call away (the runjob agent serves 512 connections at once "
                      "already)";

    ping_goes_directly(c, why);
    sreq.id = (char *)"00000000-0000-0000-0000-000000000000";
    cr_assert_eq(rpc_client_stream_open(c, &sreq, &st, &err), -1);
    went_directly(&err, why);
    cr_assert_eq(rpc_client_input_open(c, "00000000-0000-0000-0000-000000000000", 0, 0, &in, &err),
                 -1);
    went_directly(&err, why);
    close_agent(&s, t);
    rpc_client_free(c);
}

/* A request larger than a relay frame is never sent to the agent (it would drop the call, after
 * its YES): it goes directly, where the server says what is wrong with it. */
Test(rpc_relay, a_request_too_large_to_relay_goes_directly)
{
    struct script s = {.mode = NO_CALL};
    Runjob__V1__StartRequest req = RUNJOB__V1__START_REQUEST__INIT;
    Runjob__V1__Job *job = NULL;
    struct rpc_error err = {0};
    pthread_t t;
    struct rpc_client *c = open_relayed(&s, &t);
    size_t n = 18;
    char *args[18];

    for (size_t i = 0; i < n; i++) {
        args[i] = malloc(1 << 20);
        memset(args[i], 'a', (1 << 20) - 1);
        args[i][(1 << 20) - 1] = '\0';
    }
    req.command = (char *)"/bin/true";
    req.args = args;
    req.n_args = n;
    cr_assert_eq(rpc_client_start(c, &req, &job, &err), -1);
    went_directly(&err, "relays requests of at most 17825792 bytes, this one is 18874");
    close_agent(&s, t); /* which has had no call */
    for (size_t i = 0; i < n; i++)
        free(args[i]);
    rpc_client_free(c);
}

/* A listener of another user's is no agent of ours: its peer's uid is checked at connect. */
Test(rpc_relay, an_agent_of_another_user_is_refused)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int ready[2], done[2];
    char dir[] = "/tmp/runjob-relay-uid.XXXXXX";
    pid_t pid;

    if (geteuid() != 0)
        cr_skip_test("needs root to listen as another user");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(chmod(dir, 0777), 0);
    (void)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/s", dir);
    cr_assert_eq(pipe(ready), 0);
    cr_assert_eq(pipe(done), 0);
    pid = fork();
    if (pid == 0) {
        int l;
        if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
            _exit(1);
        l = socket(AF_UNIX, SOCK_STREAM, 0);
        if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 1) < 0 ||
            chmod(sa.sun_path, 0666) < 0)
            _exit(1);
        (void)!write(ready[1], "r", 1);
        char b;
        (void)!read(done[0], &b, 1);
        _exit(0);
    }
    char b;
    cr_assert_eq(read(ready[0], &b, 1), 1);
    cr_assert_eq(relay_connect(sa.sun_path), -EPERM);
    (void)!write(done[1], "d", 1);
    waitpid(pid, NULL, 0);
    (void)unlink(sa.sun_path);
    (void)rmdir(dir);
}

static void *cancel_later(void *arg)
{
    usleep(50 * 1000);
    rpc_client_stream_cancel(arg);
    return NULL;
}

Test(rpc_relay, stream_chunk_then_cancel_from_another_thread)
{
    struct script s = {.mode = STREAM_THEN_WAIT};
    Runjob__V1__StreamRequest req = RUNJOB__V1__STREAM_REQUEST__INIT;
    struct rpc_stream *st = NULL;
    struct rpc_chunk ch;
    struct rpc_error err = {0};
    pthread_t t, ct;
    struct rpc_client *c = open_relayed(&s, &t);

    req.id = (char *)"00000000-0000-0000-0000-000000000000";
    cr_assert_eq(rpc_client_stream_open(c, &req, &st, &err), 0, "%s", err.message);
    cr_assert_eq(rpc_client_stream_next(st, &ch, &err), 1, "%s", err.message);
    cr_assert_eq(ch.len, 5);
    cr_assert_eq(memcmp(ch.data, "hello", 5), 0);
    cr_assert_eq(ch.offset, 42);
    cr_assert_eq(pthread_create(&ct, NULL, cancel_later, st), 0);
    cr_assert_eq(rpc_client_stream_next(st, &ch, &err), -1);
    cr_assert_eq(err.code, RPC_CANCELLED);
    pthread_join(ct, NULL);
    rpc_client_stream_free(st);
    close_agent(&s, t);
    cr_assert_eq(s.method, RPC_M_STREAM);
    rpc_client_free(c);
}

Test(rpc_relay, input_ready_send_and_finish)
{
    struct script s = {.mode = INPUT_READY};
    struct rpc_input *in = NULL;
    struct rpc_error err = {0};
    uint64_t bytes = 0;
    pthread_t t;
    struct rpc_client *c = open_relayed(&s, &t);

    cr_assert_eq(rpc_client_input_open(c, "00000000-0000-0000-0000-000000000000", 0, 0, &in, &err),
                 0, "%s", err.message);
    cr_assert_eq(rpc_client_input_send(in, "abc", 3, 0, 0), 0);
    cr_assert_eq(rpc_client_input_finish(in, true, 5000, &bytes, &err), 0, "%s", err.message);
    cr_assert_eq(bytes, 3);
    rpc_client_input_free(in);
    close_agent(&s, t);
    cr_assert_eq(s.method, RPC_M_INPUT);
    rpc_client_free(c);
}
