#!/usr/bin/env bash
# `make demo`: shows runjob working on this machine. Certificates go to a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNJOB=${RUNJOB_BIN:-bin/runjob}
TMP=$(mktemp -d /tmp/runjob-demo.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

echo "== runjob --version"
"$RUNJOB" --version
echo
echo "== runjob certs --out $TMP/certs"
"$RUNJOB" certs --out "$TMP/certs"
echo
echo "== runjob --help"
"$RUNJOB" --help
