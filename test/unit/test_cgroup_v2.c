/* core/cgroup against a fake cgroupfs (test_cgroup.h): the v2 backend's path and value
 * translation, where the server's own cgroup sits, and killing, usage and cleanup. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/cgroup.h"
#include "core/cleanup.h"
#include "test_cgroup.h"

/* base (top) with controllers, and the server's own cgroup srv.slice/runjob.service holding
 * a process. */
static void v2_layout(const char *top_subtree)
{
    int dfd = open(F.base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    put(dfd, "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
    put(dfd, "cgroup.subtree_control", top_subtree);
    put(dfd, "cgroup.procs", "1\n");
    close(dfd);
    mkdirs("srv.slice");
    dfd = open(F.base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int s = openat(dfd, "srv.slice", O_RDONLY | O_DIRECTORY);
    put(s, "cgroup.controllers", "cpu io memory pids\n");
    put(s, "cgroup.subtree_control", "cpu io memory pids\n");
    put(s, "cgroup.procs", "");
    close(s);
    close(dfd);
    mkdirs("srv.slice/runjob.service");
    dfd = open(F.base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    s = openat(dfd, "srv.slice/runjob.service", O_RDONLY | O_DIRECTORY);
    put(s, "cgroup.controllers", "cpu io memory pids\n");
    put(s, "cgroup.subtree_control", "");
    put(s, "cgroup.procs", "4321\n");
    close(s);
    close(dfd);
}

Test(cg, v2_default_root_moves_server_into_leaf)
{
    v2_layout("cpu io memory pids\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m =
        new_manager(CG_V2, NULL, "/srv.slice/runjob.service");
    cr_assert_eq(cg_manager_mode(m), CG_V2);
    cr_assert_str_eq(cg_mode_name(CG_V2), "v2");
    assert_file("srv.slice/runjob.service/server/cgroup.procs", "4321");
    assert_file("srv.slice/runjob.service/cgroup.subtree_control", "+cpu +memory +io +pids");
    assert_file("srv.slice/runjob.service/runjob/cgroup.subtree_control", "+cpu +memory +io +pids");
    assert_file("cgroup.subtree_control", "cpu io memory pids\n"); /* had them: untouched */
    assert_file("srv.slice/cgroup.subtree_control", "cpu io memory pids\n");
    cr_assert_not(exists("srv.slice/runjob.service/runjob/server"));

    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    cr_assert(exists("srv.slice/runjob.service/runjob/job1/cpu.max"));
}

Test(cg, v2_restart_from_server_leaf_does_not_nest)
{
    v2_layout("cpu io memory pids\n");
    mkdirs("srv.slice/runjob.service/server");
    write_file("srv.slice/runjob.service/cgroup.procs", ""); /* moved there last time */
    _cleanup_(cg_manager_freep) struct cg_manager *m =
        new_manager(CG_V2, NULL, "/srv.slice/runjob.service/server");
    cr_assert(exists("srv.slice/runjob.service/runjob"));
    cr_assert_not(exists("srv.slice/runjob.service/server/runjob"));
    cr_assert_not(exists("srv.slice/runjob.service/server/server"));
}

Test(cg, v2_server_in_root_cgroup_enables_missing_only)
{
    v2_layout("cpu io\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, NULL, "/");
    /* the root cgroup may hold processes: no leaf there */
    cr_assert_not(exists("server"));
    assert_file("cgroup.subtree_control", "+memory +pids");
    assert_file("runjob/cgroup.subtree_control", "+cpu +memory +io +pids");
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "j", NULL, &cg), 0);
    cr_assert(exists("runjob/j"));
}

Test(cg, v2_cgroupns_top_is_not_the_real_root)
{
    v2_layout("");
    int dfd = open(F.base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    put(dfd, "cgroup.type", "domain\n"); /* a container's namespace root */
    close(dfd);
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, NULL, "/");
    assert_file("server/cgroup.procs", "1");
    assert_file("cgroup.subtree_control", "+cpu +memory +io +pids");
    cr_assert(exists("runjob/cgroup.procs"));
}

Test(cg, v2_root_override)
{
    v2_layout("cpu io memory pids\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m =
        new_manager(CG_V2, "/jobs/test", "/srv.slice/runjob.service");
    cr_assert_not(exists("srv.slice/runjob.service/server"), "server's cgroup not in the path");
    assert_file("jobs/cgroup.subtree_control", "+cpu +memory +io +pids");
    assert_file("jobs/test/cgroup.subtree_control", "+cpu +memory +io +pids");
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "j", NULL, &cg), 0);
    cr_assert(exists("jobs/test/j/cgroup.procs"));
}

Test(cg, v2_limits_translate)
{
    v2_layout("cpu io memory pids\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", &full_limits, &cg), 0);
    assert_file("r/job1/cpu.max", "50000 100000");
    assert_file("r/job1/memory.max", "67108864");
    assert_file("r/job1/memory.swap.max", "0");
    assert_file("r/job1/pids.max", "32");
    _cleanup_free_ char *io = drain("r/job1/io.max");
    cr_assert_str_eq(io, "8:0 riops=100 wiops=200 rbps=1000000 wbps=2000000\n"
                         "253:0 riops=100 wiops=200 rbps=1000000 wbps=2000000\n"
                         "254:0 riops=100 wiops=200 rbps=1000000 wbps=2000000\n");
}

/* Made ahead without limits: swap is off from the start (every job's default), nothing else
 * is written until cg_set_limits writes the job's, which then read as cg_create's would. */
Test(cg, v2_limits_set_later_equal_limits_at_create)
{
    static const char *const files[] = {"cpu.max", "memory.max", "memory.swap.max", "pids.max"};
    v2_layout("cpu io memory pids\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    _cleanup_(cg_freep) struct cg *at = NULL;
    _cleanup_(cg_freep) struct cg *ahead = NULL;
    char pa[128], pb[128];

    cr_assert_eq(cg_create(m, "at", &full_limits, &at), 0);
    cr_assert_eq(cg_create(m, "ahead", NULL, &ahead), 0);
    assert_file("r/ahead/memory.swap.max", "0");
    assert_file("r/ahead/cpu.max", "max 100000\n");
    assert_file("r/ahead/memory.max", "max\n");
    assert_file("r/ahead/pids.max", "max\n");
    _cleanup_free_ char *none = drain("r/ahead/io.max");
    cr_expect_str_eq(none, "");
    cr_assert_geq(cg_get_dirfd(ahead), 0, "ready for CLONE_INTO_CGROUP");

    cr_assert_eq(cg_set_limits(ahead, &full_limits), 0);
    for (size_t i = 0; i < ELEMENTSOF(files); i++) {
        snprintf(pa, sizeof(pa), "r/at/%s", files[i]);
        snprintf(pb, sizeof(pb), "r/ahead/%s", files[i]);
        _cleanup_free_ char *a = slurp(pa);
        _cleanup_free_ char *b = slurp(pb);
        cr_expect_str_eq(b, a, "%s", files[i]);
    }
    _cleanup_free_ char *ioa = drain("r/at/io.max");
    _cleanup_free_ char *iob = drain("r/ahead/io.max");
    cr_expect_str_eq(iob, ioa);
    cr_expect_neq(ioa[0], '\0');
}

/* A cgroup made with from and changed to to reads, in every file, as one made with to (the
 * fake folds the io.max writes as the kernel applies them); swap stays off throughout. */
Test(cg, v2_changed_limits_equal_limits_at_create)
{
    v2_layout("cpu io memory pids\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    for (size_t k = 0; k < ELEMENTSOF(cg_limit_pairs); k++) {
        _cleanup_(cg_freep) struct cg *fresh = NULL;
        _cleanup_(cg_freep) struct cg *changed = NULL;
        char idf[16], idc[16], pf[32], pc[32];
        snprintf(idf, sizeof(idf), "fresh%zu", k);
        snprintf(idc, sizeof(idc), "changed%zu", k);
        cr_assert_eq(cg_create(m, idf, &cg_limit_pairs[k].to, &fresh), 0);
        cr_assert_eq(cg_create(m, idc, &cg_limit_pairs[k].from, &changed), 0);
        cr_assert_eq(cg_change_limits(changed, &cg_limit_pairs[k].from, &cg_limit_pairs[k].to), 0,
                     "pair %zu", k);
        snprintf(pf, sizeof(pf), "r/%s", idf);
        snprintf(pc, sizeof(pc), "r/%s", idc);
        _cleanup_free_ char *a = kernel_view(pf);
        _cleanup_free_ char *b = kernel_view(pc);
        cr_expect_str_eq(b, a, "pair %zu", k);
        cr_expect_not_null(strstr(b, "memory.swap.max=0\n"), "pair %zu", k);
    }
}

/* Only what differs is written: io.max gets only the changed keys, key=max to lift one. */
Test(cg, v2_change_writes_only_what_differs)
{
    v2_layout("cpu io memory pids\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    const struct limits lo = LIMITS_LO;
    cr_assert_eq(cg_create(m, "j", &lo, &cg), 0);
    free(drain("r/j/io.max"));
    static const char *const marked[] = {"r/j/cpu.max", "r/j/memory.max", "r/j/memory.swap.max",
                                         "r/j/pids.max"};
    for (size_t i = 0; i < ELEMENTSOF(marked); i++)
        write_file(marked[i], "marker");

    cr_assert_eq(cg_change_limits(cg, &lo, &lo), 0);
    for (size_t i = 0; i < ELEMENTSOF(marked); i++)
        assert_file(marked[i], "marker");
    _cleanup_free_ char *none = drain("r/j/io.max");
    cr_expect_str_eq(none, "");

    struct limits to = lo;
    to.cpu_millis = 0;
    to.io_riops = 0;
    to.io_wbps = 7;
    cr_assert_eq(cg_change_limits(cg, &lo, &to), 0);
    assert_file("r/j/cpu.max", "max 100000");
    assert_file("r/j/memory.max", "marker");
    assert_file("r/j/memory.swap.max", "marker");
    assert_file("r/j/pids.max", "marker");
    _cleanup_free_ char *io = drain("r/j/io.max");
    cr_expect_str_eq(io, "8:0 riops=max wbps=7\n253:0 riops=max wbps=7\n254:0 riops=max wbps=7\n");
}

Test(cg, v2_partial_limits)
{
    v2_layout("cpu io memory pids\n");
    F.no_swap_max = true; /* no swap accounting */
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    struct limits lim = {.cpu_millis = 1500, .io_wbps = 42};
    cr_assert_eq(cg_create(m, "job1", &lim, &cg), 0);
    assert_file("r/job1/cpu.max", "150000 100000");
    assert_file("r/job1/memory.max", "max\n");
    assert_file("r/job1/pids.max", "max\n");
    _cleanup_free_ char *io = drain("r/job1/io.max");
    cr_assert_str_eq(io, "8:0 wbps=42\n253:0 wbps=42\n254:0 wbps=42\n");
}

Test(cg, v2_dirfd_and_attach)
{
    v2_layout("cpu io memory pids\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    int fd = cg_get_dirfd(cg);
    cr_assert_geq(fd, 0);
    cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    struct stat a, b;
    cr_assert_eq(fstat(fd, &a), 0);
    char path[256];
    snprintf(path, sizeof(path), "%s/r/job1", F.base);
    cr_assert_eq(stat(path, &b), 0);
    cr_assert(S_ISDIR(a.st_mode) && a.st_ino == b.st_ino && a.st_dev == b.st_dev);
    cr_assert_eq(cg_attach(cg, 777), 0);
    assert_file("r/job1/cgroup.procs", "777");
    /* One hierarchy: a shim cannot stay out of the memory controller alone. */
    cr_expect_not(cg_memory_apart(m));
    cr_expect_eq(cg_attach_apart(cg, 777), -EOPNOTSUPP);
    cr_expect_eq(cg_open_memory_procs(cg), -EOPNOTSUPP);
}

Test(cg, v2_kill_writes_cgroup_kill)
{
    v2_layout("cpu io memory pids\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    cr_assert_eq(cg_kill(cg, 50), 0);
    assert_file("r/job1/cgroup.kill", ""); /* not populated: nothing written */
    write_file("r/job1/cgroup.events", "populated 1\nfrozen 0\n");
    cr_assert_eq(cg_is_populated(cg), 1);
    cr_assert_eq(cg_kill(cg, 50), -ETIMEDOUT);
    assert_file("r/job1/cgroup.kill", "1");
    write_file("r/job1/cgroup.events", "populated 0\nfrozen 0\n");
    cr_assert_eq(cg_destroy(cg, 50), 0);
    cr_assert_not(exists("r/job1"));
    cr_assert_eq(cg_get_dirfd(cg), -EBADF, "destroyed");
    cr_assert_eq(cg_destroy(cg, 50), 0, "idempotent");
}

Test(cg, v2_kill_fallback_freeze_kill_thaw)
{
    v2_layout("cpu io memory pids\n");
    F.no_kill = true; /* kernel < 5.14 */
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    pid_t child = spawn_sleeper();
    char pid[16];
    snprintf(pid, sizeof(pid), "%d\n", child);
    write_file("r/job1/cgroup.procs", pid);
    write_file("r/job1/cgroup.events", "populated 1\nfrozen 1\n");
    cr_assert_eq(cg_kill(cg, 50), -ETIMEDOUT);
    int st;
    cr_assert_eq(waitpid(child, &st, 0), child);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_file("r/job1/cgroup.freeze", "0"); /* thawed after the kill */
    cr_assert_not(exists("r/job1/cgroup.kill"));
}

Test(cg, v2_usage)
{
    v2_layout("cpu io memory pids\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    write_file("r/job1/cpu.stat", "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n");
    write_file("r/job1/memory.peak", "8388608\n");
    write_file("r/job1/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
    struct cg_usage u;
    cr_assert_eq(cg_read_usage(cg, &u), 0);
    cr_assert_eq(u.cpu_usec, 123456);
    cr_assert_eq(u.memory_peak_bytes, 8388608);
    cr_assert(u.oom_killed);
    write_file("r/job1/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n");
    cr_assert_eq(cg_read_usage(cg, &u), 0);
    cr_assert_not(u.oom_killed, "'oom 1' alone is not a kill");
}

Test(cg, v2_usage_without_memory_peak_tracks_current)
{
    v2_layout("cpu io memory pids\n");
    F.no_peak = true; /* kernel < 5.19 */
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    struct cg_usage u;
    write_file("r/job1/memory.current", "100\n");
    cr_assert_eq(cg_read_usage(cg, &u), 0);
    cr_assert_eq(u.memory_peak_bytes, 100);
    write_file("r/job1/memory.current", "50\n");
    cr_assert_eq(cg_read_usage(cg, &u), 0);
    cr_assert_eq(u.memory_peak_bytes, 100);
    write_file("r/job1/memory.current", "300\n");
    cr_assert_eq(cg_read_usage(cg, &u), 0);
    cr_assert_eq(u.memory_peak_bytes, 300);
}

Test(cg, v2_stale_cleanup)
{
    v2_layout("cpu io memory pids\n");
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V2, "/r", NULL);
    struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "old", NULL, &cg), 0);
    cg_free(cg);
    cr_assert_eq(cg_cleanup_stale(m, "old"), 1);
    cr_assert_not(exists("r/old"));
    cr_assert_eq(cg_cleanup_stale(m, "old"), 0);
}
