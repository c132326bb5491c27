/* The client half of core/rpc.h: one gRPC channel with mTLS, synchronous unary calls and a
 * server-streaming reader, each call on its own pluck completion queue (so every call is
 * thread-safe on one channel: `run` stops a job from its signal thread while the main thread
 * is blocked reading the stream). */
#include "clock.h"
#include "rpc.h"
#include "rpc-client-internal.h"
#include "rpc-internal.h"
#include "rpc-relay-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include "cleanup.h"
#include "tls.h"

#define MAX_RECV_BYTES      (16 << 20) /* the server may send 1 MiB+ chunks; default is 4 MiB */
#define MAX_PEM_BYTES       (1 << 20)
#define DEFAULT_DEADLINE_MS 30000
/* Keepalive, matched with core/server.c: the server accepts a ping every 10 s
 * (GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS), also without calls, and a client
 * pinging more often earns a GOAWAY "too_many_pings". Pinging every 30 s, also on a quiet follow
 * stream (no cap on pings without data) and on an agent's idle channel (without calls),
 * notices a dead server or a dropped NAT entry within 40 s, before a command waits on it. */
#define KEEPALIVE_TIME_MS            30000
#define KEEPALIVE_TIMEOUT_MS         10000
#define RECONNECT_BACKOFF_INITIAL_MS 250
#define RECONNECT_BACKOFF_MAX_MS     2000

struct rpc_client {
    grpc_channel *channel;      /* NULL when the calls go through an agent */
    void *methods[RPC_M_COUNT]; /* registered calls, by enum rpc_method */
    int64_t deadline_ms;
    struct rpc_peer peer; /* for messages */
    char relay_path[108]; /* the agent's socket when the calls go through one, else "" */
    char settings[RELAY_SETTINGS_MAX]; /* what an agent and its clients share */
    size_t settings_len;
    int port;
    /* Through an agent: the direct client for the calls the agent turns away before taking
     * them, opened on first need (calls come from several threads); under direct_mu. */
    pthread_mutex_t direct_mu;
    struct rpc_client *direct;
    atomic_bool went_direct; /* a call has gone the direct way */
    /* rpc_client_keep_connected's thread, and its signal to end. */
    pthread_t keeper;
    bool keeper_started;
    atomic_bool keeper_stop;
};

/* What the Stream and Input calls hold alike: a call of their own on a pluck queue of its own,
 * where its metadata and status land, and its two standing batches: the first (up to the
 * server's initial metadata) and the end (the status). */
struct call_state {
    struct rpc_client *c;
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata_array md_initial;
    grpc_metadata_array md_trailing;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string;
    int64_t start_ms;          /* clock_ms(CLOCK_MONOTONIC) at open */
    char tag_first, tag_end;   /* distinct, stable tags */
    bool first_done, end_done; /* plucked (or never started) */
    /* Through an agent instead: the call's connection (else -1), the frame last read on it,
     * and whether a cancel shut it down. */
    int relay_fd;
    struct relay_frame frame;
    atomic_bool cancelled;
};

struct rpc_stream {
    struct call_state cs;   /* through an agent, the current chunk points into its frame */
    grpc_byte_buffer *recv; /* the message the current chunk points into */
    grpc_slice flat;        /* its single slice when it has one (a reference) */
    bool flat_set;
    uint8_t *buf; /* otherwise its bytes, gathered here (one copy) */
    size_t buf_cap;
    Runjob__V1__JobStatus *final_status;
    bool ended;
    bool answered;  /* a message has come: the connection worked */
    int end_result; /* 0 or -1 once ended */
    struct rpc_error end_err;
    /* Distinct, stable tags: addresses inside this struct. */
    char tag_recv;
};

/* ---- channel ----------------------------------------------------------------------------- */

static int read_pem(const char *path, const char *what, char **ret, struct rpc_error *err)
{
    _cleanup_close_ int fd = -1;
    _cleanup_free_ char *buf = NULL;
    size_t n = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rpc_error_set(err, RPC_FAILED_PRECONDITION,
                      "cannot read %s '%s': %s (create certificates with `runjob certs`)", what,
                      path, strerror(errno));
        return -1;
    }
    buf = malloc(MAX_PEM_BYTES + 1);
    if (!buf) {
        rpc_error_set(err, RPC_RESOURCE_EXHAUSTED, "out of memory");
        return -1;
    }
    for (;;) {
        ssize_t k = read(fd, buf + n, MAX_PEM_BYTES - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            rpc_error_set(err, RPC_FAILED_PRECONDITION, "cannot read %s '%s': %s", what, path,
                          strerror(errno));
            return -1;
        }
        if (k == 0)
            break;
        n += (size_t)k;
        if (n == MAX_PEM_BYTES) {
            rpc_error_set(err, RPC_FAILED_PRECONDITION, "%s '%s' is larger than 1 MiB", what, path);
            return -1;
        }
    }
    buf[n] = '\0';
    if (!strstr(buf, "-----BEGIN ")) {
        rpc_error_set(err, RPC_FAILED_PRECONDITION,
                      "%s '%s' is not a PEM file (create certificates with `runjob certs`)", what,
                      path);
        return -1;
    }
    *ret = TAKE_PTR(buf);
    return 0;
}

/* "ipv4:127.0.0.1:8080", "ipv6:[::1]:8080" or "dns:host:8080" (numeric addresses skip DNS,
 * which a static binary cannot do through NSS). */
static int make_target(const char *host, int port, char *buf, size_t cap, bool *ret_is_localhost)
{
    char h[256];
    struct in_addr a4;
    struct in6_addr a6;
    size_t n = strlen(host);
    int k;

    /* Accept "[::1]" as well as "::1". */
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof(h))
        return -EINVAL;
    memcpy(h, host, n);
    h[n] = '\0';
    *ret_is_localhost = strcmp(h, "localhost") == 0;
    if (*ret_is_localhost || inet_pton(AF_INET, h, &a4) == 1)
        k = snprintf(buf, cap, "ipv4:%s:%d", *ret_is_localhost ? "127.0.0.1" : h, port);
    else if (inet_pton(AF_INET6, h, &a6) == 1)
        k = snprintf(buf, cap, "ipv6:[%s]:%d", h, port);
    else
        k = snprintf(buf, cap, "dns:%s:%d", h, port);
    return k < 0 || (size_t)k >= cap ? -EINVAL : 0;
}

/* gRPC's own log lines ("E1123 ... ssl_transport_security.cc:1501] Handshake failed ...")
 * say again, for a developer, what the client's one error line says for a person. */
static void quiet_log(gpr_log_func_args *args)
{
    (void)args;
}

/* The configuration's words for messages, and its settings for an agent's HELLO (the files by
 * their real paths; as given when one does not resolve, which at worst is a mismatch). */
static int client_describe_config(struct rpc_client *c, const struct rpc_client_config *cfg)
{
    char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
    int n;

    c->deadline_ms = cfg->deadline_ms > 0 ? cfg->deadline_ms : DEFAULT_DEADLINE_MS;
    c->port = cfg->port;
    (void)snprintf(c->peer.host, sizeof(c->peer.host), "%s", cfg->host);
    if (strchr(cfg->host, ':') && cfg->host[0] != '[')
        (void)snprintf(c->peer.where, sizeof(c->peer.where), "[%s]:%d", cfg->host, cfg->port);
    else
        (void)snprintf(c->peer.where, sizeof(c->peer.where), "%s:%d", cfg->host, cfg->port);
    (void)snprintf(c->peer.ca_path, sizeof(c->peer.ca_path), "%s", cfg->ca_path);
    (void)snprintf(c->peer.cert_path, sizeof(c->peer.cert_path), "%s", cfg->cert_path);
    (void)snprintf(c->peer.key_path, sizeof(c->peer.key_path), "%s", cfg->key_path);
    n = relay_settings(c->peer.where, realpath(cfg->ca_path, ca) ? ca : cfg->ca_path,
                       realpath(cfg->cert_path, cert) ? cert : cfg->cert_path,
                       realpath(cfg->key_path, key) ? key : cfg->key_path, c->settings);
    c->settings_len = n < 0 ? 0 : (size_t)n;
    return n < 0 ? n : 0;
}

