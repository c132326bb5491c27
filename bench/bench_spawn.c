/* bench_spawn: a whole job start (job_start + job_wait of /bin/true: cgroups, namespaces, shim,
 * seccomp, exec, reap, cgroup removal) against the bare isolated spawn floor measured in the
 * same run: clone3 with the same namespaces, / made private, a fresh /proc, exec /bin/true,
 * wait (no shim, no cgroups unless --cgroups). Samples alternate so that machine noise hits
 * both alike. Each job's cgroup is made ahead (job_spare_new), as the server does with its
 * spares, right after the previous job, outside the measured time. Prints p50/p99 of each
 * and the ratio (target: job p50 <= 1.5x floor). No assertions. Needs root.
 *
 *   bench_spawn [-n N] [--cgroups] [--floor-only] [--no-net] [--prespawn N] [--gap-ms MS]
 *     --floor-only  print only the floor's samples, one per line in ms (bench/run.sh)
 *     --prespawn N  the job runner keeps N shims started ahead (job_runner_config)
 *     --cgroups     the floor also makes, joins and removes one v1 cgroup per hierarchy
 *     --gap-ms MS   sleep MS between samples: each start on an idle machine, as a user's is
 *   RUNJOB_BIN      the runjob binary holding the shim (default bin/runjob)
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/job.h"

static const char *const hier[] = {"cpu", "cpuacct", "memory", "blkio", "pids", "freezer"};

struct opts {
    int n, prespawn, gap_ms;
    bool cgroups, floor_only, no_net;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    int i = (int)(p * n);
    return v[i >= n ? n - 1 : i];
}

/* The floor: one isolated spawn. Returns its wall time in ms, or < 0. */
static double floor_once(const struct opts *o, int seq)
{
    char dirs[sizeof(hier) / sizeof(hier[0])][128];
    struct clone_args ca;
    double t0 = now_ms();
    size_t nh = o->cgroups ? sizeof(hier) / sizeof(hier[0]) : 0;
    long pid;
    int st;

    for (size_t i = 0; i < nh; i++) {
        snprintf(dirs[i], sizeof(dirs[i]), "/sys/fs/cgroup/%s/runjob-bench-%d-%d", hier[i],
                 (int)getpid(), seq);
        if (mkdir(dirs[i], 0755) < 0)
            return -1;
    }
    memset(&ca, 0, sizeof(ca));
    ca.flags =
        CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | (o->no_net ? 0 : CLONE_NEWNET);
    ca.exit_signal = SIGCHLD;
    pid = syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid == 0) {
        for (size_t i = 0; i < nh; i++) {
            char p[256];
            snprintf(p, sizeof(p), "%.127s/cgroup.procs", dirs[i]);
            int fd = open(p, O_WRONLY | O_CLOEXEC);
            if (fd < 0 || write(fd, "0", 1) != 1)
                _exit(126);
            close(fd);
        }
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
            _exit(125);
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    if (pid < 0)
        return -1;
    if (waitpid((pid_t)pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return -1;
    for (size_t i = 0; i < nh; i++)
        (void)rmdir(dirs[i]);
    return now_ms() - t0;
}

static void job_id(char *buf, size_t len, int seq)
{
    snprintf(buf, len, "bench%d-%d", (int)getpid(), seq);
}

/* What the server does after each Start, off its path: the next job's cgroup made ahead, in
 * which the pool thread (if any) then readies a shim. NULL if that failed. */
static struct job_spare *reserve_next(struct job_runner *r, int seq)
{
    struct job_spare *jc = NULL;
    char id[64];

    job_id(id, sizeof(id), seq);
    if (job_spare_new(r, &(struct job_spare_spec){.id = id, .uid = 65534, .gid = 65534}, &jc) < 0)
        return NULL;
    return jc;
}

/* One job of id seq, in the cgroup made ahead for it (ahead, taken) if not NULL. */
static double job_once(struct job_runner *r, const struct opts *o, int seq, struct job_spare *ahead)
{
    char id[64], err[256];
    struct job_status s;
    struct job *j;
    double t0 = now_ms();

    job_id(id, sizeof(id), seq);
    struct job_spec spec = {
        .id = id,
        .path = "/bin/true",
        .uid = 65534,
        .gid = 65534,
        .network = o->no_net ? JOB_NET_HOST : JOB_NET_NONE,
        .spare = ahead,
    };
    if (job_start(r, &spec, NULL, NULL, &j, err, sizeof(err)) < 0) {
        fprintf(stderr, "bench_spawn: job_start: %s\n", err);
        return -1;
    }
    job_wait(j);
    double t = now_ms() - t0;
    job_get_status(j, &s);
    job_free(j);
    return s.state == JOB_EXITED && s.exit_code == 0 ? t : -1;
}

int main(int argc, char **argv)
{
    struct opts o = {.n = 200};
    struct job_runner *r = NULL;
    struct job_spare *ahead = NULL;
    const char *bin = getenv("RUNJOB_BIN");
    double *fl, *jb;
    int nf = 0, nj = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            o.n = atoi(argv[++i]);
        else if (strcmp(argv[i], "--cgroups") == 0)
            o.cgroups = true;
        else if (strcmp(argv[i], "--floor-only") == 0)
            o.floor_only = true;
        else if (strcmp(argv[i], "--no-net") == 0)
            o.no_net = true;
        else if (strcmp(argv[i], "--prespawn") == 0 && i + 1 < argc)
            o.prespawn = atoi(argv[++i]);
        else if (strcmp(argv[i], "--gap-ms") == 0 && i + 1 < argc)
            o.gap_ms = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_spawn [-n N] [--cgroups] [--floor-only] [--no-net] "
                            "[--prespawn N] [--gap-ms MS]\n");
            return 2;
        }
    }
    if (o.n < 1)
        o.n = 1;
    if (geteuid() != 0) {
        fprintf(stderr, "bench_spawn: needs root\n");
        return 1;
    }
    fl = calloc((size_t)o.n, sizeof(double));
    jb = calloc((size_t)o.n, sizeof(double));
    if (!o.floor_only) {
        struct job_runner_config cfg = {.shim_exe = bin && *bin ? bin : "bin/runjob",
                                        .prespawn_shims = (unsigned)o.prespawn};
        if (job_runner_new(&cfg, &r) < 0) {
            fprintf(stderr, "bench_spawn: job_runner_new failed\n");
            return 1;
        }
    }
    /* Warm-up: page cache, the first (slow) cgroup moves. */
    for (int i = 0; i < 5; i++) {
        (void)floor_once(&o, -1 - i);
        if (r)
            (void)job_once(r, &o, -1 - i + 1000000, NULL);
    }
    if (r)
        ahead = reserve_next(r, 0);
    for (int i = 0; i < o.n; i++) {
        double t = floor_once(&o, i);
        if (t >= 0)
            fl[nf++] = t;
        if (o.floor_only && t >= 0)
            printf("%.3f\n", t);
        if (o.gap_ms > 0)
            usleep((useconds_t)o.gap_ms * 1000);
        if (r && (t = job_once(r, &o, i, ahead)) >= 0)
            jb[nj++] = t;
        if (r)
            ahead = reserve_next(r, i + 1);
    }
    if (o.floor_only)
        return nf ? 0 : 1;
    job_spare_free(ahead);
    job_runner_free(r);
    if (!nf || !nj) {
        fprintf(stderr, "bench_spawn: no samples (floor %d, job %d)\n", nf, nj);
        return 1;
    }
    qsort(fl, (size_t)nf, sizeof(double), cmp_double);
    qsort(jb, (size_t)nj, sizeof(double), cmp_double);
    printf("floor (clone %s+ /proc + exec%s): p50 %.3f ms  p99 %.3f ms  (%d)\n",
           o.no_net ? "pid,mnt,uts,ipc " : "pid,mnt,net,uts,ipc ", o.cgroups ? " + v1 cgroups" : "",
           pct(fl, nf, 0.5), pct(fl, nf, 0.99), nf);
    printf("job_start+wait /bin/true (prespawn %d):  p50 %.3f ms  p99 %.3f ms  (%d)\n", o.prespawn,
           pct(jb, nj, 0.5), pct(jb, nj, 0.99), nj);
    printf("ratio job/floor: p50 %.2fx  p99 %.2fx  (target p50 <= 1.5x)\n",
           pct(jb, nj, 0.5) / pct(fl, nf, 0.5), pct(jb, nj, 0.99) / pct(fl, nf, 0.99));
    free(fl);
    free(jb);
    return 0;
}
