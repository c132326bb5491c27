/* Start latency over a warm channel: Start(/bin/true) -> the job's final status arrives on a
 * following Stream. Prints one latency in ms per line (bench/run.sh computes p50/p99 and the
 * ratio against bench_spawn's floor measured in the same run). Connection settings come from
 * the client's environment variables (RUNJOB_SERVER_HOST, _PORT, _CA_CERT_PATH,
 * _CLIENT_CERT_PATH, _CLIENT_KEY_PATH). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/rpc.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

/* One Start + follow to the end; 0 or -1. */
static int run_once(struct rpc_client *c)
{
    Jobmanager__V1__StartRequest req = JOBMANAGER__V1__START_REQUEST__INIT;
    Jobmanager__V1__StreamRequest sreq = JOBMANAGER__V1__STREAM_REQUEST__INIT;
    Jobmanager__V1__Job *job = NULL;
    struct rpc_stream *s = NULL;
    struct rpc_error err;
    struct rpc_chunk chunk;
    int r, final = 0;

    req.command = "/bin/true";
    if (rpc_client_start(c, &req, &job, &err) < 0) {
        fprintf(stderr, "bench_rpc: start: %s\n", err.message);
        return -1;
    }
    sreq.id = job->id;
    if (rpc_client_stream_open(c, &sreq, &s, &err) < 0) {
        fprintf(stderr, "bench_rpc: stream: %s\n", err.message);
        protobuf_c_message_free_unpacked(&job->base, NULL);
        return -1;
    }
    while ((r = rpc_client_stream_next(s, &chunk, &err)) > 0)
        if (chunk.final_status)
            final = 1;
    rpc_client_stream_free(s);
    protobuf_c_message_free_unpacked(&job->base, NULL);
    if (r < 0 || !final) {
        fprintf(stderr, "bench_rpc: stream ended without a final status: %s\n",
                r < 0 ? err.message : "(none)");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct rpc_client_config cfg = {0};
    struct rpc_client *c = NULL;
    struct rpc_error err;
    int n = 500;

    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            n = atoi(argv[++i]);
    cfg.host = env_or("RUNJOB_SERVER_HOST", "localhost");
    cfg.port = atoi(env_or("RUNJOB_SERVER_PORT", "8080"));
    cfg.ca_path = env_or("RUNJOB_CA_CERT_PATH", "certs/root-ca-cert.pem");
    cfg.cert_path = env_or("RUNJOB_CLIENT_CERT_PATH", "certs/client-cert.pem");
    cfg.key_path = env_or("RUNJOB_CLIENT_KEY_PATH", "certs/client-key.pem");
    if (rpc_client_open(&cfg, &c, &err) < 0) {
        fprintf(stderr, "bench_rpc: %s\n", err.message);
        return 1;
    }
    /* Warm the channel: connection, TLS handshake and the server's first-job paths. */
    for (int i = 0; i < 5; i++)
        if (run_once(c) < 0)
            return 1;
    for (int i = 0; i < n; i++) {
        double t0 = now_ms();
        if (run_once(c) < 0)
            return 1;
        printf("%.3f\n", now_ms() - t0);
    }
    rpc_client_free(c);
    return 0;
}