int rpc_client_open(const struct rpc_client_config *cfg, struct rpc_client **ret,
                    struct rpc_error *err)
{
    _cleanup_free_ char *ca = NULL, *cert = NULL, *key = NULL;
    struct rpc_client *c;
    char target[400];
    bool is_localhost;

    if (!cfg->host || cfg->port < 1 || cfg->port > 65535 ||
        make_target(cfg->host, cfg->port, target, sizeof(target), &is_localhost) < 0) {
        rpc_error_set(err, RPC_INVALID_ARGUMENT, "bad server address '%s' port %d",
                      cfg->host ? cfg->host : "", cfg->port);
        return -1;
    }
    if (read_pem(cfg->ca_path, "CA certificate", &ca, err) < 0 ||
        read_pem(cfg->cert_path, "client certificate", &cert, err) < 0 ||
        read_pem(cfg->key_path, "client key", &key, err) < 0)
        return -1;
    /* A no-op in the runjob binary (applet_run did it); for other users of the client (tests),
     * before our and gRPC's first OpenSSL call. */
    (void)tls_process_init();
    c = calloc(1, sizeof(*c));
    if (!c) {
        rpc_error_set(err, RPC_RESOURCE_EXHAUSTED, "out of memory");
        return -1;
    }
    (void)client_describe_config(c, cfg);

    if (!getenv("GRPC_VERBOSITY") && !getenv("GRPC_TRACE"))
        gpr_set_log_function(quiet_log);
    rpc_grpc_init();
    grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
    /* NULL verify options: the default checks the chain against ca and the server's name
     * against the target; TLS 1.3-only is enforced process-wide by core/tls.c. */
    grpc_channel_credentials *creds = grpc_ssl_credentials_create_ex(ca, &pair, NULL, NULL);
    if (!creds) {
        rpc_error_set(err, RPC_FAILED_PRECONDITION, "cannot use the certificates '%s', '%s', '%s'",
                      cfg->ca_path, cfg->cert_path, cfg->key_path);
        free(c);
        grpc_shutdown();
        return -1;
    }
    grpc_arg args[10];
    size_t nargs = 0;
    args[nargs++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                               .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                               .value.integer = MAX_RECV_BYTES};
    args[nargs++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                               .key = (char *)GRPC_ARG_KEEPALIVE_TIME_MS,
                               .value.integer = KEEPALIVE_TIME_MS};
    args[nargs++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                               .key = (char *)GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                               .value.integer = KEEPALIVE_TIMEOUT_MS};
    args[nargs++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                               .key = (char *)GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
                               .value.integer = 1};
    args[nargs++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                               .key = (char *)GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA,
                               .value.integer = 0};
    /* A channel that lives on (an agent's) retries a server that went away within a second or
     * two of its return, not gRPC's default of up to 120 s, during which every call fails. */
    args[nargs++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                               .key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                               .value.integer = RECONNECT_BACKOFF_INITIAL_MS};
    args[nargs++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                               .key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                               .value.integer = RECONNECT_BACKOFF_MAX_MS};
    args[nargs++] = (grpc_arg){.type = GRPC_ARG_STRING,
                               .key = (char *)GRPC_ARG_PRIMARY_USER_AGENT_STRING,
                               .value.string = (char *)"runjob/" RUNJOB_VERSION};
    /* "localhost" dials 127.0.0.1 without a resolver but still checks the name "localhost"
     * in the server's certificate. */
    if (is_localhost)
        args[nargs++] = (grpc_arg){.type = GRPC_ARG_STRING,
                                   .key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
                                   .value.string = (char *)"localhost"};
    grpc_channel_args chargs = {.num_args = nargs, .args = args};
    c->channel = grpc_channel_create(target, creds, &chargs);
    grpc_channel_credentials_release(creds);
    for (int m = 0; m < RPC_M_COUNT; m++)
        c->methods[m] =
            grpc_channel_register_call(c->channel, rpc_method_path((enum rpc_method)m), NULL, NULL);
    *ret = c;
    return 0;
}

/* How long a client waits for an agent's answer to its HELLO before dialing directly: an agent
 * that does not answer at once is wedged, and the user's call must not wait on it. */
#define RELAY_HELLO_TIMEOUT_MS 2000

int rpc_client_open_relay(const struct rpc_client_config *cfg, const char *path,
                          struct rpc_client **ret)
{
    struct relay_frame f = {0};
    struct timeval tv = {.tv_sec = RELAY_HELLO_TIMEOUT_MS / 1000};
    struct rpc_client *c = NULL;
    int fd = -1, r = 0;

    if (!path || !*path || strlen(path) >= sizeof(c->relay_path) || !cfg->host || cfg->port < 1 ||
        cfg->port > 65535 || !cfg->ca_path || !cfg->cert_path || !cfg->key_path)
        return 0;
    c = calloc(1, sizeof(*c));
    if (!c || client_describe_config(c, cfg) < 0)
        goto out;
    fd = relay_connect(path);
    if (fd < 0)
        goto out;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (relay_send_bytes(fd, RELAY_HELLO, c->settings, c->settings_len) < 0 ||
        relay_recv(fd, &f) <= 0 || f.type != RELAY_YES)
        goto out;
    (void)snprintf(c->relay_path, sizeof(c->relay_path), "%s", path);
    pthread_mutex_init(&c->direct_mu, NULL);
    *ret = TAKE_PTR(c);
    r = 1;
out:
    if (fd >= 0)
        (void)close(fd);
    relay_frame_free(&f);
    free(c);
    return r;
}

bool rpc_client_relayed(const struct rpc_client *c)
{
    return c && c->relay_path[0] && !atomic_load(&c->went_direct);
}

const char *rpc_client_settings(const struct rpc_client *c, size_t *ret_len)
{
    *ret_len = c->settings_len;
    return c->settings;
}

grpc_call *rpc_client_call_new(struct rpc_client *c, enum rpc_method m, grpc_completion_queue *cq,
                               int64_t deadline_ms)
{
    gpr_timespec until = deadline_ms > 0
                             ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                            gpr_time_from_millis(deadline_ms, GPR_TIMESPAN))
                             : gpr_inf_future(GPR_CLOCK_REALTIME);
    return grpc_channel_create_registered_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                               c->methods[m], until, NULL);
}

/* How long the keeper's watch on the channel lasts at most: the longest rpc_client_free waits
 * for it. */
#define KEEPER_WATCH_MS 200

/* gRPC moves a channel's connection along (TCP connect, TLS handshake, reads) only while some
 * thread polls: a call waiting on its queue, or otherwise the library's backup poller, every
 * 5 s. A channel with no call under way (an agent's between commands), or one in
 * TRANSIENT_FAILURE, where calls fail at once without polling, would connect at those ticks
 * only: slower than the server's 5 s handshake timeout, so it would never get through. This
 * thread polls the whole time, watching the channel's state, and asks an idle channel to
 * connect, so that the connection is there when a call comes. */
static void *keeper_main(void *arg)
{
    struct rpc_client *c = arg;
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);

    while (!atomic_load(&c->keeper_stop)) {
        grpc_connectivity_state st = grpc_channel_check_connectivity_state(c->channel, 1);
        grpc_channel_watch_connectivity_state(
            c->channel, st,
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                         gpr_time_from_millis(KEEPER_WATCH_MS, GPR_TIMESPAN)),
            cq, NULL);
        (void)grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    }
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    return NULL;
}

