/* core/seccomp: the deny list, the filter's exported form, and the filter at work in this
 * (Criterion-forked, so disposable) test process. No root needed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* libseccomp's own header, for the native arch and syscall numbers by name. */
#include <seccomp.h>

#include "core/seccomp.h"

static const char *const required[] = {
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "bpf",
    "perf_event_open",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "keyctl",
    "add_key",
    "request_key",
    "open_by_handle_at",
    "userfaultfd",
    "acct",
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "clock_adjtime",
    "iopl",
    "ioperm",
    "syslog",
    "quotactl",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
};

static bool listed(const char *name)
{
    size_t n;
    const char *const *v = scmp_denied_syscalls(&n);

    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], name) == 0)
            return true;
    return false;
}

/* Whether this kernel takes seccomp filters with the action the filter's bad-arch path uses
 * (SECCOMP_RET_KILL_PROCESS, Linux 4.14): asked of seccomp(2) itself, which a kernel without
 * CONFIG_SECCOMP_FILTER, or a filter around the tests that refuses seccomp(2), answers with an
 * error. The tests that load the filter skip there, with the reason; so do those that only
 * build it, when libseccomp, which asks the kernel what it supports, cannot. */
static void need_seccomp_filters(void)
{
    uint32_t action = SECCOMP_RET_KILL_PROCESS;

    if (syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action) < 0)
        cr_skip_test("this kernel loads no seccomp filter killing the process (seccomp: %s)",
                     strerror(errno));
}

static struct scmp_filter *new_filter(void)
{
    struct scmp_filter *f = NULL;
    int r = scmp_filter_new(&f);

    if (r < 0)
        need_seccomp_filters();
    cr_assert_eq(r, 0, "scmp_filter_new: %s", strerror(-r));
    return f;
}

/* The filter's raw BPF as seccomp_export_bpf() writes it; *ret_size in bytes. */
static unsigned char *exported_bpf(struct scmp_filter *f, size_t *ret_size)
{
    int fd = memfd_create("bpf", MFD_CLOEXEC);
    struct stat st;

    cr_assert(fd >= 0);
    cr_assert_eq(scmp_filter_export_bpf(f, fd), 0);
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert(st.st_size > 0);
    unsigned char *b = malloc((size_t)st.st_size);
    cr_assert_eq(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *ret_size = (size_t)st.st_size;
    return b;
}

static char *pfc_text(void)
{
    struct scmp_filter *f = NULL;
    char *buf = NULL;
    int fd = memfd_create("pfc", MFD_CLOEXEC);

    cr_assert(fd >= 0);
    f = new_filter();
    cr_assert_eq(scmp_filter_export_pfc(f, fd), 0);
    scmp_filter_free(f);
    off_t size = lseek(fd, 0, SEEK_END);
    cr_assert(size > 0);
    buf = calloc(1, (size_t)size + 1);
    cr_assert_eq(pread(fd, buf, (size_t)size, 0), size);
    close(fd);
    return buf;
}

Test(scmp, deny_list_has_every_required_syscall)
{
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        cr_expect(listed(required[i]), "'%s' missing from the deny list", required[i]);
}

Test(scmp, deny_list_has_no_duplicates)
{
    size_t n;
    const char *const *v = scmp_denied_syscalls(&n);

    for (size_t i = 0; i < n; i++)
        for (size_t k = i + 1; k < n; k++)
            cr_expect(strcmp(v[i], v[k]) != 0, "'%s' listed twice", v[i]);
}

Test(scmp, exported_filter_denies_each_required_syscall_with_eperm)
{
    char *pfc = pfc_text();

    /* The PFC names rules by number; check a few by their SYS_ numbers. */
    const long nrs[] = {SYS_mount, SYS_umount2,    SYS_unshare,     SYS_setns,  SYS_ptrace,
                        SYS_bpf,   SYS_kexec_load, SYS_init_module, SYS_reboot, SYS_keyctl};
    for (size_t i = 0; i < sizeof(nrs) / sizeof(nrs[0]); i++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "if ($syscall == %ld)", nrs[i]);
        char *at = strstr(pfc, needle);
        cr_expect(at, "no rule for syscall %ld", nrs[i]);
        if (at) {
            char *act = strstr(at, "action ERRNO(1)");
            char *nextif = strstr(at + 1, "if ($syscall");
            cr_expect(act && (!nextif || act < nextif), "syscall %ld is not ERRNO(EPERM)", nrs[i]);
        }
    }
    /* Foreign arch: killed. */
    cr_expect(strstr(pfc, "KILL_PROCESS"), "bad-arch action is not KILL_PROCESS:\n%s", pfc);
    free(pfc);
}

