#pragma once
/* Job cgroups: one interface over two backends (ARCHITECTURE.md "cgroups").
 *
 *   v2: one directory per job in the unified hierarchy, controllers cpu, memory, io, pids.
 *   v1: one directory per job in each of the cpu, cpuacct, memory, blkio, pids and freezer
 *       hierarchies (/sys/fs/cgroup/<name>; co-mounted hierarchies such as "cpu,cpuacct"
 *       are detected and used once).
 *
 * The layout is probed once, in cg_manager_new(). Every path is computed relative to the
 * manager's base directory (default /sys/fs/cgroup), so tests can point the whole module at a
 * fake cgroupfs in a temp dir (cg_config.base + cg_config.mode).
 *
 * How the job runner (core/job) uses it:
 *   cg_manager_new()                          once, at server start
 *   cg_cleanup_stale(m, id)                   for each job a previous server left RUNNING
 *   cg_create(m, id, &limits, &cg)            before spawning the shim, or ahead of it:
 *   cg_create(m, id, &defaults, &cg), then cg_change_limits(cg, &defaults, &limits) at its
 *   start (writes only what differs; cg_set_limits() is the same from no limits)
 *   v2: clone3(CLONE_INTO_CGROUP, .cgroup = cg_get_dirfd(cg))
 *   v1: cg_get_dirfd() returns -EOPNOTSUPP; the runner calls cg_attach_apart(cg, shim_pid)
 *       while the shim waits for its prep (core/shimproto.h), then sends the prep with
 *       cg_open_memory_procs(cg), through which the command's process joins the memory
 *       hierarchy. A pooled shim is moved into a spare's cgroup with cg_attach() on v2.
 *   cg_read_usage(cg, &u)                     any time while it runs, and once after it ended
 *   cg_kill(cg)                               stop after the grace period (whole cgroup)
 *   cg_destroy(cg, timeout_ms); cg_free(cg)   after the shim was reaped
 *
 * Thread-safety: a struct cg_manager is immutable after cg_manager_new() and may be shared by
 * any number of threads. Calls on one struct cg may run concurrently with each other except
 * cg_destroy() and cg_free(), which the caller must serialise against everything else on
 * that cg. Errors are negative errno; this module logs at debug level only. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "limits.h"

struct cg_manager; /* the probed layout and where job cgroups live; one per server */
struct cg;         /* one job's cgroup (v2: one directory; v1: one per hierarchy) */

/* Tests only (NULL in production): a fake cgroupfs in a temp dir has no kernel behind it, so the
 * test plays the kernel's part. after_mkdir runs after this module creates a cgroup directory
 * (dirfd: the new directory, borrowed; hier: the v1 hierarchy directory name, "" on v2) and
 * should create the interface files the kernel would (cgroup.procs, memory.max, ...); leaving
 * one out simulates a kernel without it. rmdir replaces unlinkat(AT_REMOVEDIR) on cgroup
 * directories (a real cgroup directory can be removed while its interface files exist). */
struct cg_test_hooks {
    void (*after_mkdir)(int dirfd, const char *hier, void *userdata);
    int (*rmdir)(int parent_fd, const char *name, void *userdata); /* 0 or -errno */
    void *userdata;
};

enum cg_mode {
    CG_PROBE = 0, /* cg_config.mode only: detect */
    CG_V1 = 1,
    CG_V2 = 2,
};

struct cg_config {
    /* Where cgroupfs is mounted. NULL = "/sys/fs/cgroup". Tests: a temp dir. */
    const char *base;
    /* CG_PROBE (default): statfs(base) == CGROUP2_SUPER_MAGIC and base/cgroup.controllers has
     * cpu, memory, io, pids -> v2; else the v1 hierarchies base/<name> (each must be a cgroup
     * v1 mount) -> v1. CG_V1 / CG_V2 skip the filesystem-type checks (a fake cgroupfs is
     * tmpfs) but still require the controllers / hierarchy directories to be there. */
    enum cg_mode mode;
    /* Where job cgroups live, relative to the hierarchy root (leading '/' optional).
     * NULL = default:
     *   v2: <server's own cgroup>/runjob. If the server's cgroup holds processes (and is not the
     *       root cgroup), they are first moved into a leaf sibling <server's cgroup>/server so
     *       that controllers can be enabled in its cgroup.subtree_control (the no-internal-
     *       process rule; crun and systemd do the same).
     *   v1: "runjob" in every hierarchy, i.e. /sys/fs/cgroup/<name>/runjob/<id>.
     * Missing directories are created (never removed: another server may share them). */
    const char *root;
    /* v2 only: the server's own cgroup path ("/a/b"). NULL = read from /proc/self/cgroup.
     * Tests set it to exercise the default root against a fake cgroupfs. */
    const char *self_cgroup;
    /* "MAJ:MIN" devices the io limits apply to, NULL-terminated. NULL = every real block
     * device under sys_block: each entry with a "dev" file except loop*, ram*, zram* (virtual
     * or memory-backed; throttling them double-counts or means nothing). dm-* and md* are kept.
     * Devices are resolved once, in cg_manager_new(). */
    const char *const *io_devices;
    /* NULL = "/sys/block". Tests: a temp dir with <name>/dev files. */
    const char *sys_block;
    /* NULL in production. */
    const struct cg_test_hooks *test_hooks;
};