int rpc_client_keep_connected(struct rpc_client *c)
{
    int r;

    if (!c->channel || c->keeper_started)
        return c->channel ? 0 : -EINVAL;
    atomic_store(&c->keeper_stop, false);
    r = pthread_create(&c->keeper, NULL, keeper_main, c);
    if (r != 0)
        return -r;
    c->keeper_started = true;
    return 0;
}

void rpc_client_await_ready(struct rpc_client *c, grpc_completion_queue *cq, int64_t max_ms)
{
    char tag;

    if (!c->channel || max_ms <= 0 ||
        grpc_channel_check_connectivity_state(c->channel, 0) != GRPC_CHANNEL_TRANSIENT_FAILURE)
        return;
    grpc_channel_reset_connect_backoff(c->channel);
    /* The state stays TRANSIENT_FAILURE until READY: the watch ends there or at max_ms. */
    grpc_channel_watch_connectivity_state(
        c->channel, GRPC_CHANNEL_TRANSIENT_FAILURE,
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(max_ms, GPR_TIMESPAN)), cq,
        &tag);
    (void)grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
}

void rpc_client_free(struct rpc_client *c)
{
    if (!c)
        return;
    if (c->keeper_started) {
        atomic_store(&c->keeper_stop, true);
        (void)pthread_join(c->keeper, NULL);
    }
    if (c->relay_path[0]) { /* gRPC was set up only if a call went directly */
        pthread_mutex_destroy(&c->direct_mu);
        if (c->direct) {
            rpc_client_free(c->direct);
            /* The direct path's applets wait for gRPC's clean-up at exit; nothing does here. */
            rpc_client_wait_library_idle(1000);
        }
        free(c);
        return;
    }
    if (c->channel)
        grpc_channel_destroy(c->channel);
    free(c);
    grpc_shutdown();
}

void rpc_client_wait_library_idle(int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms && grpc_is_initialized(); waited++)
        (void)usleep(1000);
}

/* A client key that does not belong to its certificate, or a pair that does not parse, fails
 * the first call as UNAVAILABLE with no words for it (gRPC's security connector is never made:
 * "empty address list"). The pair is checked here, on that failure, rather than at open: parsing
 * both costs every client process ~0.7 ms of CPU (OpenSSL 3.0's key decoders), for a mistake
 * made once. true when err now says what is wrong with the pair. */
static bool describe_bad_pair(const struct rpc_peer *p, struct rpc_error *err)
{
    _cleanup_free_ char *cert = NULL, *key = NULL;
    int r;

    if (tls_read_pem(p->cert_path, &cert) < 0 || tls_read_pem(p->key_path, &key) < 0)
        return false;
    r = tls_check_key_pair(cert, key);
    if (r == -EKEYREJECTED)
        rpc_error_set(err, RPC_FAILED_PRECONDITION,
                      "client key '%s' does not belong to client certificate '%s' (use the "
                      "key made with that certificate, see `runjob certs`)",
                      p->key_path, p->cert_path);
    else if (r == -EBADMSG)
        rpc_error_set(err, RPC_FAILED_PRECONDITION,
                      "client certificate '%s' or client key '%s' does not parse as a "
                      "certificate and a private key",
                      p->cert_path, p->key_path);
    return r == -EKEYREJECTED || r == -EBADMSG;
}

/* A failed call's raw status on stderr, with RUNJOB_RPC_DEBUG set. */
static void debug_status(int code, const char *details, const char *error, const char *how)
{
    if (getenv("RUNJOB_RPC_DEBUG"))
        fprintf(stderr, "rpc: status %d details '%s' error_string '%s'%s\n", code,
                details ? details : "", error ? error : "", how);
}

static void describe_slice(const struct rpc_client *c, grpc_status_code code, grpc_slice details,
                           const char *error_string, const struct rpc_call_facts *f,
                           struct rpc_error *err)
{
    char *d = grpc_slice_to_c_string(details);
    if (code != GRPC_STATUS_UNAVAILABLE || f->answered || !describe_bad_pair(&c->peer, err))
        rpc_client_describe(&c->peer, (int)code, d, error_string, f, err);
    debug_status((int)code, d, error_string, "");
    gpr_free(d);
}

/* ---- messages ---------------------------------------------------------------------------- */

static grpc_byte_buffer *pack(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static ProtobufCMessage *unpack(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader r;
    ProtobufCMessage *m;

    if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
        bb->data.raw.slice_buffer.count == 1) {
        grpc_slice s = bb->data.raw.slice_buffer.slices[0];
        return protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    }
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    m = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    return m;
}

static gpr_timespec deadline_in(int64_t ms)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static void cq_drain_destroy(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
}

/* ---- calls through an agent -------------------------------------------------------------- */

/* err for a call whose connection to the agent broke (r: relay_recv's 0 or -errno). */
static void relay_lost(const struct rpc_client *c, int r, struct rpc_error *err)
{
    if (r == -EAGAIN)
        rpc_error_set(err, RPC_DEADLINE_EXCEEDED,
                      "the runjob agent at %s did not answer within the call's deadline",
                      c->relay_path);
    else
        rpc_error_set(err, RPC_UNAVAILABLE, "lost the runjob agent at %s (%s)", c->relay_path,
                      r == 0 ? "it closed the connection" : strerror(-r));
}

static int relay_send_message(int fd, const ProtobufCMessage *m)
{
    uint8_t small[4096];
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *p = n <= sizeof(small) ? small : malloc(n);
    int r;

    if (!p)
        return -ENOMEM;
    protobuf_c_message_pack(m, p);
    r = relay_send_bytes(fd, RELAY_MSG, p, n);
    if (p != small)
        free(p);
    return r;
}

/* How long a call waits for the agent's YES when the call itself has no deadline (a Stream,
 * an Input): the agent answers a HELLO before it does anything else, so one that takes longer
 * is wedged. */
#define RELAY_YES_WAIT_MS 10000

/* relay_call_open's answer when the agent turned the call away before taking it. */
#define RELAY_TURNED_AWAY (-EAGAIN)

/* A call's connection to the agent: HELLO, CALL, then req as the first message when there is
 * one, then END when end; then the agent's answer to the HELLO, read into f (waiting at most
 * wait_ms). The fd once the agent has said YES: it has the call, which from then on must never
 * be made again elsewhere (a Start would run twice). RELAY_TURNED_AWAY with why filled when it
 * refused before its YES (nobody there, another agent's NO, its connection cap, gone before it
 * answered), or when req is more than a frame carries: the call may go directly. Else -EIO with
 * err filled. */
static int relay_call_open(struct rpc_client *c, enum rpc_method m, int64_t deadline_ms,
                           const ProtobufCMessage *req, bool end, int64_t wait_ms,
                           struct relay_frame *f, char *why, size_t why_cap, struct rpc_error *err)
{
    uint8_t call[RELAY_CALL_BYTES];
    struct timeval tv = {.tv_sec = wait_ms / 1000, .tv_usec = (wait_ms % 1000) * 1000};
    const char *details, *error;
    size_t n = req ? protobuf_c_message_get_packed_size(req) : 0;
    int fd, r, code;

