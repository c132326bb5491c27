/* The server's metrics in the Prometheus text format: the manager's (jobs, Starts, readers),
 * the calls by method and code, connections the accept guard shed, and the process's open
 * files, resident memory and threads. Written to --metrics-file (node_exporter's textfile
 * collector reads it: no port of its own to secure). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accept.h"
#include "cleanup.h"
#include "log.h"
#include "proc.h"
#include "server-internal.h"
#include "strbuf.h"

/* Calls by method (ours, then Health's, then unknown ones) and gRPC code. */
static atomic_uint_fast64_t calls[SERVER_METHODS + 1][RPC_UNAUTHENTICATED + 1];

static const char *method_name(int i)
{
    if (i < RPC_M_COUNT)
        return rpc_method_name((enum rpc_method)i);
    if (i < SERVER_METHODS)
        return server_health_name(i - RPC_M_COUNT);
    return "unknown";
}

void server_count_call(const char *method, int code)
{
    int i = 0;

    while (i < SERVER_METHODS && strcmp(method_name(i), method) != 0)
        i++;
    if (code < 0 || code > RPC_UNAUTHENTICATED)
        code = RPC_UNKNOWN;
    atomic_fetch_add(&calls[i][code], 1);
}

static unsigned count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    unsigned n = 0;

    if (!d)
        return 0;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void write_process(struct strbuf *b)
{
    _cleanup_free_ char *statm = NULL;
    unsigned long size = 0, resident = 0;

    if (proc_read_file_at(AT_FDCWD, "/proc/self/statm", &statm) == 0)
        (void)sscanf(statm, "%lu %lu", &size, &resident);
    /* Counted before the listing's own fd is opened: one less than during it. */
    (void)strbuf_printf(b,
                        "# HELP process_open_fds Open file descriptors.\n"
                        "# TYPE process_open_fds gauge\n"
                        "process_open_fds %u\n"
                        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                        "# TYPE process_resident_memory_bytes gauge\n"
                        "process_resident_memory_bytes %lu\n"
                        "# HELP process_threads Threads of the server.\n"
                        "# TYPE process_threads gauge\n"
                        "process_threads %u\n",
                        count_entries("/proc/self/fd") - 1, resident * (unsigned long)getpagesize(),
                        count_entries("/proc/self/task"));
}

int server_write_metrics(struct server *s, struct strbuf *b)
{
    int r = jm_write_metrics(s->jm, b);

    (void)strbuf_puts(b, "# HELP runjob_calls_total Calls answered, by method and gRPC code.\n"
                         "# TYPE runjob_calls_total counter\n");
    for (int i = 0; i <= SERVER_METHODS; i++)
        for (int c = 0; c <= RPC_UNAUTHENTICATED; c++) {
            uint64_t n = atomic_load(&calls[i][c]);
            if (n)
                (void)strbuf_printf(b, "runjob_calls_total{method=\"%s\",code=\"%s\"} %llu\n",
                                    method_name(i), rpc_code_name(c), (unsigned long long)n);
        }
    (void)strbuf_printf(b,
                        "# HELP runjob_connections_shed_total Connections closed unserved: "
                        "the fds kept for jobs and streams were reached.\n"
                        "# TYPE runjob_connections_shed_total counter\n"
                        "runjob_connections_shed_total %llu\n",
                        (unsigned long long)accept_guard_shed());
    write_process(b);
    return r < 0 || strbuf_is_failed(b) ? -ENOMEM : 0;
}

void server_handle_metrics(struct ucall *uc)
{
    Runjob__V1__MetricsResponse resp = RUNJOB__V1__METRICS_RESPONSE__INIT;
    _cleanup_(strbuf_freep) struct strbuf *b = NULL;

    if (!uc->ci.is_admin) {
        server_finishf(uc, RPC_PERMISSION_DENIED, "the server's metrics are for administrators");
        return;
    }
    if (strbuf_new(&b) < 0 || server_write_metrics(uc->s, b) < 0) {
        server_finishf(uc, RPC_RESOURCE_EXHAUSTED, "server out of memory");
        return;
    }
    resp.text = (char *)strbuf_str(b);
    server_finish(uc, RPC_OK, NULL, &resp.base); /* packs now: the buffer can go */
}

int server_write_metrics_file(struct server *s)
{
    _cleanup_(strbuf_freep) struct strbuf *b = NULL;
    char tmp[4096];
    int fd, r;

    if (!s->cfg.metrics_path)
        return 0;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", s->cfg.metrics_path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    r = strbuf_new(&b);
    if (r == 0)
        r = server_write_metrics(s, b);
    if (r < 0)
        return r;
    /* Whole or not at all: the collector may read at any moment. */
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -errno;
    r = proc_write_fd(fd, strbuf_str(b), strbuf_len(b));
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, s->cfg.metrics_path) < 0)
        r = -errno;
    if (r < 0)
        (void)unlink(tmp);
    return r;
}