Test(scmp, exported_bpf_is_not_empty)
{
    struct scmp_filter *f = NULL;
    int fd = memfd_create("bpf", MFD_CLOEXEC);

    f = new_filter();
    cr_assert_eq(scmp_filter_export_bpf(f, fd), 0);
    /* struct sock_filter is 8 bytes; a filter with ~60 rules is well over 100 instructions. */
    off_t size = lseek(fd, 0, SEEK_END);
    cr_expect(size >= 8 * 60 && size % 8 == 0, "bpf size %lld", (long long)size);
    scmp_filter_free(f);
    close(fd);
}

/* The filter at work: this test process loads it (no_new_privs lets a non-root process). */
static void load_filter(void)
{
    struct scmp_filter *f = NULL;

    need_seccomp_filters();
    cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    f = new_filter();
    cr_assert_eq(scmp_filter_load(f), 0);
    scmp_filter_free(f);
}

Test(scmp, loaded_filter_returns_eperm_and_allows_the_rest)
{
    load_filter();
    errno = 0;
    cr_expect_eq(mount("none", "/tmp", "tmpfs", 0, NULL), -1);
    cr_expect_eq(errno, EPERM);
    errno = 0;
    cr_expect_eq(unshare(CLONE_NEWUSER), -1, "unshare(CLONE_NEWUSER) allowed");
    cr_expect_eq(errno, EPERM);
    errno = 0;
    cr_expect_eq(syscall(SYS_ptrace, 0, 0, 0, 0), -1);
    cr_expect_eq(errno, EPERM);
    /* Ordinary work goes on. */
    cr_expect(getpid() > 0);
    pid_t p = fork();
    cr_assert(p >= 0, "fork blocked: %s", strerror(errno));
    if (p == 0)
        _exit(0);
}

Test(scmp, clone_with_namespace_flags_is_refused_and_clone3_hidden)
{
    struct clone_args ca;

    load_filter();
    errno = 0;
    cr_expect_eq(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0), -1);
    cr_expect_eq(errno, EPERM);
    errno = 0;
    cr_expect_eq(syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0), -1);
    cr_expect_eq(errno, EPERM);
    memset(&ca, 0, sizeof(ca));
    ca.exit_signal = SIGCHLD;
    errno = 0;
    cr_expect_eq(syscall(SYS_clone3, &ca, sizeof(ca)), -1);
    cr_expect_eq(errno, ENOSYS);
}

#if defined(__x86_64__)
Test(scmp, x32_syscall_numbers_take_the_bad_arch_path)
{
    struct scmp_filter *f = NULL;
    int fd = memfd_create("bpf", MFD_CLOEXEC);
    bool found = false;

    f = new_filter();
    cr_assert_eq(scmp_filter_export_bpf(f, fd), 0);
    off_t size = lseek(fd, 0, SEEK_END);
    unsigned char *b = malloc((size_t)size);
    cr_assert_eq(pread(fd, b, (size_t)size, 0), size);
    /* struct sock_filter {u16 code; u8 jt, jf; u32 k}: a BPF_JMP|BPF_JGE|BPF_K (0x35) against
     * __X32_SYSCALL_BIT is libseccomp's x32 check. */
    for (off_t i = 0; i + 8 <= size; i += 8) {
        uint16_t code;
        uint32_t k;
        memcpy(&code, b + i, 2);
        memcpy(&k, b + i + 4, 4);
        found |= code == 0x35 && k == 0x40000000u;
    }
    cr_expect(found, "no x32 check in the filter");
    free(b);
    scmp_filter_free(f);
    close(fd);
}
#endif

