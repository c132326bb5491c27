/* core/cgroup against a fake cgroupfs (test_cgroup.h): probing, errors and the v1 backend's
 * path and value translation. The v2 backend is in test_cgroup_v2.c. */
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

/* ---- probe and errors -------------------------------------------------------------------- */

Test(cg, v1_default_root_in_every_hierarchy)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    cr_assert_eq(cg_manager_mode(m), CG_V1);
    cr_assert_str_eq(cg_mode_name(cg_manager_mode(m)), "v1");
    cr_assert(exists("cpu/runjob"));
    cr_assert(exists("cpuacct/runjob"));
    cr_assert(exists("memory/runjob"));
    cr_assert(exists("blkio/runjob"));
    cr_assert(exists("pids/runjob"));
    cr_assert(exists("freezer/runjob"));
}

Test(cg, v1_root_override_nested)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, "/a/b/", NULL);
    struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "j1", NULL, &cg), 0);
    cr_assert(exists("memory/a/b/j1/memory.limit_in_bytes"));
    cr_assert(exists("freezer/a/b/j1/freezer.state"));
    cr_assert_eq(cg_destroy(cg, 100), 0);
    cr_assert_not(exists("memory/a/b/j1"));
    cr_assert(exists("memory/a/b"), "the root is never removed");
    cg_free(cg);
}

Test(cg, v1_missing_hierarchy_is_named)
{
    v1_layout();
    char path[256];
    snprintf(path, sizeof(path), "%s/blkio", F.base);
    rmdir(path);
    struct cg_config cfg = {.base = F.base, .mode = CG_V1, .sys_block = F.block};
    struct cg_manager *m = NULL;
    char err[256] = "";
    cr_assert_eq(cg_manager_new(&cfg, &m, err, sizeof(err)), -ENOTSUP);
    cr_assert_null(m);
    cr_assert_not_null(strstr(err, "blkio"), "%s", err);
    cr_assert_null(strstr(err, "memory"), "%s", err);
}

Test(cg, probe_of_plain_dir_finds_nothing)
{
    v1_layout(); /* directories, but not cgroup mounts: the real probe checks statfs */
    struct cg_config cfg = {.base = F.base, .sys_block = F.block};
    struct cg_manager *m = NULL;
    char err[256] = "";
    cr_assert_eq(cg_manager_new(&cfg, &m, err, sizeof(err)), -ENOTSUP);
    cr_assert_not_null(strstr(err, "no cgroup v2"), "%s", err);
    cr_assert_not_null(strstr(err, "cpu, cpuacct, memory, blkio, pids, freezer"), "%s", err);
    cr_assert_not(exists("memory/runjob"), "nothing created on failure");
}

Test(cg, v2_missing_controller_is_named)
{
    int dfd = open(F.base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    put(dfd, "cgroup.controllers", "cpu memory pids\n");
    close(dfd);
    struct cg_config cfg = {.base = F.base, .mode = CG_V2, .sys_block = F.block};
    struct cg_manager *m = NULL;
    char err[256] = "";
    cr_assert_eq(cg_manager_new(&cfg, &m, err, sizeof(err)), -ENOTSUP);
    cr_assert_not_null(strstr(err, "lacks io"), "%s", err);
}

Test(cg, ids_are_checked)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    const char *bad[] = {"", ".", "..", "../x", "a/b", "a b", "x\n", "ä"};
    struct cg *cg = NULL;
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        cr_assert_not(cg_id_is_valid(bad[i]), "'%s'", bad[i]);
        cr_assert_eq(cg_create(m, bad[i], NULL, &cg), -EINVAL);
        cr_assert_eq(cg_cleanup_stale(m, bad[i]), -EINVAL);
    }
    char longid[130];
    memset(longid, 'a', 129);
    longid[129] = '\0';
    cr_assert_not(cg_id_is_valid(longid));
    longid[128] = '\0';
    cr_assert(cg_id_is_valid(longid));
    cr_assert(cg_id_is_valid("3f2b9c1e-0d4a-4e7b-9a51-6c0f2e8d7b11"));
    cr_assert(cg_id_is_valid("job_1.x"));
    cr_assert_null(cg);
}

