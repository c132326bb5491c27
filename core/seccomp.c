/* The job's seccomp filter (seccomp.h). What it refuses, and why it refuses rather than allows:
 *
 * A deny list, not an allow list in the manner of Docker's default profile, decided for now:
 * jobs run whatever the host has, linked against a libc newer or older than this build, and an
 * allow list written from this build's libseccomp (Debian 12's knows syscalls up to about Linux
 * 6.7) would answer EPERM to every syscall added since that libc then starts to use: Docker's
 * profile broke that way on clone3 and faccessat2 and had to be changed each time. What keeps jobs
 * from the host and from each other is the job user without capabilities, no_new_privs, the
 * namespaces and the cgroups; the filter shuts the kernel surfaces those leave reachable, and
 * a second time those they already shut (seccomp.h). The price of a deny list is that a new
 * surface stays open until it is listed (io_uring was one), so it is reviewed against Docker's
 * default profile (moby, profiles/seccomp/default.json) when the kernel or libseccomp moves on.
 * Last review: what Docker refuses a container without capabilities is refused here too, but
 * for personality (below) and for calls the kernel itself lets act only on the caller's own
 * processes and memory, or only with a capability the job lacks: fanotify_init (inode marks on
 * what the job may read, as inotify), the NUMA memory-policy calls, process_madvise,
 * vhangup, sethostname and setdomainname (the job's own UTS namespace).
 *
 * Reviewed and left allowed:
 *   personality: Docker allows only PER_LINUX, PER_LINUX32, UNAME26 and the query. The other
 *   flags (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, ADDR_COMPAT_LAYOUT, ...) change the layout and
 *   permissions of the caller's own later images, and the job's processes are already its own
 *   to do with as it likes: nothing another job or the host runs is touched. The way they once
 *   mattered, a set-user-ID exec, is shut twice (no_new_privs; the kernel drops those flags on
 *   such an exec), and MMAP_PAGE_ZERO still cannot map below vm.mmap_min_addr without
 *   CAP_SYS_RAWIO. Refusing them would break setarch -R and the programs that use it.
 * Refused beyond the deny list (scmp_filter_new):
 *   socket(AF_VSOCK, ...): vsock is not in the network namespace; a job without a network
 *   would still reach the hypervisor and the other VMs' services. As in Docker's profile.
 *   memfd_secret: its pages leave the kernel's direct map, splitting the host's huge direct-map
 *   pages for every process on it, a cost no cgroup limit of the job's counts; batch jobs have
 *   no use for it. ENOSYS, what a kernel booted without secretmem answers, so that programs
 *   that try it fall back as they would there. (Docker's profile allows it.) */
#include "seccomp.h"

#include <errno.h>
#include <linux/filter.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
/* libseccomp's header: <...> does not search this file's folder, so it cannot pick up ours. */
#include <seccomp.h>

#include "cleanup.h"
#include "proc.h"

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
    /* io_uring: its operations are syscalls run by the kernel on the ring's behalf, which no
     * seccomp filter sees (an openat or a connect in a ring is not one of ours to refuse), and
     * it has been a steady source of kernel bugs. EPERM is also the kernel's own answer when
     * kernel.io_uring_disabled forbids it, which programs already fall back from. */
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
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
    scmp_filter_ctx ctx; /* the rules, kept for the exports */
    /* The program seccomp_load() would generate at load time, generated once at build time:
     * walking libseccomp's rule database costs ~0.4 ms, on every job's start path. */
    struct sock_fprog prog;
    unsigned int flags; /* SECCOMP_FILTER_FLAG_* that seccomp_load() derives from ctx */
    bool nnp;           /* SCMP_FLTATR_CTL_NNP: seccomp_load() sets no_new_privs itself */
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
    free(f->prog.filter);
    free(f);
}

/* What seccomp_load() in libseccomp 2.5.4 (src/system.c, sys_filter_load) does besides
 * generating the program: no_new_privs if SCMP_FLTATR_CTL_NNP (on by default), and flags from
 * the CTL_LOG and CTL_SSB attributes (off by default). TSYNC (off by default) needs thread
 * syncing and its -ESRCH dance; we never set it, so refuse it rather than half-do it. */