/* Probes the layout, prepares the job root (v2: may move the server's processes into the
 * "server" leaf and enable controllers; v1: creates <hier>/runjob) and resolves io devices.
 * 0 or -errno. -ENOTSUP when neither layout is usable; then errbuf (if not NULL) names what is
 * missing, e.g. "cgroup v2 at /sys/fs/cgroup/unified lacks cpu, memory, io, pids; cgroup v1
 * lacks blkio". Other failures also leave a short reason in errbuf. */
int cg_manager_new(const struct cg_config *cfg, struct cg_manager **ret, char *errbuf,
                   size_t errlen);
/* NULL-safe. Does not touch any cgroup. */
void cg_manager_free(struct cg_manager *m);
enum cg_mode cg_manager_mode(const struct cg_manager *m);
/* "v1" or "v2". */
const char *cg_mode_name(enum cg_mode mode);

/* Is id usable as a cgroup directory name: 1..128 bytes of [A-Za-z0-9._-], not "." or "..".
 * Every function taking an id checks it (-EINVAL), since ids come back from the state dir. */
bool cg_id_is_valid(const char *id);

/* Creates the job's cgroup(s) and applies lim. Swap: v2 memory.swap.max = 0 whenever that
 * file exists; v1 memory.memsw.limit_in_bytes = memory_bytes where present and a memory limit
 * is set. -EEXIST if a cgroup of that id exists (call cg_cleanup_stale() first). On failure
 * nothing is left behind. *ret owns open directory fds; free with cg_free(). */
int cg_create(struct cg_manager *m, const char *id, const struct limits *lim, struct cg **ret);

/* Writes the limits set in lim (its non-zero fields) into a cgroup that cg_create() made with
 * lim NULL, e.g. ahead of its job, off the job's start path. A field left 0 is not written and
 * keeps the kernel's default, no limit, so cg_create(m, id, NULL) then cg_set_limits(cg, lim)
 * leaves every cgroup file as cg_create(m, id, lim) does. Same as cg_change_limits(cg, &zero,
 * lim). 0 or -errno; on failure some limits may be written: cg_destroy(). */
int cg_set_limits(struct cg *cg, const struct limits *lim);

/* Rewrites only the limits that differ between from (what cg has now) and to. A field of to
 * that is 0 lifts that limit (back to the kernel's default, no limit). So cg_create(m, id,
 * from) then cg_change_limits(cg, from, to) leaves every cgroup file as cg_create(m, id, to)
 * does, and from == to writes nothing: a cgroup made ahead with the server's default limits
 * needs no write at a start that uses them. v1 orders the memory writes so that
 * memsw.limit_in_bytes is never below limit_in_bytes. 0 or -errno; on failure some limits may
 * be written (the caller destroys the cgroup). Not thread-safe against itself on one cg. */
int cg_change_limits(struct cg *cg, const struct limits *from, const struct limits *to);

/* The id cg was made for (owned by cg). */
const char *cg_get_id(const struct cg *cg);

/* v2: an O_DIRECTORY|O_CLOEXEC fd of the job cgroup for clone3's CLONE_INTO_CGROUP; owned by
 * cg (do not close), valid until cg_free(). v1: -EOPNOTSUPP (use cg_attach(), or
 * cg_attach_apart() for a shim). */
int cg_get_dirfd(const struct cg *cg);

/* Moves pid (a whole process) into the job cgroup: v1 writes it to cgroup.procs of every
 * hierarchy; v2 writes cgroup.procs (fallback for kernels without CLONE_INTO_CGROUP).
 * 0 or -errno (-ESRCH if pid is gone). On failure pid may already sit in some hierarchies:
 * kill it and cg_destroy() (which kills whatever is in any of them). */