Test(cg, io_device_list_checked)
{
    v1_layout();
    const char *devs[] = {"8:0", "nope", NULL};
    struct cg_config cfg = {
        .base = F.base, .mode = CG_V1, .io_devices = devs, .test_hooks = &hooks};
    struct cg_manager *m = NULL;
    char err[256] = "";
    cr_assert_eq(cg_manager_new(&cfg, &m, err, sizeof(err)), -EINVAL);
    cr_assert_not_null(strstr(err, "'nope'"), "%s", err);
}

/* ---- v1 ---------------------------------------------------------------------------------- */

Test(cg, v1_limits_translate)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", &full_limits, &cg), 0);
    cr_assert_eq(cg_get_dirfd(cg), -EOPNOTSUPP);
    assert_file("cpu/runjob/job1/cpu.cfs_period_us", "100000");
    assert_file("cpu/runjob/job1/cpu.cfs_quota_us", "50000");
    assert_file("memory/runjob/job1/memory.limit_in_bytes", "67108864");
    assert_file("memory/runjob/job1/memory.memsw.limit_in_bytes", "67108864");
    assert_file("pids/runjob/job1/pids.max", "32");
    /* every real disk, sorted; loop, ram, zram and the dev-less entry skipped */
    _cleanup_free_ char *ri = drain("blkio/runjob/job1/blkio.throttle.read_iops_device");
    cr_assert_str_eq(ri, "8:0 100\n253:0 100\n254:0 100\n");
    _cleanup_free_ char *wi = drain("blkio/runjob/job1/blkio.throttle.write_iops_device");
    cr_assert_str_eq(wi, "8:0 200\n253:0 200\n254:0 200\n");
    _cleanup_free_ char *rb = drain("blkio/runjob/job1/blkio.throttle.read_bps_device");
    cr_assert_str_eq(rb, "8:0 1000000\n253:0 1000000\n254:0 1000000\n");
    _cleanup_free_ char *wb = drain("blkio/runjob/job1/blkio.throttle.write_bps_device");
    cr_assert_str_eq(wb, "8:0 2000000\n253:0 2000000\n254:0 2000000\n");
}

Test(cg, v1_zero_limits_write_nothing)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    struct limits lim = {0};
    cr_assert_eq(cg_create(m, "job1", &lim, &cg), 0);
    assert_file("cpu/runjob/job1/cpu.cfs_quota_us", "-1\n");
    assert_file("memory/runjob/job1/memory.limit_in_bytes", "9223372036854771712\n");
    assert_file("pids/runjob/job1/pids.max", "max\n");
    _cleanup_free_ char *ri = drain("blkio/runjob/job1/blkio.throttle.read_iops_device");
    cr_assert_str_eq(ri, "");
}

/* A job's cgroup made ahead without limits: nothing written (every file at the kernel's
 * default) until cg_set_limits writes the job's, which then read as cg_create's would. */
Test(cg, v1_limits_set_later_equal_limits_at_create)
{
    static const char *const files[][2] = {
        {"cpu", "cpu.cfs_period_us"},
        {"cpu", "cpu.cfs_quota_us"},
        {"memory", "memory.limit_in_bytes"},
        {"memory", "memory.memsw.limit_in_bytes"},
        {"pids", "pids.max"},
    };
    static const char *const fifos[] = {
        "blkio.throttle.read_iops_device",
        "blkio.throttle.write_iops_device",
        "blkio.throttle.read_bps_device",
        "blkio.throttle.write_bps_device",
    };
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *at = NULL;
    _cleanup_(cg_freep) struct cg *ahead = NULL;
    char pa[128], pb[128];

    cr_assert_eq(cg_create(m, "at", &full_limits, &at), 0);
    cr_assert_eq(cg_create(m, "ahead", NULL, &ahead), 0);
    cr_assert_str_eq(cg_get_id(ahead), "ahead");
    assert_file("cpu/runjob/ahead/cpu.cfs_quota_us", "-1\n");
    assert_file("memory/runjob/ahead/memory.limit_in_bytes", "9223372036854771712\n");
    assert_file("pids/runjob/ahead/pids.max", "max\n");
    for (size_t i = 0; i < ELEMENTSOF(fifos); i++) {
        snprintf(pb, sizeof(pb), "blkio/runjob/ahead/%s", fifos[i]);
        _cleanup_free_ char *b = drain(pb);
        cr_expect_str_eq(b, "", "%s written before the limits", pb);
    }

    cr_assert_eq(cg_set_limits(ahead, &full_limits), 0);
    for (size_t i = 0; i < ELEMENTSOF(files); i++) {
        snprintf(pa, sizeof(pa), "%s/runjob/at/%s", files[i][0], files[i][1]);
        snprintf(pb, sizeof(pb), "%s/runjob/ahead/%s", files[i][0], files[i][1]);
        _cleanup_free_ char *a = slurp(pa);
        _cleanup_free_ char *b = slurp(pb);
        cr_expect_str_eq(b, a, "%s", pb);
    }
    for (size_t i = 0; i < ELEMENTSOF(fifos); i++) {
        snprintf(pa, sizeof(pa), "blkio/runjob/at/%s", fifos[i]);
        snprintf(pb, sizeof(pb), "blkio/runjob/ahead/%s", fifos[i]);
        _cleanup_free_ char *a = drain(pa);
        _cleanup_free_ char *b = drain(pb);
        cr_expect_neq(a[0], '\0');
        cr_expect_str_eq(b, a, "%s", pb);
    }
    /* Zero limits write nothing more. */
    cr_assert_eq(cg_set_limits(ahead, &(struct limits){0}), 0);
    _cleanup_free_ char *again = drain("blkio/runjob/ahead/blkio.throttle.read_iops_device");
    cr_expect_str_eq(again, "");
}

