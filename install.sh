#!/usr/bin/env bash
# Sets runjob up on a fresh Debian 12 machine, as root:
#   ./install.sh                       install build/test dependencies, then build bin/runjob
#   ./install.sh --prefix /usr/local   ... and install the binary, the jobmanager/runjob/jobctl
#                                      symlinks and a systemd unit (installed, not enabled)
#   ./install.sh --no-deps             skip the package step (you installed them yourself)
#   ./install.sh --deps-only           only the package step (used by `make test`)
# Idempotent: packages already present are not reinstalled; apt runs only when one is missing.
set -euo pipefail
cd "$(dirname "$0")"

# Exactly what the build and the tests need (Debian 12 package names).
BUILD_PKGS=(build-essential pkg-config libgrpc-dev protobuf-c-compiler libprotobuf-c-dev
    libseccomp-dev libssl-dev libcriterion-dev)
TEST_PKGS=(openssl file iproute2 procps psmisc python3 util-linux coreutils
    clang clang-format libclang-rt-14-dev valgrind
    qemu-system-x86 qemu-utils busybox-static cpio
    testssl.sh libengine-gost-openssl nodejs npm)
# libengine-gost-openssl is testssl.sh's recommended package (we install without recommends):
# without it testssl cannot run its GOST checks and reports engine_problem as a WARN, which
# the TLS tier rightly counts as a check that did not run.

DEPS=1
BUILD=1
PREFIX=
QUIET=0
while [ $# -gt 0 ]; do
    case $1 in
    --no-deps) DEPS=0 ;;
    --deps-only) BUILD=0 ;;
    --prefix)
        [ $# -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }
        PREFIX=$2
        shift
        ;;
    --prefix=*) PREFIX=${1#--prefix=} ;;
    --quiet) QUIET=1 ;;
    -h | --help)
        sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "install.sh: unknown flag '$1' (see ./install.sh --help)" >&2
        exit 2
        ;;
    esac
    shift
done

say() { [ "$QUIET" = 1 ] || echo "install.sh: $*"; }

missing_pkgs() {
    local p
    for p in "$@"; do
        # node from another source (nodesource) provides npm itself: accept a working binary.
        case $p in
        nodejs) command -v node >/dev/null && continue ;;
        npm) command -v npm >/dev/null && continue ;;
        esac
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}

if [ "$DEPS" = 1 ]; then
    mapfile -t missing < <(missing_pkgs "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}")
    if [ "${#missing[@]}" -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "install.sh: missing packages: ${missing[*]}; run as root (or install them)" >&2
            exit 1
        fi
        say "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        say "all build and test packages present"
    fi
fi

if [ "$BUILD" = 1 ]; then
    say "building"
    make -j"$(nproc)" all
    if [ -n "$PREFIX" ]; then
        make install PREFIX="$PREFIX"
        install -d /etc/systemd/system
        sed "s|@PREFIX@|$PREFIX|g" dist/runjob.service >/etc/systemd/system/runjob.service
        say "installed $PREFIX/bin/runjob, jobmanager, jobctl and /etc/systemd/system/runjob.service"
        say "(not enabled: 'systemctl enable --now runjob' after putting certificates in /etc/runjob)"
    fi
    say "done: $(bin/runjob --version)"
fi