    /* Checked before anything is sent: the agent would take the call, then drop it unread. */
    if (n > RELAY_FRAME_MAX) {
        (void)snprintf(why, why_cap, "relays requests of at most %d bytes, this one is %zu",
                       RELAY_FRAME_MAX, n);
        return RELAY_TURNED_AWAY;
    }
    fd = relay_connect(c->relay_path);
    if (fd < 0) {
        (void)snprintf(why, why_cap, "cannot be reached (%s)", strerror(-fd));
        return RELAY_TURNED_AWAY;
    }
    /* The settings again, without waiting for the answer: the agent at the path may have been
     * replaced by one of other settings since the open. The agent reads the CALL only once it
     * has said YES. */
    relay_call_encode(call, m, deadline_ms);
    r = relay_send_bytes(fd, RELAY_HELLO, c->settings, c->settings_len);
    if (r >= 0)
        r = relay_send_bytes(fd, RELAY_CALL, call, sizeof(call));
    if (r >= 0 && req)
        r = relay_send_message(fd, req);
    if (r >= 0 && end)
        r = relay_send_bytes(fd, RELAY_END, NULL, 0);
    /* An agent that has hung up may have answered first (a STATUS): the read tells. */
    if (r < 0 && r != -EPIPE && r != -ECONNRESET) {
        relay_lost(c, r, err);
        (void)close(fd);
        return -EIO;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    r = relay_recv(fd, f);
    if (r == 1 && f->type == RELAY_YES)
        return fd;
    (void)close(fd);
    if (r == 1 && f->type == RELAY_NO) {
        (void)snprintf(why, why_cap, "holds a connection with other settings now");
        return RELAY_TURNED_AWAY;
    }
    if (r == 1 && f->type == RELAY_STATUS && relay_status_decode(f, &code, &details, &error) == 0) {
        /* The agent's words up to its hint, which is about the agent path only. */
        (void)snprintf(why, why_cap, "turned the call away (%.*s)", (int)strcspn(details, ";"),
                       details);
        return RELAY_TURNED_AWAY;
    }
    if (r == 0 || r == -ECONNRESET) {
        (void)snprintf(why, why_cap, "closed the connection before it answered");
        return RELAY_TURNED_AWAY;
    }
    if (r == -EAGAIN)
        rpc_error_set(err, RPC_UNAVAILABLE, "the runjob agent at %s did not answer within %lld ms",
                      c->relay_path, (long long)wait_ms);
    else if (r == 1)
        rpc_error_set(err, RPC_INTERNAL, "the runjob agent at %s answered out of turn",
                      c->relay_path);
    else
        relay_lost(c, r, err);
    return -EIO;
}

/* The direct client for a call the agent turned away (why): NULL with err filled when it cannot
 * be opened. */
static struct rpc_client *go_direct(struct rpc_client *c, const char *why, struct rpc_error *err)
{
    struct rpc_client *d;

    if (getenv("RUNJOB_RPC_DEBUG"))
        fprintf(stderr, "rpc: the runjob agent at %s %s: the call goes directly\n", c->relay_path,
                why);
    atomic_store(&c->went_direct, true);
    pthread_mutex_lock(&c->direct_mu);
    if (!c->direct) {
        struct rpc_client_config cfg = {.host = c->peer.host,
                                        .port = c->port,
                                        .ca_path = c->peer.ca_path,
                                        .cert_path = c->peer.cert_path,
                                        .key_path = c->peer.key_path,
                                        .deadline_ms = c->deadline_ms};
        (void)rpc_client_open(&cfg, &c->direct, err);
    }
    d = c->direct;
    pthread_mutex_unlock(&c->direct_mu);
    return d;
}

/* A call that went directly failed: where it could not get through, err says too why it did not
 * go through the agent, which the user expected it to. */
static void note_turned_away(const struct rpc_client *c, const char *why, struct rpc_error *err)
{
    char msg[sizeof(err->message)];

    if (err->code != RPC_UNAVAILABLE && err->code != RPC_FAILED_PRECONDITION)
        return;
    (void)snprintf(msg, sizeof(msg), "%s", err->message);
    rpc_error_set(err, err->code, "%s (directly: the runjob agent at %s %s)", msg, c->relay_path,
                  why);
}

/* err for a call whose agent said NO: another agent, of other settings, listens there now. */
static void relay_refused(const struct rpc_client *c, struct rpc_error *err)
{
    rpc_error_set(err, RPC_UNAVAILABLE,
                  "the runjob agent at %s holds a connection with other settings now (another "
                  "agent, or one from before a certificate was renewed); unset RUNJOB_AGENT_SOCK "
                  "or start an agent for these settings",
                  c->relay_path);
}

/* A STATUS frame: 0 for OK, else -1 with err saying what the direct call would have said. */
static int relay_status(const struct rpc_client *c, const struct relay_frame *f,
                        const struct rpc_call_facts *facts, struct rpc_error *err)
{
    const char *details, *error;
    int code;

    if (relay_status_decode(f, &code, &details, &error) < 0) {
        rpc_error_set(err, RPC_INTERNAL, "the runjob agent at %s sent a malformed status",
                      c->relay_path);
        return -1;
    }
    if (code == RPC_OK)
        return 0;
    rpc_client_describe(&c->peer, code, details, *error ? error : NULL, facts, err);
    debug_status(code, details, error, " (through the agent)");
    return -1;
}

static int unary(struct rpc_client *c, enum rpc_method m, int64_t deadline_ms,
                 const ProtobufCMessage *req, const ProtobufCMessageDescriptor *reply_desc,
                 ProtobufCMessage **ret, struct rpc_error *err);

static int relay_unary(struct rpc_client *c, enum rpc_method m, int64_t deadline_ms,
                       const ProtobufCMessage *req, const ProtobufCMessageDescriptor *reply_desc,
                       ProtobufCMessage **ret, struct rpc_error *err)
{
    struct relay_frame f = {0};
    struct rpc_call_facts facts = {.deadline_ms = deadline_ms};
    /* The agent ends the call at its deadline; one that does not answer by then is wedged. */
    int64_t wait_ms = deadline_ms + 5000;
    ProtobufCMessage *reply = NULL;
    int64_t t0 = clock_ms(CLOCK_MONOTONIC);
    char why[200];
    int fd, r, result = -1;

    fd = relay_call_open(c, m, deadline_ms, req, true, wait_ms, &f, why, sizeof(why), err);
    if (fd == RELAY_TURNED_AWAY) {
        struct rpc_client *d = go_direct(c, why, err);
        relay_frame_free(&f);
        if (!d || unary(d, m, deadline_ms, req, reply_desc, ret, err) < 0) {
            note_turned_away(c, why, err);
            return -1;
        }
        return 0;
    }
    if (fd < 0) {
        relay_frame_free(&f);
        return -1;
    }
    for (;;) {
        r = relay_recv(fd, &f);
        if (r <= 0) {
            relay_lost(c, r, err);
            break;
        }
        if (f.type == RELAY_NO) {
            relay_refused(c, err);
            break;
        }
        if (f.type == RELAY_MSG && !reply) {
            reply = protobuf_c_message_unpack(reply_desc, NULL, f.len, f.data);
            if (!reply) {
                rpc_error_set(err, RPC_INTERNAL, "cannot decode the server's reply");
                break;
            }
        } else if (f.type == RELAY_STATUS) {
            facts.elapsed_ms = clock_ms(CLOCK_MONOTONIC) - t0;
            if (relay_status(c, &f, &facts, err) < 0)
                break;
            if (!reply) {
                rpc_error_set(err, RPC_INTERNAL, "the server sent no reply");
                break;
            }
            *ret = TAKE_PTR(reply);
            result = 0;
            break;
        }
    }
    (void)close(fd);
    relay_frame_free(&f);
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    return result;
}

/* One unary call: the six-op batch on a private pluck queue. */
static int unary(struct rpc_client *c, enum rpc_method m, int64_t deadline_ms,
                 const ProtobufCMessage *req, const ProtobufCMessageDescriptor *reply_desc,
                 ProtobufCMessage **ret, struct rpc_error *err)
{
    if (c->relay_path[0])
        return relay_unary(c, m, deadline_ms, req, reply_desc, ret, err);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_call *call =
        grpc_channel_create_registered_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                            c->methods[m], deadline_in(deadline_ms), NULL);
    grpc_byte_buffer *send = pack(req), *recv = NULL;
    grpc_metadata_array md_initial, md_trailing;
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    const char *error_string = NULL;
    grpc_op ops[6];
    int tag, r = -1;
    int64_t t0 = clock_ms(CLOCK_MONOTONIC);