/* A cgroup made with from and changed to to reads, in every file of every hierarchy, as one
 * made with to (the fake folds the blkio writes as the kernel applies them). The order of the
 * memory writes is the real kernel's to check: test/host/test_cgroup_v1.c. */
Test(cg, v1_changed_limits_equal_limits_at_create)
{
    static const char *const h[] = {"cpu", "cpuacct", "memory", "blkio", "pids", "freezer"};
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    for (size_t k = 0; k < ELEMENTSOF(cg_limit_pairs); k++) {
        _cleanup_(cg_freep) struct cg *fresh = NULL;
        _cleanup_(cg_freep) struct cg *changed = NULL;
        char idf[16], idc[16], pf[64], pc[64];
        snprintf(idf, sizeof(idf), "fresh%zu", k);
        snprintf(idc, sizeof(idc), "changed%zu", k);
        cr_assert_eq(cg_create(m, idf, &cg_limit_pairs[k].to, &fresh), 0);
        cr_assert_eq(cg_create(m, idc, &cg_limit_pairs[k].from, &changed), 0);
        cr_assert_eq(cg_change_limits(changed, &cg_limit_pairs[k].from, &cg_limit_pairs[k].to), 0,
                     "pair %zu", k);
        for (size_t i = 0; i < ELEMENTSOF(h); i++) {
            snprintf(pf, sizeof(pf), "%s/runjob/%s", h[i], idf);
            snprintf(pc, sizeof(pc), "%s/runjob/%s", h[i], idc);
            _cleanup_free_ char *a = kernel_view(pf);
            _cleanup_free_ char *b = kernel_view(pc);
            cr_expect_str_eq(b, a, "pair %zu, %s", k, h[i]);
        }
    }
}

/* Only the fields that differ are written: the others keep whatever the files hold (here a
 * marker no write of ours would produce), and from == to writes nothing at all. */
