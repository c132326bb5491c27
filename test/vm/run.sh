#!/usr/bin/env bash
# The VM test tier (make test-vm): boots Debian 12's kernel in qemu (TCG) with an initramfs
# holding the static runjob binary, busybox and test/vm/guest-tests.sh, once with cgroup v2 and
# once with only cgroup v1 hierarchies, and reports the guest's PASS:/FAIL: lines.
#
#   test/vm/run.sh [v2] [v1]     default: both boots, v2 first
#
# Environment:
#   RUNJOB_BIN   the static binary to test (default bin/runjob)
#   CG_CHANGE_BIN  the static test/vm/cg_change.c (default $BUILD/test/vm/cg_change; make
#                tests builds it); missing: the guest fails cgroup-change-limits
#   VM_DIR       cache dir (default build/vm): kernel package, unpacked tree, console logs;
#                each run builds its initramfs and scratch disk in its own VM_DIR/work.PID
#   VM_TIMEOUT   seconds one boot may take before qemu is killed (default 300)
#   VM_TESTS     space-separated guest test names to run (default: all)
#   VM_KEEP      1: keep the initramfs staging dir
#   VM_GUEST_SCRIPT  run this script in the guest instead of test/vm/guest-tests.sh (debugging)
#
# Output: every guest result line prefixed with the boot's mode ("PASS: v2/cpu-throttle"),
# the console log of each boot in $VM_DIR/console-<mode>.log, and a last line
# "N passed, N failed". Exit status 0 only if nothing failed. A boot that does not reach the
# end of the guest suite (hang, panic, timeout) counts as one more failure. A host that cannot
# provide what the tier runs on (qemu and busybox-static not installable, no Debian kernel
# package to download and none cached: no apt, no network) skips the tier with one SKIP line.
# qemu runs with TCG, never KVM, so /dev/kvm and nested virtualisation do not matter.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/test/vm
RUNJOB_BIN=${RUNJOB_BIN:-$ROOT/bin/runjob}
case ${BUILD:-build} in /*) _b=${BUILD} ;; *) _b=$ROOT/${BUILD:-build} ;; esac
CG_CHANGE_BIN=${CG_CHANGE_BIN:-$_b/test/vm/cg_change}
VM_DIR=${VM_DIR:-$ROOT/build/vm}
VM_TIMEOUT=${VM_TIMEOUT:-300}
VM_TESTS=${VM_TESTS:-}
MODES=("$@")
[ ${#MODES[@]} -eq 0 ] && MODES=(v2 v1)

T0=$(date +%s)
PASSED=0
FAILED=0
QEMU_PID=
TAIL_PID=
WORK=$VM_DIR/work.$$

log() { echo "# vm: $*"; }
die() {
    echo "FAIL: vm/setup -- $*"
    echo "0 passed, $((FAILED + 1)) failed"
    exit 1
}
# What the host lacks, not what the test found: the tier cannot run here.
skip_tier() {
    echo "SKIP: vm -- $*"
    echo "0 passed, 0 failed"
    exit 0
}

cleanup() {
    # Only the processes this script started, by pid.
    [ -n "$QEMU_PID" ] && kill -KILL "$QEMU_PID" 2>/dev/null
    [ -n "$TAIL_PID" ] && kill "$TAIL_PID" 2>/dev/null
    [ "${VM_KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- host packages ---------------------------------------------------------------------------
mkdir -p "$VM_DIR"
need_pkgs=()
for p in qemu-system-x86 busybox-static; do
    dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}" \
        >"$VM_DIR/apt.log" 2>&1 ||
        skip_tier "${need_pkgs[*]} not installed and apt-get install failed (run apt-get update first?): $(tail -n 1 "$VM_DIR/apt.log")"
fi
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || skip_tier "$BUSYBOX missing (apt-get install busybox-static)"
command -v qemu-system-x86_64 >/dev/null || skip_tier "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
[ -x "$RUNJOB_BIN" ] || die "$RUNJOB_BIN missing: run make first"
file_out=$(LC_ALL=C "$BUSYBOX" od -An -c -N 4 "$RUNJOB_BIN" 2>/dev/null | tr -d ' ')
[ "$file_out" = '177ELF' ] || die "$RUNJOB_BIN is not an ELF binary"

# --- kernel ----------------------------------------------------------------------------------
mkdir -p "$VM_DIR" "$WORK"
# Concurrent runs share the kernel cache: one downloads and unpacks, the others wait.
exec 9>"$VM_DIR/.kernel.lock"
flock 9
# The exact package linux-image-amd64 depends on (a glob would match every 6.1 kernel: 1.6 GB).
KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1)
if [ -z "$KPKG" ]; then
    # No apt lists: fall back to a kernel unpacked by an earlier run.
    KPKG=$(cd "$VM_DIR" && ls -d kernel-linux-image-* 2>/dev/null | sed 's/^kernel-//' | tail -n 1)
    [ -n "$KPKG" ] || skip_tier "no Debian kernel to boot: apt-cache cannot resolve linux-image-amd64 (apt-get update?) and none is cached in $VM_DIR"
    log "apt-cache has no linux-image-amd64; using cached $KPKG"
fi
KDIR=$VM_DIR/kernel-$KPKG
if [ ! -f "$KDIR/.unpacked" ]; then
    deb=$(ls "$VM_DIR/${KPKG}"_*.deb 2>/dev/null | head -n 1)
    if [ -z "$deb" ]; then
        log "downloading $KPKG"
        # apt-get download writes into the current directory; as root it warns that _apt cannot
        # write there (harmless: it downloads unsandboxed).
        (cd "$VM_DIR" && apt-get download "$KPKG") >"$VM_DIR/download.log" 2>&1 ||
            skip_tier "no Debian kernel to boot: apt-get download $KPKG failed (no network?): $(tail -n 1 "$VM_DIR/download.log")"
        deb=$(ls "$VM_DIR/${KPKG}"_*.deb 2>/dev/null | head -n 1)
        [ -n "$deb" ] || die "apt-get download $KPKG left no .deb in $VM_DIR"
    fi
    rm -rf "$KDIR"
    dpkg -x "$deb" "$KDIR" || die "dpkg -x $deb failed"
    touch "$KDIR/.unpacked"
fi
VMLINUZ=$(ls "$KDIR"/boot/vmlinuz-* 2>/dev/null | head -n 1)
[ -n "$VMLINUZ" ] || die "no vmlinuz in $KDIR/boot"
KVER=${VMLINUZ##*/vmlinuz-}
MODDIR=$KDIR/lib/modules/$KVER
[ -d "$MODDIR" ] || die "no $MODDIR"
flock -u 9

