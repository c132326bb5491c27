#pragma once
/* The JobManager service: gRPC (C core, completion-queue driven) -> jobtable / job / outlog.
 * ARCHITECTURE.md "Threads and wake-ups in the server":
 *   - 2 completion-queue threads take every RPC event;
 *   - job_start (blocking, ~15 ms) runs on a small pool of start threads, which live until every
 *     job has been stopped (a job's shim is tied to its starting thread by PR_SET_PDEATHSIG);
 *   - Stop replies from job_stop_async's callback; Stream sends from the CQ threads and from
 *     outlog wake-ups, one SEND_MESSAGE in flight per stream, no thread per stream.
 * Every RPC leaves one audit line. */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "rpc.h"

struct server;

struct server_config {
    const char *host;   /* "localhost", "127.0.0.1", "::1", "0.0.0.0", a name */
    int port;           /* 0 = the kernel picks one (see server_port) */
    const char *ca_pem; /* client CA bundle (PEM text, not a path) */
    const char *cert_pem;
    const char *key_pem;
    struct rpc_policy policy;
    const char *state_dir;
    const char *const *admin_cns; /* NULL-terminated */
    uid_t job_uid;
    gid_t job_gid;
    uint64_t max_output_bytes;
    unsigned max_running_per_user;
    int audit_fd; /* audit lines go here (one write(2) each) */
    bool audit_json;
};

/* Initialises TLS (tls_init) and gRPC, probes cgroups, loads the state directory (jobs that
 * were running become LOST and their cgroups are removed), binds and starts serving.
 * 0, or -errno with errbuf holding what failed in plain words ("listen on 127.0.0.1:8080").
 * Blocks SIGTERM, SIGINT and SIGPIPE handling is the caller's (see server_run). */
int server_new(const struct server_config *cfg, struct server **ret, char *errbuf, size_t errlen);
/* The port actually bound. */
int server_port(struct server *s);
/* Serves until sigfd (a signalfd for SIGTERM/SIGINT) is readable, then shuts down: stops
 * accepting calls, stops every running job (SIGTERM, then the default grace), lets streams end
 * with the final status, and returns 0. Job records are persisted as they change. */
int server_run(struct server *s, int sigfd);
/* Frees everything (kills what still runs). NULL-safe. */
void server_free(struct server *s);
