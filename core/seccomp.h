#pragma once
/* The seccomp filter the shim installs in the job's command right before exec (ARCHITECTURE.md
 * "Process tree of one job"). Default allow; EPERM for syscalls that touch the host beyond the
 * job's namespaces (mounts, namespaces, modules, kexec, reboot, clocks, keyrings, tracing, raw
 * I/O ports, eBPF, io_uring, ...) and for socket() of AF_VSOCK; clone with any CLONE_NEW* flag
 * fails with EPERM and clone3 with ENOSYS (its flags sit behind a pointer a filter cannot read,
 * so libc falls back to clone, which we can inspect: the approach of Docker's and nsjail's
 * default profiles); memfd_secret fails with ENOSYS. Any syscall from a foreign architecture
 * (i386 via int 0x80, x32) kills the process. Why a deny list, and why each of the last few:
 * seccomp.c, at the top.
 *
 * The job runs with no capabilities and no_new_privs, so most of these already fail: the filter
 * is a second wall, for the kernel bug that lets a capability-less process reach them. io_uring,
 * AF_VSOCK sockets and memfd_secret need no privilege: for those the filter is the only wall. */
#include <stddef.h>

struct scmp_filter; /* a built, not yet loaded, filter */

/* The syscall names the filter answers with EPERM whatever their arguments (the deny list), in a
 * fixed order; *ret_n set to their count.
 * Static storage; thread-safe. Names this libseccomp cannot resolve on this arch are skipped by
 * scmp_filter_new() but still listed here. */
const char *const *scmp_denied_syscalls(size_t *ret_n);

/* Builds the filter for the native arch, BPF program included, so that loading it is only a
 * syscall. 0 or -errno. Not async-signal-safe (allocates). */
int scmp_filter_new(struct scmp_filter **ret);
/* Loads it into the calling thread, as libseccomp's seccomp_load() would: sets no_new_privs,
 * then seccomp(SECCOMP_SET_MODE_FILTER), no TSYNC. The kernel requires no_new_privs or
 * CAP_SYS_ADMIN; the shim sets no_new_privs itself first, as a step of its own. 0 or -errno
 * (the kernel's). Irreversible. Async-signal-safe: no allocation, only prctl and seccomp; the shim
 * calls it in a child that shares its memory (clone CLONE_VM | CLONE_VFORK). */
int scmp_filter_load(struct scmp_filter *f);
/* Writes a human-readable (PFC) or raw BPF form of the filter to fd. 0 or -errno. */
int scmp_filter_export_pfc(struct scmp_filter *f, int fd);
int scmp_filter_export_bpf(struct scmp_filter *f, int fd);
/* NULL-safe. */
void scmp_filter_free(struct scmp_filter *f);

#include "cleanup.h"
DEFINE_CLEANUP(struct scmp_filter *, scmp_filter_free)
