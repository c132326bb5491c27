#include "seccomp.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
/* libseccomp's header: <...> does not search this file's folder, so it cannot pick up ours. */
#include <seccomp.h>

/* Keep in sync with the comment in seccomp.h. The mount API (fsopen ... mount_setattr) is here
 * with mount itself: blocking one without the other would block nothing. */
static const char *const denied[] = {
    /* mounts and the filesystem tree */
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    /* namespaces */
    "unshare",
    "setns",
    /* kernel, modules, boot */
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "nfsservctl",
    "_sysctl",
    "uselib",
    "create_module",
    "get_kernel_syms",
    "query_module",
    /* tracing and other processes' memory */
    "bpf",
    "perf_event_open",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    /* keyrings */
    "keyctl",
    "add_key",
    "request_key",
    /* file handles (container escapes by inode number) */
    "open_by_handle_at",
    /* page-fault handling from user space (widens kernel race windows) */
    "userfaultfd",
    /* clocks */
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "clock_adjtime",
    "stime",
    /* raw hardware */
    "iopl",
    "ioperm",
    "vm86",
    "vm86old",
};

/* CLONE_NEW* flags refused in clone(2)'s flags argument (arg 0 on every arch we build for).
 * CLONE_NEWTIME is left out: its bit is part of CSIGNAL in clone(2). */
static const unsigned long clone_ns_flags[] = {
    CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
    CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET,
};

struct scmp_filter {
    scmp_filter_ctx ctx;
};

const char *const *scmp_denied_syscalls(size_t *ret_n)
{
    *ret_n = ELEMENTSOF(denied);
    return denied;
}

void scmp_filter_free(struct scmp_filter *f)
{
    if (!f)
        return;
    if (f->ctx)
        seccomp_release(f->ctx);
    free(f);
}

int scmp_filter_new(struct scmp_filter **ret)
{
    _cleanup_(scmp_filter_freep) struct scmp_filter *f = calloc(1, sizeof(*f));
    int r;

    if (!f)
        return -ENOMEM;
    f->ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!f->ctx)
        return -ENOMEM;
    /* Another arch's syscall numbers mean other syscalls: never let them through. On x86_64
     * libseccomp also sends x32 numbers (bit 30 set) to the bad-arch action. */
    r = seccomp_attr_set(f->ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (r < 0)
        return r;
    for (size_t i = 0; i < ELEMENTSOF(denied); i++) {
        int nr = seccomp_syscall_resolve_name(denied[i]);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not a syscall on this arch (e.g. vm86 on x86_64) */
        r = seccomp_rule_add(f->ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
        /* A pseudo-syscall number (negative) for this arch is fine to skip as well. */
        if (r < 0 && r != -EDOM && r != -EFAULT)
            return r;
    }
    for (size_t i = 0; i < ELEMENTSOF(clone_ns_flags); i++) {
        r = seccomp_rule_add(f->ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, clone_ns_flags[i], clone_ns_flags[i]));
        if (r < 0)
            return r;
    }
    /* ENOSYS, not EPERM: glibc (>= 2.34) then falls back to clone(2), which we can inspect. */
    r = seccomp_rule_add(f->ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(f);
    return 0;
}

int scmp_filter_load(struct scmp_filter *f)
{
    return seccomp_load(f->ctx);
}

int scmp_filter_export_pfc(struct scmp_filter *f, int fd)
{
    return seccomp_export_pfc(f->ctx, fd);
}

int scmp_filter_export_bpf(struct scmp_filter *f, int fd)
{
    return seccomp_export_bpf(f->ctx, fd);
}
