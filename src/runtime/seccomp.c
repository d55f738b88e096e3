/* The sandbox's seccomp profile: allow by default, refuse what Docker's default profile refuses to a
 * container without CAP_SYS_ADMIN (namespaces, mounts, kernel modules, keyrings, BPF, perf, clock and
 * reboot control, handle-based opens...). sbxd compiles it once with libseccomp and writes the raw BPF;
 * each sandbox loads those bytes with one prctl, so no sandbox start pays for compiling it. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/util.h"
#include "runtime/runtime.h"

/* Refused with EPERM whatever their arguments. */
static const char *const denied[] = {
    /* namespaces and mounts: the sandbox's own are set up before this filter applies */
    "unshare",
    "setns",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    /* kernel code and state */
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "syslog",
    "acct",
    "bpf",
    "perf_event_open",
    "lookup_dcookie",
    "quotactl",
    "quotactl_fd",
    "nfsservctl",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "vm86",
    "vm86old",
    "iopl",
    "ioperm",
    "pciconfig_read",
    "pciconfig_write",
    "pciconfig_iobase",
    /* the host's clocks */
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_settime64",
    "clock_adjtime",
    "clock_adjtime64",
    "adjtimex",
    /* keyrings are not namespaced */
    "keyctl",
    "add_key",
    "request_key",
    /* escapes and kernel attack surface */
    "open_by_handle_at",
    "name_to_handle_at",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "fanotify_init",
    "kcmp",
    "process_vm_readv",
    "process_vm_writev",
};

static const unsigned long ns_flags[] = {CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,    CLONE_NEWUSER,
                                         CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP, CLONE_NEWTIME};

static int build(scmp_filter_ctx ctx)
{
    int r;
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
        int nr = seccomp_syscall_resolve_name(denied[i]);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not a syscall on this architecture */
        if ((r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0)) < 0)
            return r;
    }
    /* clone() with a namespace flag; clone3 passes its flags in memory a filter cannot read, so it
     * answers ENOSYS and libc falls back to clone(). */
    for (size_t i = 0; i < sizeof(ns_flags) / sizeof(ns_flags[0]); i++)
        if ((r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                  SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]))) < 0)
            return r;
    if ((r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0)) < 0)
        return r;
    /* Faking terminal input into another session (TIOCSTI) and console ioctls (TIOCLINUX). */
    if ((r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                              SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI))) < 0 ||
        (r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                              SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCLINUX))) < 0)
        return r;
    return 0;
}

int runtime_seccomp_export(const char *path, sbx_error *err)
{
    /* Other architectures' system calls (int 0x80 on x86-64) would bypass a native-only filter. */
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return sbx_error_set(err, -ENOMEM, "seccomp_init failed");
    int r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (r == 0)
        r = build(ctx);
    if (r < 0) {
        seccomp_release(ctx);
        return sbx_error_set(err, r, "seccomp profile: %s", strerror(-r));
    }
    _cleanup_free_ char *tmp = xasprintf("%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        seccomp_release(ctx);
        return sbx_error_set(err, -errno, "create %s: %m", tmp);
    }
    r = seccomp_export_bpf(ctx, fd);
    seccomp_release(ctx);
    if (r < 0 || fsync(fd) < 0) {
        close(fd);
        unlink(tmp);
        return sbx_error_set(err, r < 0 ? r : -errno, "write %s failed", tmp);
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        unlink(tmp);
        return sbx_error_set(err, -errno, "rename %s: %m", tmp);
    }
    return 0;
}