# --- kernel modules --------------------------------------------------------------------------
# What the guest needs beyond the builtins: the virtio PCI transport and block driver for the
# scratch disk, brd for a RAM disk, virtio-rng for early entropy (key generation in the guest).
# A module listed in modules.builtin is skipped; dependencies come from each .ko's modinfo.
WANT_MODULES="virtio_pci virtio_blk brd virtio_rng"
declare -A MOD_SEEN=()
MOD_ORDER=()
mod_path() { # name -> path relative to $MODDIR, or empty
    local n=${1//-/_} f
    while IFS= read -r f; do
        local b=${f##*/}
        b=${b%.ko*}
        [ "${b//-/_}" = "$n" ] && { echo "${f#"$MODDIR"/}"; return; }
    done < <(find "$MODDIR/kernel" -name '*.ko*')
}
mod_builtin() {
    local n=${1//-/_}
    sed 's#.*/##; s#\.ko$##; s#-#_#g' "$MODDIR/modules.builtin" | grep -qx "$n"
}
mod_resolve() {
    local n=${1//-/_} p deps d
    [ -n "${MOD_SEEN[$n]:-}" ] && return 0
    MOD_SEEN[$n]=1
    if mod_builtin "$n"; then return 0; fi
    p=$(mod_path "$n")
    [ -n "$p" ] || die "kernel module $n: neither builtin nor in $MODDIR"
    case $p in *.ko) ;; *) die "kernel module $p is compressed; teach run.sh to unpack it" ;; esac
    deps=$(tr '\0' '\n' <"$MODDIR/$p" | sed -n 's/^depends=//p' | head -n 1)
    for d in ${deps//,/ }; do mod_resolve "$d"; done
    MOD_ORDER+=("$p")
}
for m in $WANT_MODULES; do mod_resolve "$m"; done

# --- initramfs -------------------------------------------------------------------------------
STAGE=$WORK/stage
INITRD=$WORK/initrd.gz
rm -rf "$STAGE"
mkdir -p "$STAGE"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,root,etc,mnt,tests} \
    "$STAGE/lib/modules/$KVER"
cp "$BUSYBOX" "$STAGE/bin/busybox"
for a in $("$BUSYBOX" --list-full); do
    [ -e "$STAGE/$a" ] || ln -s /bin/busybox "$STAGE/$a"
done
cp "$RUNJOB_BIN" "$STAGE/bin/runjob"
[ -x "$CG_CHANGE_BIN" ] && cp "$CG_CHANGE_BIN" "$STAGE/tests/cg_change"
ln -sf runjob "$STAGE/bin/jobmanager"
ln -sf runjob "$STAGE/bin/jobctl"
: >"$STAGE/lib/modules/$KVER/load.order"
for p in "${MOD_ORDER[@]}"; do
    mkdir -p "$STAGE/lib/modules/$KVER/$(dirname "$p")"
    cp "$MODDIR/$p" "$STAGE/lib/modules/$KVER/$p"
    echo "$p" >>"$STAGE/lib/modules/$KVER/load.order"
done
cp "$HERE/init" "$STAGE/init"
cp "${VM_GUEST_SCRIPT:-$HERE/guest-tests.sh}" "$STAGE/tests/guest-tests.sh"
cp "$HERE/guest-lib.sh" "$STAGE/tests/"
chmod 0755 "$STAGE/init" "$STAGE/tests/guest-tests.sh"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    >"$STAGE/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$STAGE/etc/group"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$STAGE/etc/hosts"
printf 'hosts: files\n' >"$STAGE/etc/nsswitch.conf"
(cd "$STAGE" && find . -mindepth 1 | sed 's#^\./##' | LC_ALL=C sort |
    "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -1 >"$INITRD" ||
    die "building the initramfs failed"
log "kernel $KVER, initramfs $(($(stat -c %s "$INITRD") / 1024)) KiB," \
    "modules: ${MOD_ORDER[*]##*/}"

# --- boots -----------------------------------------------------------------------------------
# One boot per cgroup mode. The guest prints "PASS: name" / "FAIL: name -- why" and, as its
# last act, "RJVM-DONE <mode>"; the host echoes each result line as it arrives.
boot() {
    local mode=$1
    local console=$VM_DIR/console-$mode.log disk=$WORK/scratch-$mode.img
    local t_start t_end deadline p f
    rm -f "$disk"
    truncate -s 256M "$disk" || die "cannot create $disk"
    : >"$console"
    t_start=$(date +%s)
    log "booting $mode (timeout ${VM_TIMEOUT}s)"
    # -accel tcg: KVM hangs on these hosts (nested virtualisation). The serial console is the
    # only channel: the guest writes results there and qemu copies it to stdout.
    qemu-system-x86_64 -accel tcg -m 1G -smp 2 -nographic -no-reboot -nodefaults \
        -serial stdio -monitor none \
        -kernel "$VMLINUZ" -initrd "$INITRD" \
        -append "console=ttyS0 quiet loglevel=3 rdinit=/init panic=-1 rj.mode=$mode rj.epoch=$(date +%s) rj.tests=${VM_TESTS// /,}" \
        -drive "file=$disk,format=raw,if=virtio,cache=none,aio=threads" \
        -device virtio-rng-pci \
        </dev/null >"$console" 2>&1 &
    QEMU_PID=$!
    tail -n +1 -F --pid="$QEMU_PID" "$console" 2>/dev/null | tr -d '\r' |
        grep --line-buffered -E '^(PASS|FAIL): |^#|Kernel panic' |
        sed -u -E "s#^(PASS|FAIL): #\1: $mode/#" &
    TAIL_PID=$!
    deadline=$((t_start + VM_TIMEOUT))
    while kill -0 "$QEMU_PID" 2>/dev/null; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            kill -KILL "$QEMU_PID" 2>/dev/null
            echo "# vm: $mode: killed qemu after ${VM_TIMEOUT}s"
            break
        fi
        sleep 1
    done
    wait "$QEMU_PID" 2>/dev/null
    QEMU_PID=
    wait "$TAIL_PID" 2>/dev/null
    TAIL_PID=
    t_end=$(date +%s)
    p=$(tr -d '\r' <"$console" | grep -c '^PASS: ')
    f=$(tr -d '\r' <"$console" | grep -c '^FAIL: ')
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
    if ! tr -d '\r' <"$console" | grep -q "^RJVM-DONE $mode\$"; then
        FAILED=$((FAILED + 1))
        echo "FAIL: $mode/boot -- guest did not finish its suite (hang, panic or timeout);" \
            "last console lines:"
        { tr -d '\r' <"$console"; echo; } | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; /^$/d' |
            tail -n 15 | sed 's/^/#   /'
    fi
    log "$mode: $p passed, $f failed in $((t_end - t_start))s (console: $console)"
    rm -f "$disk"
}

for mode in "${MODES[@]}"; do
    case $mode in
    v1 | v2) boot "$mode" ;;
    *) die "unknown mode '$mode' (v1 or v2)" ;;
    esac
done
log "total $(($(date +%s) - T0))s"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