Test(scmp, load_sets_no_new_privs_itself)
{
    struct scmp_filter *f = NULL;

    /* As seccomp_load() does by default (SCMP_FLTATR_CTL_NNP), so a caller without
     * CAP_SYS_ADMIN that forgot it still gets the filter, never a weaker process. */
    need_seccomp_filters();
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 0)
        cr_skip_test(
            "no_new_privs is set already when the tests start (a NoNewPrivileges= service, "
            "a container): that the load sets it cannot be seen");
    f = new_filter();
    cr_assert_eq(scmp_filter_load(f), 0);
    cr_expect_eq(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), 1);
    errno = 0;
    cr_expect_eq(syscall(SYS_ptrace, 0, 0, 0, 0), -1);
    cr_expect_eq(errno, EPERM);
    scmp_filter_free(f);
}

/* The program the kernel holds, read back with PTRACE_SECCOMP_GET_FILTER, is byte for byte what
 * seccomp_export_bpf() writes for the same rules, i.e. what seccomp_load() would have made.
 * Where ptrace is refused (Yama's ptrace_scope 3, a filter around the tests), or the request is
 * (it needs CAP_SYS_ADMIN, a tracer under no seccomp filter and CONFIG_CHECKPOINT_RESTORE), the
 * test skips and says which. */
enum { TRACEME_REFUSED = 86 };

Test(scmp, installed_program_is_the_exported_one)
{
    struct scmp_filter *f = NULL;
    size_t size;
    int st;

    if (geteuid() != 0)
        cr_skip_test("PTRACE_SECCOMP_GET_FILTER needs CAP_SYS_ADMIN");
    need_seccomp_filters();
    f = new_filter();
    unsigned char *want = exported_bpf(f, &size);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        /* Tracee before the filter: it denies ptrace. */
        if (ptrace(PTRACE_TRACEME, 0, 0, 0) < 0)
            _exit(TRACEME_REFUSED);
        if (scmp_filter_load(f) < 0)
            _exit(1);
        raise(SIGSTOP);
        _exit(0);
    }
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    if (WIFEXITED(st) && WEXITSTATUS(st) == TRACEME_REFUSED)
        cr_skip_test("ptrace(PTRACE_TRACEME) is refused here (Yama ptrace_scope, or a seccomp "
                     "filter around the tests)");
    cr_assert(WIFSTOPPED(st), "child did not stop: status %#x", st);
    long n = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 0, NULL);
    if (n < 0 && (errno == EACCES || errno == EINVAL || errno == EIO)) {
        int err = errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        cr_skip_test("PTRACE_SECCOMP_GET_FILTER is refused here (%s): it needs CAP_SYS_ADMIN, a "
                     "tracer under no seccomp filter, CONFIG_CHECKPOINT_RESTORE",
                     strerror(err));
    }
    cr_assert_eq(n, (long)(size / 8), "kernel holds %ld instructions, export has %zu (%s)", n,
                 size / 8, n < 0 ? strerror(errno) : "");
    unsigned char *got = calloc((size_t)n, 8);
    cr_assert_eq(ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 0, got), n);
    cr_expect(memcmp(got, want, size) == 0, "installed program differs from the export");
    /* Exactly one filter was installed. */
    errno = 0;
    cr_expect_eq(ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 1, NULL), -1);
    cr_expect_eq(errno, ENOENT);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    free(got);
    free(want);
    scmp_filter_free(f);
}

