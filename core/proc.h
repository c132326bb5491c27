#pragma once
/* Text files of /proc, /sys and cgroupfs: pure parsers (proc_parse_*: buffer in, value out,
 * no I/O, unit-tested with literal strings) and thin readers/writers (proc_read_* /
 * proc_write_*) relative to directory fds (docs/STYLE.md "Kernel text files"). All
 * thread-safe; output parameters are written only on success. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Controller bits for proc_parse_controllers(). */
#define PROC_CG_CPU     (1u << 0)
#define PROC_CG_MEMORY  (1u << 1)
#define PROC_CG_IO      (1u << 2)
#define PROC_CG_PIDS    (1u << 3)
#define PROC_CG_CPUSET  (1u << 4)
#define PROC_CG_HUGETLB (1u << 5)

/* /proc/<pid>/cgroup: the path of the line whose controller list contains controller
 * ("memory" matches "4:memory:/x" and "2:cpu,memory:/x"; "name=systemd" works too), or of the
 * unified "0::/x" line when controller is NULL or "". *ret_path is malloc'd.
 * 0, -ENOENT (no such line), -EINVAL (malformed), -ENOMEM. */
int proc_parse_cgroup(const char *buf, const char *controller, char **ret_path);

/* cgroup.controllers / cgroup.subtree_control: space-separated names -> PROC_CG_* mask;
 * unknown names are ignored. 0 or -EINVAL (a name too long to be a controller). */
int proc_parse_controllers(const char *buf, unsigned *ret_mask);

/* Flat-keyed files ("key value\n" lines: cpu.stat, memory.events, memory.oom_control,
 * cgroup.events): the value of the line whose key is exactly key ("oom_kill" does not match
 * "oom_kill_disable"). 0, -ENOENT (no such key), -EINVAL (its value is not a u64). */
int proc_parse_keyed_u64(const char *buf, const char *key, uint64_t *ret);

/* A single-value file ("123\n", "max\n" -> UINT64_MAX). 0 or -EINVAL (also on trailing
 * garbage, sign, overflow). */
int proc_parse_u64(const char *buf, uint64_t *ret);

/* /sys/block/<dev>/dev: "MAJ:MIN\n". 0 or -EINVAL. */
int proc_parse_devnum(const char *buf, unsigned *ret_major, unsigned *ret_minor);

/* cgroup.procs / tasks: one pid per line. *ret_pids is malloc'd (NULL when *ret_n == 0).
 * 0, -EINVAL (a line that is not a positive pid), -ENOMEM. */
int proc_parse_pids(const char *buf, pid_t **ret_pids, size_t *ret_n);

enum proc_freezer_state {
    PROC_THAWED = 0,
    PROC_FREEZING = 1,
    PROC_FROZEN = 2,
};
/* /proc/<pid>/cmdline, len bytes of NUL-separated arguments and a NUL at buf[len] (as
 * proc_read_fd leaves it, for a last argument without its own): argument i, or NULL when there
 * are fewer. Points into buf. */
const char *proc_parse_cmdline_arg(const char *buf, size_t len, unsigned i);

/* v1 freezer.state: "THAWED\n" | "FREEZING\n" | "FROZEN\n". 0 or -EINVAL. */
int proc_parse_freezer_state(const char *buf, enum proc_freezer_state *ret);

/* Reads the whole file dirfd/name (dirfd may be AT_FDCWD) into a NUL-terminated malloc'd
 * buffer. 0 or -errno (-EFBIG past PROC_FILE_MAX). */
#define PROC_FILE_MAX (64u << 20)
int proc_read_file_at(int dirfd, const char *name, char **ret_buf);
/* Reads fd to its end into a new NUL-terminated buffer (*ret_len bytes, which may hold NULs;
 * ret_len may be NULL). 0, -EFBIG past max bytes (max < SIZE_MAX - 2), -ENOMEM or the read's
 * -errno. */
int proc_read_fd(int fd, size_t max, char **ret_buf, size_t *ret_len);
/* Writes all len bytes of buf to fd (a pipe, a socket, a file), again after a short write or
 * EINTR. 0 or the write's -errno (-EPIPE once the reader is gone, when SIGPIPE is ignored). */
int proc_write_fd(int fd, const void *buf, size_t len);
/* Writes s to dirfd/name (an existing file: O_WRONLY|O_TRUNC, no O_CREAT) with one
 * write(2), as cgroupfs wants. 0 or -errno (the kernel's answer to the write). */
int proc_write_file_at(int dirfd, const char *name, const char *s);
/* proc_write_file_at() with a formatted value. */
int proc_writef_at(int dirfd, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* proc_read_file_at() + proc_parse_u64(). */
int proc_read_u64_at(int dirfd, const char *name, uint64_t *ret);
/* proc_read_file_at() + proc_parse_keyed_u64(). */
int proc_read_keyed_u64_at(int dirfd, const char *name, const char *key, uint64_t *ret);
/* proc_read_file_at() + proc_parse_pids(). */
int proc_read_pids_at(int dirfd, const char *name, pid_t **ret_pids, size_t *ret_n);
/* /proc/<pid>/cgroup (pid 0 = self) + proc_parse_cgroup(). */
int proc_read_cgroup(pid_t pid, const char *controller, char **ret_path);