    grpc_metadata_array_init(&md_initial);
    grpc_metadata_array_init(&md_trailing);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &md_initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &md_trailing;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    ops[5].data.recv_status_on_client.error_string = &error_string;

    grpc_call_error ce = grpc_call_start_batch(call, ops, 6, &tag, NULL);
    if (ce != GRPC_CALL_OK) {
        rpc_error_set(err, RPC_INTERNAL, "cannot start the call (grpc call error %d)", (int)ce);
        goto out;
    }
    /* The batch always reports success; the status says how the call went. */
    (void)grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (status != GRPC_STATUS_OK) {
        struct rpc_call_facts f = {.deadline_ms = deadline_ms,
                                   .elapsed_ms = clock_ms(CLOCK_MONOTONIC) - t0};
        describe_slice(c, status, details, error_string, &f, err);
        goto out;
    }
    if (!recv) {
        rpc_error_set(err, RPC_INTERNAL, "the server sent no reply");
        goto out;
    }
    *ret = unpack(reply_desc, recv);
    if (!*ret) {
        rpc_error_set(err, RPC_INTERNAL, "cannot decode the server's reply");
        goto out;
    }
    r = 0;
out:
    grpc_byte_buffer_destroy(send);
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_metadata_array_destroy(&md_initial);
    grpc_metadata_array_destroy(&md_trailing);
    grpc_slice_unref(details);
    gpr_free((void *)error_string);
    grpc_call_unref(call);
    cq_drain_destroy(cq);
    return r;
}

int rpc_client_start(struct rpc_client *c, const Runjob__V1__StartRequest *req,
                     Runjob__V1__Job **ret, struct rpc_error *err)
{
    return unary(c, RPC_M_START, c->deadline_ms, &req->base, &runjob__v1__job__descriptor,
                 (ProtobufCMessage **)ret, err);
}

int64_t rpc_client_stop_deadline_ms(int64_t deadline_ms, int64_t grace_millis)
{
    /* Stop answers once the grace period is over (and the kill done): the usual deadline
     * counts from there. Grace 0 is the server's default, which a client cannot know (`runjob
     * serve --stop-grace`, up to RPC_MAX_GRACE_MS): wait out the longest one. A server or a
     * connection that dies meanwhile is still noticed within 40 s, by keepalive. */
    int64_t grace = grace_millis > 0 ? grace_millis : grace_millis == 0 ? RPC_MAX_GRACE_MS : 0;
    return deadline_ms + grace;
}

int rpc_client_stop(struct rpc_client *c, const Runjob__V1__StopRequest *req,
                    Runjob__V1__JobStatus **ret, struct rpc_error *err)
{
    return unary(c, RPC_M_STOP, rpc_client_stop_deadline_ms(c->deadline_ms, req->grace_millis),
                 &req->base, &runjob__v1__job_status__descriptor, (ProtobufCMessage **)ret, err);
}

int rpc_client_status(struct rpc_client *c, const Runjob__V1__StatusRequest *req,
                      Runjob__V1__JobStatus **ret, struct rpc_error *err)
{
    return unary(c, RPC_M_STATUS, c->deadline_ms, &req->base, &runjob__v1__job_status__descriptor,
                 (ProtobufCMessage **)ret, err);
}

int rpc_client_list(struct rpc_client *c, const Runjob__V1__ListRequest *req,
                    Runjob__V1__ListResponse **ret, struct rpc_error *err)
{
    return unary(c, RPC_M_LIST, c->deadline_ms, &req->base, &runjob__v1__list_response__descriptor,
                 (ProtobufCMessage **)ret, err);
}

int rpc_client_ping(struct rpc_client *c, const Runjob__V1__PingRequest *req,
                    Runjob__V1__PingResponse **ret, struct rpc_error *err)
{
    return unary(c, RPC_M_PING, c->deadline_ms, &req->base, &runjob__v1__ping_response__descriptor,
                 (ProtobufCMessage **)ret, err);
}

int rpc_client_metrics(struct rpc_client *c, const Runjob__V1__MetricsRequest *req,
                       Runjob__V1__MetricsResponse **ret, struct rpc_error *err)
{
    return unary(c, RPC_M_METRICS, c->deadline_ms, &req->base,
                 &runjob__v1__metrics_response__descriptor, (ProtobufCMessage **)ret, err);
}

int rpc_client_remove(struct rpc_client *c, const Runjob__V1__RemoveRequest *req,
                      Runjob__V1__RemoveResponse **ret, struct rpc_error *err)
{
    return unary(c, RPC_M_REMOVE, c->deadline_ms, &req->base,
                 &runjob__v1__remove_response__descriptor, (ProtobufCMessage **)ret, err);
}

int rpc_client_jobmanager_start(struct rpc_client *c, const Jobmanager__V1__JobCreationRequest *req,
                                Jobmanager__V1__Job **ret, struct rpc_error *err)
{
    return unary(c, RPC_M_JOBMANAGER_START, c->deadline_ms, &req->base,
                 &jobmanager__v1__job__descriptor, (ProtobufCMessage **)ret, err);
}

int rpc_client_jobmanager_stop(struct rpc_client *c, const Jobmanager__V1__JobId *req,
                               struct rpc_error *err)
{
    Jobmanager__V1__NilMessage *nil = NULL;

    if (unary(c, RPC_M_JOBMANAGER_STOP, c->deadline_ms, &req->base,
              &jobmanager__v1__nil_message__descriptor, (ProtobufCMessage **)&nil, err) < 0)
        return -1;
    protobuf_c_message_free_unpacked(&nil->base, NULL);
    return 0;
}

int rpc_client_jobmanager_query(struct rpc_client *c, const Jobmanager__V1__JobId *req,
                                Jobmanager__V1__JobStatus **ret, struct rpc_error *err)
{
    return unary(c, RPC_M_JOBMANAGER_QUERY, c->deadline_ms, &req->base,
                 &jobmanager__v1__job_status__descriptor, (ProtobufCMessage **)ret, err);
}

int rpc_client_jobmanager_list(struct rpc_client *c, Jobmanager__V1__JobStatusList **ret,
                               struct rpc_error *err)
{
    Jobmanager__V1__NilMessage nil = JOBMANAGER__V1__NIL_MESSAGE__INIT;

    return unary(c, RPC_M_JOBMANAGER_LIST, c->deadline_ms, &nil.base,
                 &jobmanager__v1__job_status_list__descriptor, (ProtobufCMessage **)ret, err);
}

/* ---- calls that last as long as the job ------------------------------------------------- */

/* Creates the call of method m, with no deadline: it lasts as long as the job. */
static void call_open(struct call_state *cs, struct rpc_client *c, enum rpc_method m)
{
    cs->relay_fd = -1;
    cs->c = c;
    cs->start_ms = clock_ms(CLOCK_MONOTONIC);
    cs->cq = grpc_completion_queue_create_for_pluck(NULL);
    cs->call = grpc_channel_create_registered_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS,
                                                   cs->cq, c->methods[m],
                                                   gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    cs->details = grpc_empty_slice();
    cs->status = GRPC_STATUS_UNKNOWN;
    grpc_metadata_array_init(&cs->md_initial);
    grpc_metadata_array_init(&cs->md_trailing);
}

/* The RECV_STATUS_ON_CLIENT op into cs: what reports every way the call can end. */
static void call_status_op(struct call_state *cs, grpc_op *op)
{
    op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op->data.recv_status_on_client.trailing_metadata = &cs->md_trailing;
    op->data.recv_status_on_client.status = &cs->status;
    op->data.recv_status_on_client.status_details = &cs->details;
    op->data.recv_status_on_client.error_string = &cs->error_string;
}