#if defined(__x86_64__)
static void x32_getpid(void)
{
    (void)syscall(0x40000000 /* __X32_SYSCALL_BIT */ | SYS_getpid);
}

static void i386_getpid(void)
{
    long ret;
    /* 20 is getpid in the i386 table; int 0x80 takes it from a 64-bit process too. */
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
    (void)ret;
}

/* fork, (with_filter: load it), what(), _exit(0): the child's wait status. */
static int status_of(void (*what)(void), bool with_filter)
{
    struct scmp_filter *f = NULL;
    int st;

    if (with_filter)
        need_seccomp_filters();
    f = new_filter();
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        /* A SIGSYS kill would dump core into the test's folder. */
        struct rlimit nocore = {0, 0};
        (void)setrlimit(RLIMIT_CORE, &nocore);
        (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        if (with_filter && scmp_filter_load(f) < 0)
            _exit(1);
        what();
        _exit(0);
    }
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    scmp_filter_free(f);
    return st;
}

Test(scmp, x32_syscall_kills_the_process)
{
    int st = status_of(x32_getpid, true);

    cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS, "status %#x, not killed by SIGSYS", st);
}

/* The kernel's answer to int 0x80 where ia32 emulation is off (ia32_emulation=0, or a kernel
 * that refuses it) is SIGSEGV. That fault is the probe's answer, so the child takes it itself:
 * its handler is installed with the raw system call, behind the back of ASan's and TSan's
 * sigaction interceptors, so no sanitizer sees the fault and writes a report about it. */
enum { PROBE_FAULTED = 86 };

static void probe_on_fault(int sig)
{
    (void)sig;
    syscall(SYS_exit_group, PROBE_FAULTED);
}

static void probe_restorer(void)
{
    /* Never reached: probe_on_fault does not return. x86-64 needs SA_RESTORER all the same. */
    syscall(SYS_exit_group, PROBE_FAULTED);
}

static void i386_getpid_or_exit(void)
{
    struct {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)(void);
        unsigned long mask;
    } act = {probe_on_fault, 0x04000000UL /* SA_RESTORER */ | SA_NODEFER, probe_restorer, 0};

    if (syscall(SYS_rt_sigaction, SIGSEGV, &act, NULL, sizeof act.mask) < 0)
        syscall(SYS_exit_group, 1);
    i386_getpid();
}

Test(scmp, i386_syscall_kills_the_process)
{
    int st = status_of(i386_getpid_or_exit, false);

    if (WIFEXITED(st) && WEXITSTATUS(st) == PROBE_FAULTED)
        cr_skip_test("int 0x80 faults here without the filter: this kernel runs no i386 calls");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        cr_skip_test("int 0x80 fails here without the filter (status %#x)", st);
    st = status_of(i386_getpid, true);
    cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS, "status %#x, not killed by SIGSYS", st);
}
#endif

/* Runs a classic BPF seccomp program on one seccomp_data as the kernel would, for the
 * instructions libseccomp emits; any other instruction fails the test rather than guess. */