Test(cg, v1_change_writes_only_what_differs)
{
    static const char *const marked[] = {
        "cpu/runjob/j/cpu.cfs_period_us",
        "cpu/runjob/j/cpu.cfs_quota_us",
        "memory/runjob/j/memory.limit_in_bytes",
        "memory/runjob/j/memory.memsw.limit_in_bytes",
        "pids/runjob/j/pids.max",
    };
    static const char *const fifos[] = {
        "blkio/runjob/j/blkio.throttle.read_iops_device",
        "blkio/runjob/j/blkio.throttle.write_iops_device",
        "blkio/runjob/j/blkio.throttle.read_bps_device",
        "blkio/runjob/j/blkio.throttle.write_bps_device",
    };
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    const struct limits lo = LIMITS_LO;
    cr_assert_eq(cg_create(m, "j", &lo, &cg), 0);
    for (size_t i = 0; i < ELEMENTSOF(fifos); i++)
        free(drain(fifos[i]));
    for (size_t i = 0; i < ELEMENTSOF(marked); i++)
        write_file(marked[i], "marker");

    cr_assert_eq(cg_change_limits(cg, &lo, &lo), 0);
    for (size_t i = 0; i < ELEMENTSOF(marked); i++)
        assert_file(marked[i], "marker");
    for (size_t i = 0; i < ELEMENTSOF(fifos); i++) {
        _cleanup_free_ char *w = drain(fifos[i]);
        cr_expect_str_eq(w, "", "%s", fifos[i]);
    }

    struct limits to = lo;
    to.pids = 0;
    to.io_wbps = 5;
    cr_assert_eq(cg_change_limits(cg, &lo, &to), 0);
    assert_file("pids/runjob/j/pids.max", "max");
    assert_file("cpu/runjob/j/cpu.cfs_quota_us", "marker");
    assert_file("memory/runjob/j/memory.limit_in_bytes", "marker");
    _cleanup_free_ char *wb = drain(fifos[3]);
    cr_expect_str_eq(wb, "8:0 5\n253:0 5\n254:0 5\n");
    _cleanup_free_ char *ri = drain(fifos[0]);
    cr_expect_str_eq(ri, "");

    /* A cpu limit changed from another keeps the period: only the quota is written. */
    to.cpu_millis = 900;
    cr_assert_eq(cg_change_limits(cg, &lo, &to), 0);
    assert_file("cpu/runjob/j/cpu.cfs_period_us", "marker");
    assert_file("cpu/runjob/j/cpu.cfs_quota_us", "90000");
}

/* A failed limit write is reported; the caller (job_start) then destroys the cgroup. */
Test(cg, set_limits_failure_is_reported)
{
    F.no_pids_max = true;
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "j", NULL, &cg), 0);
    cr_assert_lt(cg_set_limits(cg, &(struct limits){.pids = 5}), 0);
    cr_assert_eq(cg_destroy(cg, 100), 0);
    cr_assert_not(exists("pids/runjob/j"));
}

Test(cg, v1_cpu_quota_floor_and_explicit_devices)
{
    v1_layout();
    const char *devs[] = {"254:0", "254:0", NULL}; /* duplicates collapse */
    struct cg_config cfg = {.base = F.base,
                            .mode = CG_V1,
                            .io_devices = devs,
                            .sys_block = "/nonexistent",
                            .test_hooks = &hooks};
    _cleanup_(cg_manager_freep) struct cg_manager *m = NULL;
    cr_assert_eq(cg_manager_new(&cfg, &m, NULL, 0), 0);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    struct limits lim = {.cpu_millis = 1, .io_rbps = 5};
    cr_assert_eq(cg_create(m, "job1", &lim, &cg), 0);
    assert_file("cpu/runjob/job1/cpu.cfs_quota_us", "1000");
    _cleanup_free_ char *rb = drain("blkio/runjob/job1/blkio.throttle.read_bps_device");
    cr_assert_str_eq(rb, "254:0 5\n");
}

Test(cg, v1_without_memsw)
{
    v1_layout();
    F.no_memsw = true;
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    struct limits lim = {.memory_bytes = 4096 * 10};
    cr_assert_eq(cg_create(m, "job1", &lim, &cg), 0);
    assert_file("memory/runjob/job1/memory.limit_in_bytes", "40960");
}

Test(cg, create_twice_is_eexist_and_keeps_the_first)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *a = NULL;
    struct cg *b = NULL;
    cr_assert_eq(cg_create(m, "job1", &full_limits, &a), 0);
    cr_assert_eq(cg_create(m, "job1", NULL, &b), -EEXIST);
    cr_assert_null(b);
    assert_file("memory/runjob/job1/memory.limit_in_bytes", "67108864");
    cr_assert(exists("freezer/runjob/job1"));
}

Test(cg, failed_create_leaves_nothing)
{
    v1_layout();
    F.no_pids_max = true; /* a kernel without pids.max: writing the limit fails */
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    struct cg *cg = NULL;
    struct limits lim = {.pids = 10};
    cr_assert_eq(cg_create(m, "job1", &lim, &cg), -ENOENT);
    cr_assert_null(cg);
    const char *h[] = {"cpu", "cpuacct", "memory", "blkio", "pids", "freezer"};
    for (size_t i = 0; i < ELEMENTSOF(h); i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "%s/runjob/job1", h[i]);
        cr_assert_not(exists(rel), "%s left behind", rel);
    }
}