static void call_pluck(struct call_state *cs, void *tag)
{
    (void)grpc_completion_queue_pluck(cs->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
}

/* The call's failed status in err, with the time since its open. */
static void call_describe(const struct call_state *cs, struct rpc_call_facts *f,
                          struct rpc_error *err)
{
    f->elapsed_ms = clock_ms(CLOCK_MONOTONIC) - cs->start_ms;
    describe_slice(cs->c, cs->status, cs->details, cs->error_string, f, err);
}

/* Frees what call_open made; a call still under way is cancelled and its batches plucked. */
static void call_close(struct call_state *cs)
{
    if (cs->call) {
        if (!cs->first_done || !cs->end_done)
            (void)grpc_call_cancel(cs->call, NULL);
        if (!cs->first_done)
            call_pluck(cs, &cs->tag_first);
        if (!cs->end_done)
            call_pluck(cs, &cs->tag_end);
        grpc_call_unref(cs->call);
    }
    grpc_metadata_array_destroy(&cs->md_initial);
    grpc_metadata_array_destroy(&cs->md_trailing);
    grpc_slice_unref(cs->details);
    gpr_free((void *)cs->error_string);
    if (cs->cq)
        cq_drain_destroy(cs->cq);
}

/* call_open's counterpart through an agent (c->relay_path): 0, RELAY_TURNED_AWAY with why
 * (the call may go directly), or -1 with err. */
static int call_relay_open(struct call_state *cs, struct rpc_client *c, enum rpc_method m,
                           const ProtobufCMessage *req, bool end, char *why, size_t why_cap,
                           struct rpc_error *err)
{
    struct timeval none = {0};
    int fd;

    cs->c = c;
    cs->start_ms = clock_ms(CLOCK_MONOTONIC);
    cs->relay_fd = -1;
    fd = relay_call_open(c, m, 0, req, end, RELAY_YES_WAIT_MS, &cs->frame, why, why_cap, err);
    if (fd < 0) {
        relay_frame_free(&cs->frame);
        return fd == RELAY_TURNED_AWAY ? fd : -1;
    }
    /* From here the call lasts as long as the job. */
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
    cs->relay_fd = fd;
    return 0;
}

/* Through an agent: the connection's end (r: relay_recv's 0 or -errno) in err, in the words a
 * cancelled call has when a cancel shut it down. */
static void call_relay_lost(const struct call_state *cs, int r, const struct rpc_call_facts *f,
                            struct rpc_error *err)
{
    if (atomic_load(&cs->cancelled))
        rpc_client_describe(&cs->c->peer, RPC_CANCELLED, "Cancelled", NULL, f, err);
    else
        relay_lost(cs->c, r, err);
}

/* Safe from another thread while the call's owner waits on it. */
static void call_cancel(struct call_state *cs)
{
    if (cs->relay_fd >= 0) { /* wakes the owner's read; the agent cancels the call */
        atomic_store(&cs->cancelled, true);
        (void)shutdown(cs->relay_fd, SHUT_RDWR);
    } else if (cs->call) {
        (void)grpc_call_cancel(cs->call, NULL);
    }
}

/* call_close, or its counterpart through an agent. */
static void call_release(struct call_state *cs)
{
    if (cs->relay_fd >= 0)
        (void)close(cs->relay_fd);
    else
        call_close(cs);
    relay_frame_free(&cs->frame);
}

/* ---- streams ----------------------------------------------------------------------------- */

static int stream_open(struct rpc_client *c, enum rpc_method m, const ProtobufCMessage *req,
                       struct rpc_stream **ret, struct rpc_error *err);

int rpc_client_stream_open(struct rpc_client *c, const Runjob__V1__StreamRequest *req,
                           struct rpc_stream **ret, struct rpc_error *err)
{
    return stream_open(c, RPC_M_STREAM, &req->base, ret, err);
}

int rpc_client_output_open(struct rpc_client *c, const Jobmanager__V1__StreamOutputRequest *req,
                           struct rpc_stream **ret, struct rpc_error *err)
{
    return stream_open(c, RPC_M_JOBMANAGER_STREAM_OUTPUT, &req->base, ret, err);
}

static int stream_open(struct rpc_client *c, enum rpc_method m, const ProtobufCMessage *req,
                       struct rpc_stream **ret, struct rpc_error *err)
{
    struct rpc_stream *s = calloc(1, sizeof(*s));
    grpc_op ops[4];

    if (!s) {
        rpc_error_set(err, RPC_RESOURCE_EXHAUSTED, "out of memory");
        return -1;
    }
    if (c->relay_path[0]) {
        char why[200];
        int r = call_relay_open(&s->cs, c, m, req, true, why, sizeof(why), err);
        if (r == RELAY_TURNED_AWAY) {
            struct rpc_client *d = go_direct(c, why, err);
            free(s);
            if (!d || stream_open(d, m, req, ret, err) < 0) {
                note_turned_away(c, why, err);
                return -1;
            }
            return 0;
        }
        if (r < 0) {
            free(s);
            return -1;
        }
        *ret = s;
        return 0;
    }
    call_open(&s->cs, c, m);

    grpc_byte_buffer *send = pack(req);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->cs.md_initial;
    grpc_call_error ce = grpc_call_start_batch(s->cs.call, ops, 4, &s->cs.tag_first, NULL);
    grpc_byte_buffer_destroy(send); /* the batch took its own reference */
    if (ce != GRPC_CALL_OK) {
        rpc_error_set(err, RPC_INTERNAL, "cannot start the stream (grpc call error %d)", (int)ce);
        s->cs.first_done = s->cs.end_done = true;
        rpc_client_stream_free(s);
        return -1;
    }
    /* The status batch goes in at once: it is what reports every way the call can end. */
    memset(ops, 0, sizeof(ops));
    call_status_op(&s->cs, &ops[0]);
    ce = grpc_call_start_batch(s->cs.call, ops, 1, &s->cs.tag_end, NULL);
    if (ce != GRPC_CALL_OK) {
        rpc_error_set(err, RPC_INTERNAL, "cannot start the stream (grpc call error %d)", (int)ce);
        s->cs.end_done = true;
        rpc_client_stream_free(s);
        return -1;
    }
    *ret = s;
    return 0;
}

/* Drops what the previous chunk pointed into. */
static void release_current(struct rpc_stream *s)
{
    if (s->final_status) {
        protobuf_c_message_free_unpacked(&s->final_status->base, NULL);
        s->final_status = NULL;
    }
    if (s->flat_set) {
        grpc_slice_unref(s->flat);
        s->flat_set = false;
    }
    if (s->recv) {
        grpc_byte_buffer_destroy(s->recv);
        s->recv = NULL;
    }
}

/* The message's bytes in one piece: its own slice when it has just one (zero copy), else
 * gathered into the stream's reusable buffer (one copy; protobuf-c would make two). */
static int flatten(struct rpc_stream *s, const uint8_t **ret_p, size_t *ret_len)
{
    grpc_byte_buffer *bb = s->recv;
    grpc_byte_buffer_reader r;
    grpc_slice piece;
    size_t n = 0, total;

    if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
        bb->data.raw.slice_buffer.count == 1) {
        s->flat = grpc_slice_ref(bb->data.raw.slice_buffer.slices[0]);
        s->flat_set = true;
        *ret_p = GRPC_SLICE_START_PTR(s->flat);
        *ret_len = GRPC_SLICE_LENGTH(s->flat);
        return 0;
    }
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return -EBADMSG;
    total = grpc_byte_buffer_length(r.buffer_out);
    if (total > s->buf_cap) {
        uint8_t *nb = realloc(s->buf, total);
        if (!nb) {
            grpc_byte_buffer_reader_destroy(&r);
            return -ENOMEM;
        }
        s->buf = nb;
        s->buf_cap = total;
    }
    while (grpc_byte_buffer_reader_next(&r, &piece)) {
        size_t k = GRPC_SLICE_LENGTH(piece);
        if (k > total - n)
            k = total - n;
        memcpy(s->buf + n, GRPC_SLICE_START_PTR(piece), k);
        n += k;
        grpc_slice_unref(piece);
    }
    grpc_byte_buffer_reader_destroy(&r);
    *ret_p = s->buf;
    *ret_len = n;
    return 0;
}