static uint32_t run_bpf(const struct sock_filter *p, size_t n, const struct seccomp_data *d)
{
    uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = {0};

    for (size_t pc = 0; pc < n; pc++) {
        const struct sock_filter *i = &p[pc];
        switch (i->code) {
        case BPF_LD | BPF_W | BPF_ABS:
            cr_assert(i->k % 4 == 0 && i->k + 4 <= sizeof(*d), "load at %u", i->k);
            memcpy(&a, (const char *)d + i->k, 4);
            break;
        case BPF_LD | BPF_MEM:
            a = mem[i->k % BPF_MEMWORDS];
            break;
        case BPF_LDX | BPF_MEM:
            x = mem[i->k % BPF_MEMWORDS];
            break;
        case BPF_ST:
            mem[i->k % BPF_MEMWORDS] = a;
            break;
        case BPF_STX:
            mem[i->k % BPF_MEMWORDS] = x;
            break;
        case BPF_ALU | BPF_AND | BPF_K:
            a &= i->k;
            break;
        case BPF_JMP | BPF_JA:
            pc += i->k;
            break;
        case BPF_JMP | BPF_JEQ | BPF_K:
            pc += a == i->k ? i->jt : i->jf;
            break;
        case BPF_JMP | BPF_JGT | BPF_K:
            pc += a > i->k ? i->jt : i->jf;
            break;
        case BPF_JMP | BPF_JGE | BPF_K:
            pc += a >= i->k ? i->jt : i->jf;
            break;
        case BPF_JMP | BPF_JSET | BPF_K:
            pc += (a & i->k) ? i->jt : i->jf;
            break;
        case BPF_RET | BPF_K:
            return i->k;
        default:
            cr_assert_fail("instruction %#x at %zu not modelled", i->code, pc);
        }
    }
    cr_assert_fail("program runs off its end");
    return 0;
}

static uint32_t verdict(const struct sock_filter *p, size_t n, uint32_t arch, int nr, uint64_t arg0)
{
    struct seccomp_data d;

    memset(&d, 0, sizeof(d));
    d.arch = arch;
    d.nr = nr;
    d.args[0] = arg0;
    return run_bpf(p, n, &d);
}

/* Every syscall number of the native arch gets the answer seccomp.h promises, whatever shape
 * libseccomp gave the program (rule order, binary tree): EPERM for the deny list, ENOSYS for
 * clone3 and memfd_secret, EPERM for clone with a CLONE_NEW* flag and for socket(AF_VSOCK),
 * allow for the rest; other arches killed. */
Test(scmp, program_answers_every_syscall_as_documented)
{
    const uint32_t eperm = SECCOMP_RET_ERRNO | EPERM, enosys = SECCOMP_RET_ERRNO | ENOSYS;
    const uint32_t arch = seccomp_arch_native();
    struct scmp_filter *f = NULL;
    bool denied[1024] = {false};
    size_t size, n_names;
    const char *const *names = scmp_denied_syscalls(&n_names);

    f = new_filter();
    const struct sock_filter *p = (const struct sock_filter *)exported_bpf(f, &size);
    size_t n = size / sizeof(*p);
    for (size_t i = 0; i < n_names; i++) {
        int nr = seccomp_syscall_resolve_name(names[i]);
        if (nr >= 0 && nr < (int)ELEMENTSOF(denied))
            denied[nr] = true;
    }
    int nr_clone = seccomp_syscall_resolve_name("clone");
    int nr_clone3 = seccomp_syscall_resolve_name("clone3");
    int nr_secret = seccomp_syscall_resolve_name("memfd_secret");
    int nr_socket = seccomp_syscall_resolve_name("socket");
    for (int nr = 0; nr < (int)ELEMENTSOF(denied); nr++) {
        if (nr == nr_clone)
            continue;
        uint32_t want = denied[nr]                           ? eperm
                        : nr == nr_clone3 || nr == nr_secret ? enosys
                                                             : SECCOMP_RET_ALLOW;
        cr_expect_eq(verdict(p, n, arch, nr, 0), want, "syscall %d: %#x, want %#x", nr,
                     verdict(p, n, arch, nr, 0), want);
    }
    const uint64_t ns[] = {CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                           CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET};
    for (size_t i = 0; i < ELEMENTSOF(ns); i++) {
        cr_expect_eq(verdict(p, n, arch, nr_clone, ns[i] | SIGCHLD), eperm, "flag %#llx",
                     (unsigned long long)ns[i]);
        cr_expect_eq(verdict(p, n, arch, nr_clone, ns[i] | CLONE_VM | (1ULL << 40)), eperm);
    }
    cr_expect_eq(verdict(p, n, arch, nr_clone, SIGCHLD), SECCOMP_RET_ALLOW);
    cr_expect_eq(verdict(p, n, arch, nr_clone, CLONE_VM | CLONE_THREAD | CLONE_SIGHAND),
                 SECCOMP_RET_ALLOW);
    /* All 32 bits above the flags: an arg compare must not be a 32-bit one in disguise. */
    cr_expect_eq(verdict(p, n, arch, nr_clone, 0xffffffff00000000ULL | SIGCHLD), SECCOMP_RET_ALLOW);
    /* socket's domain is an int: the kernel drops the upper half, so the filter must too. */
    cr_expect_eq(verdict(p, n, arch, nr_socket, AF_VSOCK), eperm);
    cr_expect_eq(verdict(p, n, arch, nr_socket, 1ULL << 32 | AF_VSOCK), eperm);
    cr_expect_eq(verdict(p, n, arch, nr_socket, 0xffffffff00000000ULL | AF_VSOCK), eperm);
    const uint64_t domains[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET, AF_VSOCK + 1};
    for (size_t i = 0; i < ELEMENTSOF(domains); i++)
        cr_expect_eq(verdict(p, n, arch, nr_socket, domains[i]), SECCOMP_RET_ALLOW, "domain %llu",
                     (unsigned long long)domains[i]);
#if defined(__x86_64__)
    cr_expect_eq(verdict(p, n, arch, 0x40000000 | 39, 0), SECCOMP_RET_KILL_PROCESS, "x32");
    cr_expect_eq(verdict(p, n, AUDIT_ARCH_I386, 20, 0), SECCOMP_RET_KILL_PROCESS, "i386");
#endif
    cr_expect_eq(verdict(p, n, 0, 0, 0), SECCOMP_RET_KILL_PROCESS, "arch 0");
    free((void *)p);
    scmp_filter_free(f);
}

