#pragma once
/* The JobManager service: gRPC (C core, completion-queue driven) over the job manager
 * (core/manager.h). Transport only: request slots, completion queues, decoding and checking,
 * the proto mapping, the caller's identity (the client certificate's CN) and the audit line.
 * ARCHITECTURE.md "Threads and wake-ups in the server":
 *   - 2 completion-queue threads take every RPC event;
 *   - a Start is answered from the manager's start thread once the job runs;
 *   - Stop replies from the manager's callback; Stream sends from the CQ threads and from
 *     output wake-ups, one SEND_MESSAGE in flight per stream, no thread per stream. */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "manager.h"
#include "rpc.h"

struct server;

#define SERVER_METRICS_PERIOD_MS 15000
/* How often the running server hands malloc's free pages back to the kernel. */
#define SERVER_HEAP_TRIM_PERIOD_MS 30000

struct server_config {
    const char *host;   /* "localhost", "127.0.0.1", "::1", "0.0.0.0", a name */
    int port;           /* 0 = the kernel picks one (see server_port) */
    const char *ca_pem; /* client CA bundle (PEM text, not a path) */
    const char *cert_pem;
    const char *key_pem;
    struct rpc_policy policy;
    struct jm *manager;            /* the jobs served; the caller's, freed after the server */
    int audit_fd;                  /* audit lines go here (one write(2) each) */
    const char *audit_path;        /* the file behind audit_fd, reopened on SIGHUP; NULL = none */
    const char *metrics_path;      /* rewritten every metrics_interval_ms; NULL = none */
    int64_t metrics_interval_ms;   /* 0 = SERVER_METRICS_PERIOD_MS */
    int64_t heap_trim_interval_ms; /* 0 = SERVER_HEAP_TRIM_PERIOD_MS; < 0 = never */
    bool audit_json;
};

/* Initialises TLS (tls_init) and gRPC, binds and starts serving cfg->manager's jobs.
 * 0, or -errno with errbuf holding what failed in plain words ("listen on 127.0.0.1:8080").
 * Blocks SIGTERM, SIGINT and SIGPIPE handling is the caller's (see server_run). */
int server_new(const struct server_config *cfg, struct server **ret, char *errbuf, size_t errlen);
/* true when binding host:port (every address it resolves to) fails with EADDRINUSE: asked
 * before anything else is set up, so that a second server says it in one line. gRPC's own bind
 * failure says no more than that it failed. */
bool server_port_is_taken(const char *host, int port);
/* The port actually bound. */
int server_port(struct server *s);
/* Serves until sigfd (a signalfd for SIGTERM, SIGINT and SIGHUP) gives SIGTERM or SIGINT; on
 * SIGHUP reopens cfg->audit_path (logrotate moved it). Then shuts down: stops
 * accepting calls, shuts the manager down (every running job stopped: SIGTERM, then the
 * grace), lets streams end with the final status, and returns 0. */
int server_run(struct server *s, int sigfd);
/* Frees the server (not the manager). NULL-safe. */
void server_free(struct server *s);