int cg_attach(struct cg *cg, pid_t pid);

/* Whether a job's memory cgroup can hold its command's processes and not its shim: v1, with
 * memory a hierarchy of its own and the job root under no memory limit (read once, at
 * cg_manager_new); v2: false, one hierarchy for every controller. A shim that shares the
 * template's memory must never be the OOM killer's choice, which in the job's memory cgroup it
 * could be (core/shim.c); kept out of it, it never is, whatever its OOM score. */
bool cg_memory_apart(const struct cg_manager *m);
/* cg_memory_apart(): cg_attach(), but in the memory hierarchy into the job root (the parent of
 * every job's cgroup, with no limit and no job's OOM killer), for a job's shim. Its command's
 * process joins the job's memory cgroup itself, by writing "0" to the fd cg_open_memory_procs()
 * gives. The job sees its shim's memory cgroup as "/.." (nothing of the host's layout). Otherwise
 * -EOPNOTSUPP. */
int cg_attach_apart(struct cg *cg, pid_t pid);
/* cg_memory_apart(): an O_WRONLY|O_CLOEXEC fd of the job's cgroup.procs in the memory hierarchy,
 * the caller's. Kernels from 5.16 check a write against the credentials of whoever opened it
 * (root: the server), older ones against the writer's: the command's process writes while still
 * root. Otherwise -EOPNOTSUPP. */
int cg_open_memory_procs(struct cg *cg);

/* SIGKILLs every process in the job cgroup and its descendants, repeating until none is left
 * or timeout_ms (< 0: 5000) passes. v2: cgroup.kill (kernel >= 5.14), else freeze + kill every
 * pid + thaw; v1: freezer FROZEN + kill every pid in cgroup.procs + THAWED. Killed processes
 * that are our own children stay zombies until reaped; they no longer count as members.
 * 0 when empty, -ETIMEDOUT if processes remain, other -errno on failure. */
int cg_kill(struct cg *cg, int timeout_ms);

/* 1 if any process is in the cgroup (or a descendant), 0 if none, -errno. */
int cg_is_populated(struct cg *cg);

struct cg_usage {
    uint64_t cpu_usec;          /* v2 cpu.stat usage_usec; v1 cpuacct.usage / 1000 */
    uint64_t memory_peak_bytes; /* memory.peak; v1 max_usage_in_bytes; else max of
                                 * memory.current over every cg_read_usage() (best effort) */
    bool oom_killed;            /* v2 memory.events oom_kill > 0; v1 memory.oom_control oom_kill */
};
/* Reads usage now. Read the final values before cg_destroy() (they vanish with the cgroup).
 * A counter this kernel lacks reads as 0. 0 or -errno. */
int cg_read_usage(struct cg *cg, struct cg_usage *ret);

/* Kills what is left (cg_kill), waits until empty (at most timeout_ms; < 0: 5000) and removes
 * the job cgroup (every hierarchy, descendants first). Idempotent: a cgroup already gone is
 * success. 0 or -errno (-EBUSY if it could not be emptied in time). cg stays allocated. */
int cg_destroy(struct cg *cg, int timeout_ms);

/* Closes the fds and frees cg; does not remove any cgroup. NULL-safe. */
void cg_free(struct cg *cg);

/* A previous server's job id: if its cgroup exists in any hierarchy, kill everything in it and
 * remove it. 1 if something was removed, 0 if there was nothing, -errno. */
int cg_cleanup_stale(struct cg_manager *m, const char *id);
/* How old an empty job cgroup must be before cg_remove_leftovers takes it for a leftover: a job
 * being set up by another server on the same job root has a fresh, empty cgroup for a moment. */
#define CG_LEFTOVER_MIN_AGE_S 60
/* Removes the job cgroups under the job root, in every hierarchy, that a server left behind:
 * named like a job id (core/id.h: nothing else under the root is ever touched), holding no
 * process in any hierarchy, whose directory has not changed for min_age_s seconds, and for
 * which keep(id, userdata) is false (the caller knows the job). Several servers with state
 * directories of their own may share the job root: those rules keep each one's live cgroups
 * safe from the others. Returns how many were removed, or -errno. Blocks on cgroupfs. */
int cg_remove_leftovers(struct cg_manager *m, unsigned min_age_s,
                        bool (*keep)(const char *id, void *userdata), void *userdata);

#include "cleanup.h"
DEFINE_CLEANUP(struct cg_manager *, cg_manager_free)
DEFINE_CLEANUP(struct cg *, cg_free)