static int read_load_attrs(struct scmp_filter *f)
{
    uint32_t v;
    int r;

    r = seccomp_attr_get(f->ctx, SCMP_FLTATR_CTL_TSYNC, &v);
    if (r < 0)
        return r;
    if (v)
        return -EOPNOTSUPP;
    r = seccomp_attr_get(f->ctx, SCMP_FLTATR_CTL_NNP, &v);
    if (r < 0)
        return r;
    f->nnp = v != 0;
    r = seccomp_attr_get(f->ctx, SCMP_FLTATR_CTL_LOG, &v);
    if (r < 0)
        return r;
    if (v)
        f->flags |= SECCOMP_FILTER_FLAG_LOG;
    r = seccomp_attr_get(f->ctx, SCMP_FLTATR_CTL_SSB, &v);
    if (r < 0)
        return r;
    if (v)
        f->flags |= SECCOMP_FILTER_FLAG_SPEC_ALLOW;
    return 0;
}

/* seccomp_export_bpf() writes the very program seccomp_load() gives the kernel (both run
 * libseccomp's gen_bpf_generate); 2.5.4 has no in-memory export, hence the memfd (a pipe could
 * hold less than the largest program when the user's pipe quota is spent). */
static int make_program(struct scmp_filter *f)
{
    _cleanup_close_ int fd = memfd_create("scmp-bpf", MFD_CLOEXEC);
    char *buf = NULL;
    size_t size;
    int r;

    if (fd < 0)
        return -errno;
    r = read_load_attrs(f);
    if (r < 0)
        return r;
    r = seccomp_export_bpf(f->ctx, fd);
    if (r < 0)
        return r;
    if (lseek(fd, 0, SEEK_SET) < 0)
        return -errno;
    r = proc_read_fd(fd, BPF_MAXINSNS * sizeof(struct sock_filter), &buf, &size);
    if (r < 0)
        return r == -EFBIG ? -EINVAL : r;
    if (size == 0 || size % sizeof(struct sock_filter) != 0) {
        free(buf);
        return -EINVAL;
    }
    f->prog.filter = (struct sock_filter *)(void *)buf;
    f->prog.len = (unsigned short)(size / sizeof(struct sock_filter));
    return 0;
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
    /* A binary tree over the syscall numbers, not a chain: the same answers, but at every load
     * the kernel runs the program once per syscall number (seccomp_cache_prepare, to find the
     * always-allowed ones), and a chain of ~60 checks made that half the load's cost. */
    r = seccomp_attr_set(f->ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
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
    /* The domain is an int: the kernel ignores the upper 32 bits of the register, so must the
     * comparison, or AF_VSOCK | 1 << 32 would pass. */
    r = seccomp_rule_add(f->ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1,
                         SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffu, AF_VSOCK));
    if (r < 0)
        return r;
    r = seccomp_rule_add(f->ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(memfd_secret), 0);
    if (r < 0 && r != -EDOM && r != -EFAULT)
        return r;
    /* ENOSYS, not EPERM: glibc (>= 2.34) then falls back to clone(2), which we can inspect. */
    r = seccomp_rule_add(f->ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (r < 0)
        return r;
    r = make_program(f);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(f);
    return 0;
}

int scmp_filter_load(struct scmp_filter *f)
{
    /* Only syscalls: this may run in a vfork-style child. Unlike seccomp_load(), a kernel error
     * comes back as itself, not as -ECANCELED (libseccomp's default without API_SYSRAWRC). */
    if (f->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, f->flags, &f->prog) < 0)
        return -errno;
    return 0;
}

int scmp_filter_export_pfc(struct scmp_filter *f, int fd)
{
    return seccomp_export_pfc(f->ctx, fd);
}

int scmp_filter_export_bpf(struct scmp_filter *f, int fd)
{
    return seccomp_export_bpf(f->ctx, fd);
}