static int stream_end(struct rpc_stream *s, struct rpc_error *err)
{
    if (!s->cs.end_done) {
        call_pluck(&s->cs, &s->cs.tag_end);
        s->cs.end_done = true;
    }
    s->ended = true;
    if (s->cs.status == GRPC_STATUS_OK) {
        s->end_result = 0;
    } else {
        struct rpc_call_facts f = {.answered = s->answered};
        call_describe(&s->cs, &f, &s->end_err);
        s->end_result = -1;
    }
    if (s->end_result < 0 && err)
        *err = s->end_err;
    return s->end_result;
}

/* The next message of a stream through an agent, as rpc_client_stream_next. */
static int relay_stream_next(struct rpc_stream *s, struct rpc_chunk *ret, struct rpc_error *err)
{
    const struct rpc_client *c = s->cs.c;
    struct rpc_call_facts facts = {0};
    struct rpc_chunk chunk;

    for (;;) {
        /* After a cancel, what the socket still holds is not shown. */
        int r = atomic_load(&s->cs.cancelled) ? 0 : relay_recv(s->cs.relay_fd, &s->cs.frame);
        facts.answered = s->answered;
        facts.elapsed_ms = clock_ms(CLOCK_MONOTONIC) - s->cs.start_ms;
        if (r <= 0) {
            call_relay_lost(&s->cs, r, &facts, &s->end_err);
            s->end_result = -1;
            break;
        }
        if (s->cs.frame.type == RELAY_NO) {
            relay_refused(c, &s->end_err);
            s->end_result = -1;
            break;
        }
        if (s->cs.frame.type == RELAY_MSG) {
            s->answered = true;
            if (rpc_chunk_parse(s->cs.frame.data, s->cs.frame.len, &chunk) < 0) {
                (void)shutdown(s->cs.relay_fd, SHUT_RDWR); /* the agent cancels the call */
                rpc_error_set(&s->end_err, RPC_DATA_LOSS,
                              "the server sent a malformed output chunk");
                s->end_result = -1;
                break;
            }
            s->final_status = chunk.final_status;
            *ret = chunk;
            return 1;
        }
        if (s->cs.frame.type == RELAY_STATUS) {
            s->end_result = relay_status(c, &s->cs.frame, &facts, &s->end_err);
            break;
        }
    }
    s->ended = true;
    if (s->end_result < 0 && err)
        *err = s->end_err;
    return s->end_result;
}

int rpc_client_stream_next(struct rpc_stream *s, struct rpc_chunk *ret, struct rpc_error *err)
{
    grpc_op op;
    const uint8_t *p;
    size_t len;
    struct rpc_chunk chunk;
    int r;

    release_current(s);
    if (s->ended) {
        if (s->end_result < 0 && err)
            *err = s->end_err;
        return s->end_result;
    }
    if (s->cs.relay_fd >= 0)
        return relay_stream_next(s, ret, err);
    if (!s->cs.first_done) {
        call_pluck(&s->cs, &s->cs.tag_first);
        s->cs.first_done = true;
    }
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &s->recv;
    if (grpc_call_start_batch(s->cs.call, &op, 1, &s->tag_recv, NULL) != GRPC_CALL_OK)
        return stream_end(s, err);
    call_pluck(&s->cs, &s->tag_recv);
    if (!s->recv) /* end of stream, or the call failed: the status tells which */
        return stream_end(s, err);
    s->answered = true;

    r = flatten(s, &p, &len);
    if (r >= 0)
        r = rpc_chunk_parse(p, len, &chunk);
    if (r < 0) {
        grpc_call_cancel_with_status(s->cs.call, GRPC_STATUS_DATA_LOSS, "malformed OutputChunk",
                                     NULL);
        (void)stream_end(s, NULL);
        s->end_result = -1;
        rpc_error_set(&s->end_err, RPC_DATA_LOSS, "the server sent a malformed output chunk");
        if (err)
            *err = s->end_err;
        return -1;
    }
    s->final_status = chunk.final_status;
    *ret = chunk;
    return 1;
}

void rpc_client_stream_cancel(struct rpc_stream *s)
{
    if (s)
        call_cancel(&s->cs);
}

void rpc_client_stream_free(struct rpc_stream *s)
{
    if (!s)
        return;
    release_current(s);
    call_release(&s->cs);
    free(s->buf);
    free(s);
}

/* ---- Input ------------------------------------------------------------------------------- */

struct rpc_input {
    struct call_state cs;
    grpc_byte_buffer *reply;
    int tag_send;
    bool closed, failed;
    /* Through an agent: what has come back. */
    bool taken, ended; /* HEADERS with the ready key came; STATUS came (or the agent went) */
    int end_result;    /* once ended: 0, or -1 with end_err */
    struct rpc_error end_err;
    uint64_t bytes; /* the reply's count */
};

/* Takes one frame (or its absence) from the agent: 1, 0 when none came within timeout_ms (< 0:
 * waits as long as it takes), -1 when the call has ended here (end_result says how). */
static int relay_input_read(struct rpc_input *in, int timeout_ms)
{
    const struct rpc_client *c = in->cs.c;
    struct pollfd p = {.fd = in->cs.relay_fd, .events = POLLIN};
    struct rpc_call_facts facts = {0};
    int r;

    if (in->ended)
        return -1;
    r = poll(&p, 1, timeout_ms);
    if (r == 0 || (r < 0 && errno == EINTR))
        return 0;
    r = r < 0 ? -errno : relay_recv(in->cs.relay_fd, &in->cs.frame);
    facts.elapsed_ms = clock_ms(CLOCK_MONOTONIC) - in->cs.start_ms;
    if (r <= 0) {
        call_relay_lost(&in->cs, r, &facts, &in->end_err);
        in->end_result = -1;
        in->ended = true;
        return -1;
    }
    if (in->cs.frame.type == RELAY_HEADERS) {
        for (const char *k = (const char *)in->cs.frame.data;
             k < (const char *)in->cs.frame.data + in->cs.frame.len; k += strlen(k) + 1)
            in->taken |= strcmp(k, RPC_INPUT_READY_KEY) == 0;
    } else if (in->cs.frame.type == RELAY_MSG) {
        Runjob__V1__InputResponse *resp =
            runjob__v1__input_response__unpack(NULL, in->cs.frame.len, in->cs.frame.data);
        if (resp) {
            in->bytes = resp->bytes;
            protobuf_c_message_free_unpacked(&resp->base, NULL);
        }
    } else if (in->cs.frame.type == RELAY_STATUS || in->cs.frame.type == RELAY_NO) {
        if (in->cs.frame.type == RELAY_NO) {
            relay_refused(c, &in->end_err);
            in->end_result = -1;
        } else {
            in->end_result = relay_status(c, &in->cs.frame, &facts, &in->end_err);
        }
        in->ended = true;
        return -1;
    }
    return 1;
}