Test(cg, v1_attach_every_hierarchy)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    cr_assert_eq(cg_attach(cg, 4242), 0);
    cr_assert_eq(cg_attach(cg, 0), -EINVAL);
    const char *h[] = {"cpu", "cpuacct", "memory", "blkio", "pids", "freezer"};
    for (size_t i = 0; i < ELEMENTSOF(h); i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "%s/runjob/job1/cgroup.procs", h[i]);
        assert_file(rel, "4242");
    }
}

Test(cg, v1_attach_apart_leaves_memory_to_the_command)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert(cg_memory_apart(m));
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    cr_assert_eq(cg_attach_apart(cg, 4242), 0);
    cr_assert_eq(cg_attach_apart(cg, 0), -EINVAL);
    const char *h[] = {"cpu", "cpuacct", "blkio", "pids", "freezer"};
    for (size_t i = 0; i < ELEMENTSOF(h); i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "%s/runjob/job1/cgroup.procs", h[i]);
        assert_file(rel, "4242");
    }
    assert_file("memory/runjob/job1/cgroup.procs", "");
    assert_file("memory/runjob/cgroup.procs", "4242");
    assert_file("cpu/runjob/cgroup.procs", "");
    /* The command's process writes "0" through the fd the prep carries. */
    int fd = cg_open_memory_procs(cg);
    cr_assert_geq(fd, 0);
    cr_expect(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    cr_expect_eq(fcntl(fd, F_GETFL) & O_ACCMODE, O_WRONLY);
    cr_assert_eq(write(fd, "0", 1), 1);
    (void)close(fd);
    assert_file("memory/runjob/job1/cgroup.procs", "0");
}

Test(cg, v1_memory_apart_only_without_a_limit_above_the_job_root)
{
    v1_layout();
    F.memory_stat_limit = "17179869184"; /* a slice of 16 GiB: an OOM killer that sees every shim */
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_expect_not(cg_memory_apart(m));
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    cr_expect_eq(cg_attach_apart(cg, 4242), -EOPNOTSUPP);
    cr_expect_eq(cg_open_memory_procs(cg), -EOPNOTSUPP);
}

Test(cg, v1_comounted_cpu_cpuacct_used_once)
{
    mkdirs("cpu,cpuacct");
    char a[256], b[256];
    snprintf(a, sizeof(a), "%s/cpu", F.base);
    snprintf(b, sizeof(b), "%s/cpuacct", F.base);
    cr_assert_eq(symlink("cpu,cpuacct", a), 0);
    cr_assert_eq(symlink("cpu,cpuacct", b), 0);
    mkdirs("memory");
    mkdirs("blkio");
    mkdirs("pids");
    mkdirs("freezer");
    F.comount = true;
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", &(struct limits){.cpu_millis = 2000}, &cg), 0);
    cr_expect(cg_memory_apart(m), "memory is a hierarchy of its own here");
    assert_file("cpu,cpuacct/runjob/job1/cpu.cfs_quota_us", "200000");
    write_file("cpu,cpuacct/runjob/job1/cpuacct.usage", "7000\n");
    struct cg_usage u;
    cr_assert_eq(cg_read_usage(cg, &u), 0);
    cr_assert_eq(u.cpu_usec, 7);
    cr_assert_eq(cg_destroy(cg, 100), 0);
    cr_assert_not(exists("cpu,cpuacct/runjob/job1"));
}

Test(cg, v1_usage)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    struct cg_usage u = {.cpu_usec = 9, .memory_peak_bytes = 9, .oom_killed = true};
    cr_assert_eq(cg_read_usage(cg, &u), 0);
    cr_assert_eq(u.cpu_usec, 0);
    cr_assert_eq(u.memory_peak_bytes, 0);
    cr_assert_not(u.oom_killed);
    write_file("cpuacct/runjob/job1/cpuacct.usage", "2500999\n");
    write_file("memory/runjob/job1/memory.max_usage_in_bytes", "1048576\n");
    write_file("memory/runjob/job1/memory.oom_control",
               "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
    cr_assert_eq(cg_read_usage(cg, &u), 0);
    cr_assert_eq(u.cpu_usec, 2500);
    cr_assert_eq(u.memory_peak_bytes, 1048576);
    cr_assert(u.oom_killed);
    write_file("memory/runjob/job1/memory.oom_control", "under_oom 0\n");
    cr_assert_eq(cg_read_usage(cg, &u), 0, "a kernel without the counter reads 0");
    cr_assert_not(u.oom_killed);
    write_file("memory/runjob/job1/memory.oom_control", "oom_kill x\n");
    cr_assert_eq(cg_read_usage(cg, &u), -EINVAL);
}