/* ---- what needs no privilege: io_uring, vsock, memfd_secret -----------------------------------
 * For these the filter is the only wall, so each test first asks the kernel without it. Where
 * the kernel lacks the feature, the filtered call still shows the filter's answer (it comes
 * before the syscall table, so EPERM is not the kernel's ENOSYS or EAFNOSUPPORT); only where
 * the kernel itself answers the same errno is the live check no evidence, and the test says so
 * and rests on the program's verdict, checked everywhere. */

/* The filter's verdict on syscall `name` with arg0, from its exported program. */
static uint32_t filter_verdict(const char *name, uint64_t arg0)
{
    struct scmp_filter *f = NULL;
    size_t size;
    int nr = seccomp_syscall_resolve_name(name);

    cr_assert(nr >= 0, "%s is not a syscall here", name);
    cr_assert_eq(scmp_filter_new(&f), 0);
    struct sock_filter *p = (struct sock_filter *)(void *)exported_bpf(f, &size);
    uint32_t v = verdict(p, size / sizeof(*p), seccomp_arch_native(), nr, arg0);
    free(p);
    scmp_filter_free(f);
    return v;
}

/* 0 when this process may make an io_uring (closed again), else -errno. */
static int probe_io_uring(void)
{
    struct io_uring_params params;
    long fd;

    memset(&params, 0, sizeof(params));
    fd = syscall(SYS_io_uring_setup, 1, &params);
    if (fd < 0)
        return -errno;
    close((int)fd);
    return 0;
}

/* 0 when this process may make a stream socket of the domain (closed again), else -errno. The
 * domain as the raw register: upper bits included. */
