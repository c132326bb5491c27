/* bench_rpc: client-side figures of `make bench` over one warm channel. Connection settings
 * come from the client's environment variables (RUNJOB_SERVER_HOST, _PORT, _CA_CERT_PATH,
 * _CLIENT_CERT_PATH, _CLIENT_KEY_PATH). Asserts nothing; bench/run.sh computes the ratios.
 *
 *   bench_rpc [-n N] [-g GAP_MS]
 *       Start latency: Start(/bin/true) -> the job's final status arrives on a following Stream.
 *       Prints one latency in ms per line. -g sleeps GAP_MS between starts: each then meets an
 *       idle server, as a user's single start does.
 *   bench_rpc scale [-n N] [-c THREADS] [-l LISTS]
 *       Starts N `/bin/sleep 30` jobs at once from THREADS threads sharing the channel, then
 *       times LISTS List calls. Prints key=value lines: started, failed, start_all_ms, listed,
 *       running, list_p50_ms, list_p99_ms, first_error. */
#include <pthread.h>
#include <stdatomic.h>
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
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One Start + follow to the end; 0 or -1. */
static int run_once(struct rpc_client *c)
{
    Runjob__V1__StartRequest req = RUNJOB__V1__START_REQUEST__INIT;
    Runjob__V1__StreamRequest sreq = RUNJOB__V1__STREAM_REQUEST__INIT;
    Runjob__V1__Job *job = NULL;
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

static int start_latency(struct rpc_client *c, int n, int gap_ms)
{
    /* Warm the channel: connection, TLS handshake and the server's first-job paths. */
    for (int i = 0; i < 5; i++)
        if (run_once(c) < 0)
            return 1;
    for (int i = 0; i < n; i++) {
        double t0 = now_ms();
        if (run_once(c) < 0)
            return 1;
        printf("%.3f\n", now_ms() - t0);
        if (gap_ms > 0)
            usleep((useconds_t)gap_ms * 1000);
    }
    return 0;
}

struct scale {
    struct rpc_client *c;
    int n;
    atomic_int next, started, failed;
    pthread_mutex_t mu;
    char first_error[512];
};

static void *scale_thread(void *arg)
{
    static char *sleep_args[] = {"30"};
    struct scale *s = arg;

    while (atomic_fetch_add(&s->next, 1) < s->n) {
        Runjob__V1__StartRequest req = RUNJOB__V1__START_REQUEST__INIT;
        Runjob__V1__Job *job = NULL;
        struct rpc_error err;

        req.command = "/bin/sleep";
        req.args = sleep_args;
        req.n_args = 1;
        if (rpc_client_start(s->c, &req, &job, &err) < 0) {
            atomic_fetch_add(&s->failed, 1);
            pthread_mutex_lock(&s->mu);
            if (!s->first_error[0])
                snprintf(s->first_error, sizeof(s->first_error), "%s", err.message);
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        atomic_fetch_add(&s->started, 1);
        protobuf_c_message_free_unpacked(&job->base, NULL);
    }
    return NULL;
}

static int scale(struct rpc_client *c, int n, int threads, int lists)
{
    Runjob__V1__ListRequest lreq = RUNJOB__V1__LIST_REQUEST__INIT;
    struct scale s = {.c = c, .n = n};
    pthread_t *tid = calloc((size_t)threads, sizeof(*tid));
    double *lat = calloc((size_t)lists, sizeof(double));
    size_t listed = 0, running = 0;
    struct rpc_error err;
    double t0;
    int nt = 0;

    if (!tid || !lat)
        return 1;
    pthread_mutex_init(&s.mu, NULL);
    t0 = now_ms();
    for (int i = 0; i < threads; i++)
        if (pthread_create(&tid[i], NULL, scale_thread, &s) == 0)
            nt++;
    for (int i = 0; i < nt; i++)
        pthread_join(tid[i], NULL);
    printf("started=%d\nfailed=%d\nstart_all_ms=%.0f\n", atomic_load(&s.started),
           atomic_load(&s.failed), now_ms() - t0);
    for (int i = 0; i < lists; i++) {
        Runjob__V1__ListResponse *resp = NULL;
        double t = now_ms();
        if (rpc_client_list(c, &lreq, &resp, &err) < 0) {
            fprintf(stderr, "bench_rpc: list: %s\n", err.message);
            return 1;
        }
        lat[i] = now_ms() - t;
        listed = resp->n_jobs;
        running = 0;
        for (size_t k = 0; k < resp->n_jobs; k++)
            running += resp->jobs[k]->state == RUNJOB__V1__JOB_STATE__JOB_STATE_RUNNING;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    qsort(lat, (size_t)lists, sizeof(double), cmp_double);
    printf("listed=%zu\nrunning=%zu\nlist_p50_ms=%.3f\nlist_p99_ms=%.3f\nfirst_error=%s\n", listed,
           running, lat[lists / 2], lat[lists * 99 / 100], s.first_error);
    free(tid);
    free(lat);
    return 0;
}

int main(int argc, char **argv)
{
    struct rpc_client_config cfg = {0};
    struct rpc_client *c = NULL;
    struct rpc_error err;
    int n = 500, threads = 50, lists = 20, gap_ms = 0, i = 1, r;
    const char *mode = "start";

    if (argc > 1 && argv[1][0] != '-')
        mode = argv[i++];
    for (; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "-l") == 0 && i + 1 < argc)
            lists = atoi(argv[++i]);
        else if (strcmp(argv[i], "-g") == 0 && i + 1 < argc)
            gap_ms = atoi(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: bench_rpc [start|scale] [-n N] [-g GAP_MS] [-c THREADS] [-l LISTS]\n");
            return 2;
        }
    }
    if (n < 1 || threads < 1 || lists < 1 || gap_ms < 0) {
        fprintf(stderr, "bench_rpc: -n, -c and -l want positive numbers, -g one >= 0\n");
        return 2;
    }
    cfg.host = env_or("RUNJOB_SERVER_HOST", "localhost");
    cfg.port = atoi(env_or("RUNJOB_SERVER_PORT", "8080"));
    cfg.ca_path = env_or("RUNJOB_CA_CERT_PATH", "certs/root-ca-cert.pem");
    cfg.cert_path = env_or("RUNJOB_CLIENT_CERT_PATH", "certs/client-cert.pem");
    cfg.key_path = env_or("RUNJOB_CLIENT_KEY_PATH", "certs/client-key.pem");
    cfg.deadline_ms = 120000; /* 1000 concurrent starts queue behind each other */
    if (rpc_client_open(&cfg, &c, &err) < 0) {
        fprintf(stderr, "bench_rpc: %s\n", err.message);
        return 1;
    }
    if (strcmp(mode, "start") == 0) {
        r = start_latency(c, n, gap_ms);
    } else if (strcmp(mode, "scale") == 0) {
        r = scale(c, n, threads, lists);
    } else {
        fprintf(stderr, "bench_rpc: unknown mode '%s'\n", mode);
        r = 2;
    }
    rpc_client_free(c);
    return r;
}