Test(cg, v1_kill_freezes_kills_thaws)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &cg), 0);
    cr_assert_eq(cg_is_populated(cg), 0);
    cr_assert_eq(cg_kill(cg, 100), 0, "empty: nothing to do");

    pid_t child = spawn_sleeper();
    char pid[16];
    snprintf(pid, sizeof(pid), "%d\n", child);
    write_file("memory/runjob/job1/cgroup.procs", pid);
    cr_assert_eq(cg_is_populated(cg), 1);
    /* a fake cgroup.procs never empties: the kill goes out, then it times out */
    cr_assert_eq(cg_kill(cg, 50), -ETIMEDOUT);
    int st;
    cr_assert_eq(waitpid(child, &st, 0), child);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_file("freezer/runjob/job1/freezer.state", "THAWED");
    cr_assert_eq(cg_destroy(cg, 50), -EBUSY, "populated: cannot remove");
    cr_assert(exists("memory/runjob/job1"));
}

/* An empty job cgroup goes with one rmdir per hierarchy; one with a child cgroup is refused
 * (EBUSY, as the kernel does) and then removed by the tree walk, child first. */
Test(cg, v1_destroy_removes_empty_and_nested)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    _cleanup_(cg_freep) struct cg *a = NULL;
    _cleanup_(cg_freep) struct cg *b = NULL;
    cr_assert_eq(cg_create(m, "job1", NULL, &a), 0);
    cr_assert_eq(cg_create(m, "job2", NULL, &b), 0);
    cr_assert_eq(cg_destroy(a, 100), 0);
    cr_expect_not(exists("memory/runjob/job1") || exists("pids/runjob/job1"));
    char sub[512];
    snprintf(sub, sizeof(sub), "%s/memory/runjob/job2/sub", F.base);
    cr_assert(mkdir(sub, 0755) == 0);
    cr_assert_eq(cg_destroy(b, 100), 0);
    cr_expect_not(exists("memory/runjob/job2"), "the nested one went too");
    cr_expect_not(exists("pids/runjob/job2"));
}

Test(cg, v1_stale_cleanup)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    struct cg *cg = NULL;
    cr_assert_eq(cg_create(m, "old", NULL, &cg), 0);
    cg_free(cg);                        /* a server that died: the cgroup stays */
    mkdirs("memory/runjob/old/nested"); /* and a child cgroup under it */
    int dfd = open(F.base, O_RDONLY | O_DIRECTORY);
    int n = openat(dfd, "memory/runjob/old/nested", O_RDONLY | O_DIRECTORY);
    put(n, "cgroup.procs", "");
    close(n);
    close(dfd);
    cr_assert(exists("freezer/runjob/old"));
    cr_assert_eq(cg_cleanup_stale(m, "old"), 1);
    cr_assert_not(exists("freezer/runjob/old"));
    cr_assert_not(exists("memory/runjob/old"));
    cr_assert_eq(cg_cleanup_stale(m, "old"), 0);
    cr_assert_eq(cg_cleanup_stale(m, "never"), 0);
}

Test(cg, v1_stale_cleanup_partial)
{
    v1_layout();
    _cleanup_(cg_manager_freep) struct cg_manager *m = new_manager(CG_V1, NULL, NULL);
    /* a previous server died between two mkdirs */
    mkdirs("cpu/runjob/half");
    int dfd = open(F.base, O_RDONLY | O_DIRECTORY);
    int n = openat(dfd, "cpu/runjob/half", O_RDONLY | O_DIRECTORY);
    put(n, "cgroup.procs", "");
    close(n);
    close(dfd);
    cr_assert_eq(cg_cleanup_stale(m, "half"), 1);
    cr_assert_not(exists("cpu/runjob/half"));
}