static int probe_socket(uint64_t domain)
{
    long fd = syscall(SYS_socket, domain, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    close((int)fd);
    return 0;
}

/* Says what the kernel's own answer means for the live check that follows. */
static void note_kernel_answer(const char *what, int before, int filter_errno)
{
    if (before == 0)
        cr_log_info("%s: the kernel allows it without the filter; the live check counts", what);
    else if (before == -filter_errno)
        cr_log_warn("%s: the kernel itself answers %s without the filter: the live check below "
                    "proves nothing, the program's verdict does",
                    what, strerror(filter_errno));
    else
        cr_log_info("%s: the kernel lacks it (%s); the filter answers before the kernel, so the "
                    "live check still tells the filter's answer from the kernel's",
                    what, strerror(-before));
}

Test(scmp, io_uring_is_refused)
{
    const uint32_t eperm = SECCOMP_RET_ERRNO | EPERM;
    struct io_uring_params params;

    cr_expect_eq(filter_verdict("io_uring_setup", 1), eperm);
    cr_expect_eq(filter_verdict("io_uring_enter", 0), eperm);
    cr_expect_eq(filter_verdict("io_uring_register", 0), eperm);
    note_kernel_answer("io_uring_setup", probe_io_uring(), EPERM);
    load_filter();
    memset(&params, 0, sizeof(params));
    errno = 0;
    cr_expect_eq(syscall(SYS_io_uring_setup, 1, &params), -1, "io_uring_setup gave an fd");
    cr_expect_eq(errno, EPERM, "io_uring_setup: %s", strerror(errno));
    /* Without the filter a bad fd answers EBADF (or ENOSYS): EPERM is the filter's. */
    errno = 0;
    cr_expect_eq(syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0), -1);
    cr_expect_eq(errno, EPERM, "io_uring_enter: %s", strerror(errno));
    errno = 0;
    cr_expect_eq(syscall(SYS_io_uring_register, -1, 0, NULL, 0), -1);
    cr_expect_eq(errno, EPERM, "io_uring_register: %s", strerror(errno));
}

Test(scmp, vsock_sockets_are_refused_and_others_are_not)
{
    int fd, sv[2];

    cr_expect_eq(filter_verdict("socket", AF_VSOCK), SECCOMP_RET_ERRNO | EPERM);
    cr_expect_eq(filter_verdict("socket", AF_UNIX), SECCOMP_RET_ALLOW);
    note_kernel_answer("socket(AF_VSOCK)", probe_socket(AF_VSOCK), EPERM);
    if (probe_socket(1ULL << 32 | AF_VSOCK) == 0)
        cr_log_info("socket(1 << 32 | AF_VSOCK) makes a vsock socket without the filter: the "
                    "kernel reads the domain as an int");
    load_filter();
    cr_expect_eq(probe_socket(AF_VSOCK), -EPERM);
    cr_expect_eq(probe_socket(1ULL << 32 | AF_VSOCK), -EPERM, "the upper half hid AF_VSOCK");
    errno = 0;
    cr_expect_eq(socket(AF_VSOCK, SOCK_DGRAM, 0), -1);
    cr_expect_eq(errno, EPERM);
    /* What jobs use goes on working. */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_expect(fd >= 0, "socket(AF_UNIX): %s", strerror(errno));
    if (fd >= 0)
        close(fd);
    cr_expect_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0, "socketpair: %s",
                 strerror(errno));
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_expect(fd >= 0, "socket(AF_INET): %s", strerror(errno));
    if (fd >= 0)
        close(fd);
}

Test(scmp, memfd_secret_answers_enosys)
{
    int nr = seccomp_syscall_resolve_name("memfd_secret");
    long fd;

    if (nr < 0)
        cr_skip_test("memfd_secret is not a syscall on this arch");
    cr_expect_eq(filter_verdict("memfd_secret", 0), SECCOMP_RET_ERRNO | ENOSYS);
    fd = syscall(nr, 0);
    note_kernel_answer("memfd_secret", fd < 0 ? -errno : 0, ENOSYS);
    if (fd >= 0)
        close((int)fd);
    load_filter();
    errno = 0;
    cr_expect_eq(syscall(nr, 0), -1, "memfd_secret gave an fd");
    cr_expect_eq(errno, ENOSYS, "memfd_secret: %s", strerror(errno));
}
