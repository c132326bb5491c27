#pragma once
/* Private to core/cgroup*.c: the manager and job structs, the backend ops table, and the
 * helpers the backends share (docs/STYLE.md "Layout", after crun's cgroup-internal.h). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cgroup.h"
#include "clock.h"

/* What a v1 hierarchy does for us; a co-mounted "cpu,cpuacct" hierarchy has two roles. */
enum {
    CG_ROLE_CPU = 1u << 0,
    CG_ROLE_CPUACCT = 1u << 1,
    CG_ROLE_MEMORY = 1u << 2,
    CG_ROLE_BLKIO = 1u << 3,
    CG_ROLE_PIDS = 1u << 4,
    CG_ROLE_FREEZER = 1u << 5,
    CG_ROLE_ALL_V1 = (1u << 6) - 1,
};

#define CG_MAX_HIER 6

struct cg_hier {
    char *name;     /* v1: hierarchy directory under base ("memory"); v2: "" */
    int rootfd;     /* O_DIRECTORY fd of the job root in this hierarchy (<hier>/<root>) */
    unsigned roles; /* CG_ROLE_*; v2: CG_ROLE_ALL_V1 minus nothing, unused */
};

struct cg_dev {
    unsigned major, minor;
};

struct cg_backend;

struct cg_manager {
    enum cg_mode mode;
    const struct cg_backend *ops;
    char *base; /* v1: where the hierarchies are; v2: the unified mount */
    char *root; /* job root relative to each hierarchy root, no leading '/', may be "" */
    struct cg_hier hier[CG_MAX_HIER];
    size_t n_hier;
    bool memory_apart; /* cg_memory_apart(): v1_init's finding */
    struct cg_dev *devs;
    size_t n_devs;
    struct cg_test_hooks hooks; /* zeroed in production */
};

/* The usage files a backend reads (cg_usage_u64's slot), each kept open once read. */
enum cg_usage_file {
    CG_USAGE_CPU,     /* v1 cpuacct.usage, v2 cpu.stat */
    CG_USAGE_PEAK,    /* v1 memory.max_usage_in_bytes, v2 memory.peak */
    CG_USAGE_OOM,     /* v1 memory.oom_control, v2 memory.events */
    CG_USAGE_CURRENT, /* v2 memory.current, where memory.peak is missing */
    CG_USAGE_FILES
};

struct cg {
    struct cg_manager *m;
    char *id;
    int fd[CG_MAX_HIER];          /* job directory in m->hier[i]; -1 if absent */
    uint64_t peak_seen;           /* v2 without memory.peak: max memory.current seen (atomic) */
    int usage_fd[CG_USAGE_FILES]; /* -1 until first read (atomic: readers may race) */
};

struct cg_backend {
    /* After probing: prepare the job root (m->hier[].rootfd, m->root). errbuf as in
     * cg_manager_new(). */
    int (*init)(struct cg_manager *m, const struct cg_config *cfg, char *errbuf, size_t errlen);
    /* Writes what every job cgroup gets whatever its limits (v2: swap off), right after the
     * directories are made. NULL: nothing. */
    int (*set_defaults)(struct cg *cg);
    /* Rewrites the fields of to that differ from from (what the cgroup has now) and nothing
     * else; a 0 in to lifts that limit. */
    int (*change_limits)(struct cg *cg, const struct limits *from, const struct limits *to);
    /* Into the job's cgroup of every hierarchy, but of those with a role in parent_roles into
     * the job root, the parent of every job's (v1; 0 on v2). */
    int (*attach)(struct cg *cg, pid_t pid, unsigned parent_roles);
    /* v1: an O_WRONLY fd of the memory hierarchy's cgroup.procs; NULL on v2. */
    int (*open_memory_procs)(struct cg *cg);
    /* One round of killing: SIGKILL everything in the cgroup now. */
    int (*kill_once)(struct cg *cg);
    /* 1, 0 or -errno. */
    int (*is_populated)(struct cg *cg);
    int (*read_usage)(struct cg *cg, struct cg_usage *ret);
};

extern const struct cg_backend cg_backend_v1;
extern const struct cg_backend cg_backend_v2;

/* Shared helpers (cgroup.c). */

/* The number in usage file name below dirfd (key NULL), or the value of its line "key N": 0 or
 * -errno (-ENOENT when the kernel has no such file or line). The file stays open in
 * cg->usage_fd[slot] and later reads are one pread at offset 0 (which regenerates a cgroup
 * file's content): List reads every running job's usage, and open + close were half of its time
 * in perf. Safe to call concurrently. */
int cg_usage_u64(struct cg *cg, enum cg_usage_file slot, int dirfd, const char *name,
                 const char *key, uint64_t *ret);

/* mkdirat(dirfd, name, 0755) then the test hook; 0 or -errno (-EEXIST if it was there). */
int cg_mkdir_at(const struct cg_manager *m, int dirfd, const char *name, const char *hier);
/* Creates every missing component of the relative path rel below dirfd (mkdir -p, calling the
 * hook for each directory made) and returns an O_DIRECTORY fd of the last one. */
int cg_mkdir_p_at(const struct cg_manager *m, int dirfd, const char *rel, const char *hier,
                  int *ret_fd);
/* Removes the cgroup directory parent_fd/name and its descendant cgroups (depth first).
 * 0 if it is gone (or was never there), else -errno (-EBUSY while processes remain). */
int cg_rmdir_tree(const struct cg_manager *m, int parent_fd, const char *name);
/* Calls fn(pid, userdata) for every pid in dirfd/cgroup.procs and in descendant cgroups.
 * A cgroup vanishing underneath is not an error. Returns the number of pids seen or -errno. */
int cg_for_each_pid(int dirfd, void (*fn)(pid_t pid, void *userdata), void *userdata);
/* snprintf into errbuf if it is not NULL. */
void cg_set_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sleeps ms milliseconds. */
void cg_sleep_ms(unsigned ms);
/* cpu_millis -> CFS quota in usec for a 100 ms period (min 1000 us, the kernel's floor). */
uint64_t cg_cpu_quota_usec(uint64_t cpu_millis);
#define CG_CPU_PERIOD_USEC 100000u
