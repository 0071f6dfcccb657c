#!/usr/bin/env bash
# .ci/windows.sh [PACKAGE.tgz]
#
# The Windows stage of CI (issue 18): takes windows_x86_64/bin/sysmonenrich.exe
# out of the app package, runs it under Wine (Debian's wine64, installed when
# missing; `wine` starts it) and runs against it:
#   - tests/windows.rs: every shared data set byte-identical to the Linux
#     build through the splunkd stand-in (with and without Sigma), malformed
#     input answered alike, a SPLUNK_HOME like `C:\Program Files\Splunk`
#     (drive letter, backslashes, a space) holding the state database that a
#     later search reads and two concurrent searches share, and `demo`,
#     `sigma check` and `enrich` saying what the Linux build says;
#   - the protocol tests themselves (bad_input, conformance,
#     protocol_recordings) with the .exe as their binary.
#
# PACKAGE defaults to the one dist/sysmonenrich-*.tgz.
# Environment: WINDOWS_WINEPREFIX  the Wine prefix to use or create (default a
#              temporary one, removed afterwards).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { printf 'windows.sh: %s\n' "$*" >&2; }
die() { printf 'windows.sh: error: %s\n' "$*" >&2; exit 2; }

if [ $# -ge 1 ]; then
    PKG=$1
else
    shopt -s nullglob
    pkgs=(dist/sysmonenrich-*.tgz)
    shopt -u nullglob
    [ ${#pkgs[@]} -eq 1 ] || die "expected exactly one dist/sysmonenrich-*.tgz, found ${#pkgs[@]}"
    PKG=${pkgs[0]}
fi

if ! command -v wine >/dev/null 2>&1; then
    log "apt-get install wine64"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q wine64 >/dev/null 2>&1 || {
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q wine64 >/dev/null
    }
fi
log "$(wine --version)"

WORK=$(mktemp -d /tmp/sysmonenrich-windows.XXXXXX)
PREFIX=${WINDOWS_WINEPREFIX:-$WORK/prefix}
cleanup() {
    WINEPREFIX=$PREFIX wineserver -k >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
tar -xzf "$PKG" -C "$WORK" sysmonenrich/windows_x86_64/bin/sysmonenrich.exe
EXE=$WORK/sysmonenrich/windows_x86_64/bin/sysmonenrich.exe

# A prefix of its own, made once (no Mono or Gecko: a console program needs
# neither, and their installers would ask for the network).
export WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
start=$(date +%s)
WINEPREFIX=$PREFIX wineboot -i >/dev/null 2>&1 || die "wineboot could not create the prefix $PREFIX"
log "Wine prefix ready in $(( $(date +%s) - start )) s"

# The tests start programs with a cleared environment: the runner carries
# what Wine needs.
RUNNER=$WORK/sysmonenrich-wine
cat >"$RUNNER" <<RUN
#!/bin/sh
export WINEPREFIX='$PREFIX' WINEDEBUG=-all WINEDLLOVERRIDES='mscoree,mshtml='
exec wine '$EXE' "\$@"
RUN
chmod 0755 "$RUNNER"
"$RUNNER" --version

log "tests/windows.rs: the .exe against the Linux build"
SYSMONENRICH_WINDOWS_RUNNER=$RUNNER cargo test --locked --test windows -- --test-threads 1
log "the protocol tests with the .exe as their binary"
SYSMONENRICH_TEST_BIN=$RUNNER cargo test --locked --test bad_input --test conformance --test protocol_recordings