/* One message of the call; plucked before returning. false when the call has ended. */
static bool input_message(struct rpc_input *in, const char *id, const void *data, size_t len,
                          unsigned rows, unsigned cols, bool first, bool eof)
{
    Runjob__V1__InputRequest req = RUNJOB__V1__INPUT_REQUEST__INIT;
    Runjob__V1__TerminalSize ts = RUNJOB__V1__TERMINAL_SIZE__INIT;
    grpc_byte_buffer *bb;
    grpc_op ops[2];
    size_t n = 0;
    grpc_event ev;

    if (in->failed)
        return false;
    req.id = (char *)(id ? id : "");
    req.data.data = (uint8_t *)data;
    req.data.len = len;
    req.eof = eof;
    if (rows && cols) {
        ts.rows = rows;
        ts.cols = cols;
        req.terminal_size = &ts;
    }
    if (in->cs.relay_fd >= 0) {
        while (relay_input_read(in, 0) > 0) /* a STATUS that came means the call has ended */
            ;
        if (in->ended || relay_send_message(in->cs.relay_fd, &req.base) < 0)
            in->failed = true;
        return !in->failed;
    }
    bb = pack(&req.base);
    memset(ops, 0, sizeof(ops));
    if (first)
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = bb;
    if (grpc_call_start_batch(in->cs.call, ops, n, &in->tag_send, NULL) != GRPC_CALL_OK) {
        grpc_byte_buffer_destroy(bb);
        in->failed = true;
        return false;
    }
    ev = grpc_completion_queue_pluck(in->cs.cq, &in->tag_send, gpr_inf_future(GPR_CLOCK_REALTIME),
                                     NULL);
    grpc_byte_buffer_destroy(bb);
    if (!ev.success)
        in->failed = true;
    return ev.success;
}

/* Waits for the server's initial metadata: true when they say it took the call. */
static bool input_taken(struct rpc_input *in)
{
    if (in->cs.relay_fd >= 0) {
        while (!in->taken && relay_input_read(in, -1) >= 0)
            ;
        return in->taken;
    }
    call_pluck(&in->cs, &in->cs.tag_first);
    in->cs.first_done = true;
    for (size_t i = 0; i < in->cs.md_initial.count; i++)
        if (grpc_slice_str_cmp(in->cs.md_initial.metadata[i].key, RPC_INPUT_READY_KEY) == 0)
            return true;
    return false;
}

int rpc_client_input_open(struct rpc_client *c, const char *id, unsigned rows, unsigned cols,
                          struct rpc_input **ret, struct rpc_error *err)
{
    struct rpc_input *in = calloc(1, sizeof(*in));
    grpc_op ops[3];

    if (!in) {
        rpc_error_set(err, RPC_RESOURCE_EXHAUSTED, "out of memory");
        return -1;
    }
    if (c->relay_path[0]) {
        char why[200];
        int r = call_relay_open(&in->cs, c, RPC_M_INPUT, NULL, false, why, sizeof(why), err);
        if (r == RELAY_TURNED_AWAY) {
            struct rpc_client *d = go_direct(c, why, err);
            free(in);
            if (!d || rpc_client_input_open(d, id, rows, cols, ret, err) < 0) {
                note_turned_away(c, why, err);
                return -1;
            }
            return 0;
        }
        if (r < 0) {
            free(in);
            return -1;
        }
        goto first;
    }
    call_open(&in->cs, c, RPC_M_INPUT);
    /* The server's initial metadata say it took the call (a refusal is a status alone), and
     * everything that reports the call's end goes in at once. */
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[0].data.recv_initial_metadata.recv_initial_metadata = &in->cs.md_initial;
    if (grpc_call_start_batch(in->cs.call, ops, 1, &in->cs.tag_first, NULL) != GRPC_CALL_OK) {
        in->cs.first_done = in->cs.end_done = true; /* nothing to pluck */
        rpc_client_input_free(in);
        rpc_error_set(err, RPC_INTERNAL, "cannot start the input call");
        return -1;
    }
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_MESSAGE;
    ops[0].data.recv_message.recv_message = &in->reply;
    call_status_op(&in->cs, &ops[1]);
    if (grpc_call_start_batch(in->cs.call, ops, 2, &in->cs.tag_end, NULL) != GRPC_CALL_OK) {
        in->cs.end_done = true; /* the free cancels the call and plucks the first batch */
        rpc_client_input_free(in);
        rpc_error_set(err, RPC_INTERNAL, "cannot start the input call");
        return -1;
    }
first:
    if (!input_message(in, id, NULL, 0, rows, cols, true, false) || !input_taken(in)) {
        struct rpc_error e2;
        uint64_t b;
        if (rpc_client_input_finish(in, false, -1, &b, &e2) < 0 && err)
            *err = e2;
        else
            rpc_error_set(err, RPC_INTERNAL, "the input call ended at once");
        rpc_client_input_free(in);
        return -1;
    }
    *ret = in;
    return 0;
}

int rpc_client_input_send(struct rpc_input *in, const void *data, size_t len, unsigned rows,
                          unsigned cols)
{
    return input_message(in, NULL, data, len, rows, cols, false, false) ? 0 : -1;
}

/* rpc_client_input_finish through an agent, once the last message is sent. */
static int relay_input_finish(struct rpc_input *in, int64_t timeout_ms, uint64_t *ret_bytes,
                              struct rpc_error *err)
{
    int64_t until = clock_ms(CLOCK_MONOTONIC) + timeout_ms;

    if (!in->failed && !in->closed)
        (void)relay_send_bytes(in->cs.relay_fd, RELAY_END, NULL, 0);
    in->closed = true;
    while (!in->ended) {
        int64_t left = timeout_ms < 0 ? -1 : until - clock_ms(CLOCK_MONOTONIC);
        if (timeout_ms >= 0 && left <= 0) { /* the agent cancels the call when we close */
            struct rpc_call_facts facts = {.elapsed_ms =
                                               clock_ms(CLOCK_MONOTONIC) - in->cs.start_ms};
            (void)shutdown(in->cs.relay_fd, SHUT_RDWR);
            rpc_client_describe(&in->cs.c->peer, RPC_CANCELLED, "Cancelled", NULL, &facts,
                                &in->end_err);
            in->end_result = -1;
            in->ended = true;
            break;
        }
        (void)relay_input_read(in, left > INT_MAX ? INT_MAX : (int)left);
    }
    if (in->end_result < 0) {
        if (err)
            *err = in->end_err;
        return -1;
    }
    *ret_bytes = in->bytes;
    return 0;
}

int rpc_client_input_finish(struct rpc_input *in, bool eof, int64_t timeout_ms, uint64_t *ret_bytes,
                            struct rpc_error *err)
{
    Runjob__V1__InputResponse *resp;

    if (eof && !in->closed)
        (void)input_message(in, NULL, NULL, 0, 0, 0, false, true);
    if (in->cs.relay_fd >= 0)
        return relay_input_finish(in, timeout_ms, ret_bytes, err);
    if (!in->failed && !in->closed) {
        grpc_op op;
        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        if (grpc_call_start_batch(in->cs.call, &op, 1, &in->tag_send, NULL) == GRPC_CALL_OK)
            call_pluck(&in->cs, &in->tag_send);
        in->closed = true;
    }
    if (!in->cs.end_done) {
        gpr_timespec until =
            timeout_ms < 0 ? gpr_inf_future(GPR_CLOCK_REALTIME) : deadline_in(timeout_ms);
        grpc_event ev = grpc_completion_queue_pluck(in->cs.cq, &in->cs.tag_end, until, NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT) {
            (void)grpc_call_cancel(in->cs.call, NULL);
            call_pluck(&in->cs, &in->cs.tag_end);
        }
        in->cs.end_done = true;
    }
    if (in->cs.status != GRPC_STATUS_OK) {
        struct rpc_call_facts f = {0};
        call_describe(&in->cs, &f, err);
        return -1;
    }
    *ret_bytes = 0;
    if (in->reply && (resp = (Runjob__V1__InputResponse *)unpack(
                          &runjob__v1__input_response__descriptor, in->reply))) {
        *ret_bytes = resp->bytes;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    return 0;
}

void rpc_client_input_cancel(struct rpc_input *in)
{
    if (in)
        call_cancel(&in->cs);
}

void rpc_client_input_free(struct rpc_input *in)
{
    if (!in)
        return;
    if (in->reply)
        grpc_byte_buffer_destroy(in->reply);
    call_release(&in->cs);
    free(in);
}
