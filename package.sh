#!/usr/bin/env bash
# package.sh: build the sysmonenrich Splunk app package.
#
#   ./package.sh                 release build for glibc 2.17 with cargo-zigbuild,
#                                then dist/sysmonenrich-<version>.tgz
#   ./package.sh --native        plain `cargo build --release` instead (the binary
#                                then needs the build machine's glibc or newer)
#   ./package.sh --binary PATH   package PATH as the binary; no build at all
#   ./package.sh --no-windows    leave the Windows build out (a quick local
#                                package; the release package has both)
#   ./package.sh --windows-binary PATH
#                                package PATH as the Windows build; no build
#
# Environment (same effect as the options):
#   SYSMONENRICH_NATIVE=1        as --native
#   SYSMONENRICH_BINARY=PATH     as --binary PATH (e.g. a stand-in executable to
#                                test the packaging while the code does not build)
#   SYSMONENRICH_NO_WINDOWS=1    as --no-windows
#   SYSMONENRICH_WINDOWS_BINARY=PATH   as --windows-binary PATH
# Other knobs:
#   SYSMONENRICH_TOOLS_DIR       where the ziglang/cargo-zigbuild venv lives
#                                (default ~/.cache/sysmonenrich-tools); reused by
#                                later runs
#   ZIGLANG_VERSION, CARGO_ZIGBUILD_VERSION   PyPI versions to install
#   RUST_VERSION                 the rustc the release is declared to be built
#                                with (splunk_app/README.md, "Binary File
#                                Declaration"); another rustc builds too, with
#                                a warning, since the declaration would then
#                                be wrong for that package
#   CARGO_TARGET_DIR             honoured as cargo does
#   SOURCE_DATE_EPOCH            mtime of every file in the tarball (default:
#                                time of the last git commit)
#
# This is the only place that knows how the repository's parts combine into the
# app folder:
#   default/                     -> sysmonenrich/default/
#   bin/                         -> sysmonenrich/bin/
#   splunk_app/*                 -> sysmonenrich/ (metadata/, lookups/, static/,
#                                   appserver/, README.md, README/ specs)
#   the binary                   -> sysmonenrich/linux_x86_64/bin/sysmonenrich
#   the Windows build            -> sysmonenrich/windows_x86_64/bin/sysmonenrich.exe
#   (generated)                  -> sysmonenrich/app.manifest
# The folder is assembled in build/sysmonenrich/ and packed, with owner and
# group 0, dirs 0755, files 0644, the binary 0755, into
# dist/sysmonenrich-<version>.tgz. Running it again gives the same package.
#
# Needs: bash, GNU tar, gzip, coreutils, awk; cargo unless --binary; python3
# (with venv + pip, installed by apt-get when missing) for cargo-zigbuild.
# The Windows build needs Debian's rustc-web, cargo-web and rust-web-src (a
# rustc whose standard library can be rebuilt for the target) and
# gcc-mingw-w64-x86-64 (the linker); installed by apt-get when missing.
# Network: PyPI (first zig build only), crates.io (cargo) and Debian's
# package mirrors (first Windows build only), nothing else.

set -euo pipefail

APP=sysmonenrich
ZIG_TARGET=x86_64-unknown-linux-gnu.2.17
RUST_TARGET=x86_64-unknown-linux-gnu
ZIGLANG_VERSION=${ZIGLANG_VERSION:-0.17.1}
CARGO_ZIGBUILD_VERSION=${CARGO_ZIGBUILD_VERSION:-0.24.1}
RUST_VERSION=${RUST_VERSION:-1.95.0}
# Windows: the `-win7-` target (std's older system calls: it runs on every
# Windows Splunk supports, and under Wine 8, which lacks the
# bcryptprimitives.dll that x86_64-pc-windows-gnu's std needs).
WIN_TARGET=x86_64-win7-windows-gnu
WIN_RUSTC=${WIN_RUSTC:-/usr/bin/rustc}
WIN_CARGO=${WIN_CARGO:-/usr/bin/cargo}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"

NATIVE=${SYSMONENRICH_NATIVE:-0}
BINARY=${SYSMONENRICH_BINARY:-}
NO_WINDOWS=${SYSMONENRICH_NO_WINDOWS:-0}
WIN_BINARY=${SYSMONENRICH_WINDOWS_BINARY:-}
TOOLS_DIR=${SYSMONENRICH_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sysmonenrich-tools}

log() { printf 'package.sh: %s\n' "$*" >&2; }
die() { printf 'package.sh: error: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --native) NATIVE=1 ;;
        --binary) [ $# -ge 2 ] || die "--binary needs a path"; BINARY=$2; shift ;;
        --binary=*) BINARY=${1#--binary=} ;;
        --no-windows) NO_WINDOWS=1 ;;
        --windows-binary) [ $# -ge 2 ] || die "--windows-binary needs a path"; WIN_BINARY=$2; shift ;;
        --windows-binary=*) WIN_BINARY=${1#--windows-binary=} ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done
case "$NATIVE" in 1 | true | yes) NATIVE=1 ;; *) NATIVE=0 ;; esac
case "$NO_WINDOWS" in 1 | true | yes) NO_WINDOWS=1 ;; *) NO_WINDOWS=0 ;; esac

# ---- versions ---------------------------------------------------------------

# Value of KEY in [STANZA] of a .conf file (first match; spaces around = trimmed).
conf_get() {
    awk -v stanza="[$2]" -v key="$3" '
        /^[[:space:]]*\[/ { gsub(/[[:space:]]+$/, ""); insec = ($0 == stanza); next }
        insec && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" {
            sub(/^[^=]*=[[:space:]]*/, ""); sub(/[[:space:]]+$/, ""); print; exit
        }' "$1"
}

[ -f Cargo.toml ] || die "Cargo.toml not found in $ROOT"
[ -f default/app.conf ] || die "default/app.conf not found"
VERSION=$(awk -F'"' '
    /^\[package\]/ { p = 1; next }
    /^\[/ { p = 0 }
    p && /^version[[:space:]]*=/ { print $2; exit }' Cargo.toml)
[ -n "$VERSION" ] || die "no [package] version in Cargo.toml"

for stanza in launcher id; do
    v=$(conf_get default/app.conf "$stanza" version)
    [ "$v" = "$VERSION" ] ||
        die "default/app.conf [$stanza] version = '${v}' but Cargo.toml version = '$VERSION': make them agree"
done
pkg_id=$(conf_get default/app.conf package id)
[ "$pkg_id" = "$APP" ] || die "default/app.conf [package] id = '$pkg_id', expected '$APP'"
log "version $VERSION"

# ---- binary -----------------------------------------------------------------

need() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
    need apt-get || die "cannot install $* (no apt-get)"
    log "apt-get install $*"
    # update only when the package lists are missing or stale enough to fail
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 || {
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
    }
}

# cargo-zigbuild finds zig as `zig` on PATH or as `python3 -m ziglang`.
zig_ok() { need zig || python3 -m ziglang version >/dev/null 2>&1; }

ensure_zigbuild() {
    if need cargo-zigbuild && zig_ok; then
        return
    fi
    local venv=$TOOLS_DIR/venv
    if ! [ -x "$venv/bin/cargo-zigbuild" ] || ! "$venv/bin/python3" -m ziglang version >/dev/null 2>&1; then
        need python3 || apt_install python3
        if ! python3 -m venv --clear "$venv" >/dev/null 2>&1; then
            apt_install python3-venv python3-pip
            python3 -m venv --clear "$venv"
        fi
        log "pip install ziglang==$ZIGLANG_VERSION cargo-zigbuild==$CARGO_ZIGBUILD_VERSION into $venv"
        "$venv/bin/python3" -m pip install -q --disable-pip-version-check \
            "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
    fi
    # venv first: its python3 has ziglang, its bin has cargo-zigbuild
    export PATH="$venv/bin:$PATH"
    if ! need cargo-zigbuild || ! zig_ok; then
        die "cargo-zigbuild or zig not usable after installing into $venv"
    fi
}

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac

if [ -n "$BINARY" ]; then
    if ! [ -f "$BINARY" ] || ! [ -x "$BINARY" ]; then
        die "SYSMONENRICH_BINARY '$BINARY' is not an executable file"
    fi
    log "using prebuilt binary $BINARY (no build)"
    BIN=$BINARY
else
    need cargo || die "cargo not found (install Rust, or pass --binary PATH)"
    rustc_version=$(rustc --version 2>/dev/null | awk '{print $2}')
    if [ "$rustc_version" != "$RUST_VERSION" ]; then
        log "warning: rustc ${rustc_version:-unknown}, but the Binary File Declaration names $RUST_VERSION"
    fi
    # Strip symbols from the shipped binary without touching Cargo.toml.
    export CARGO_PROFILE_RELEASE_STRIP=${CARGO_PROFILE_RELEASE_STRIP:-symbols}
    if [ "$NATIVE" = 1 ]; then
        log "cargo build --release (native: needs this machine's glibc or newer at run time)"
        cargo build --release --locked --bin "$APP"
        BIN=$TARGET_DIR/release/$APP
    else
        ensure_zigbuild
        if need rustup && ! rustup target list --installed 2>/dev/null | grep -qx "$RUST_TARGET"; then
            rustup target add "$RUST_TARGET"
        fi
        log "cargo zigbuild --release --target $ZIG_TARGET"
        log "rustc ${rustc_version:-unknown}, $(cargo-zigbuild --version 2>/dev/null | head -n 1), zig $(python3 -m ziglang version 2>/dev/null || zig version)"
        cargo zigbuild --release --locked --target "$ZIG_TARGET" --bin "$APP"
        BIN=$TARGET_DIR/$RUST_TARGET/release/$APP
    fi
    [ -x "$BIN" ] || die "build finished but $BIN is missing"
fi

# ---- the Windows build ------------------------------------------------------

# Read whole before testing (a pipe into `grep -q` may end rustc early,
# which `pipefail` would count as a failure).
win_rustc_knows_target() {
    local targets
    targets=$("$WIN_RUSTC" --print target-list 2>/dev/null) || return 1
    grep -qx "$WIN_TARGET" <<<"$targets"
}

ensure_windows_tools() {
    local missing=()
    [ -x "$WIN_RUSTC" ] || missing+=(rustc-web)
    [ -x "$WIN_CARGO" ] || missing+=(cargo-web)
    [ -d "$("$WIN_RUSTC" --print sysroot 2>/dev/null)/lib/rustlib/src/rust/library" ] || missing+=(rust-web-src)
    need x86_64-w64-mingw32-gcc || missing+=(gcc-mingw-w64-x86-64)
    if [ ${#missing[@]} -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
    # bookworm's own rustc-web (1.85) does not know the target; the
    # security suite's (1.96) does. A machine whose package lists predate
    # it installs the old one without complaint (seen on a fresh VM), so
    # the lists are refreshed and the three packages upgraded together.
    if ! win_rustc_knows_target; then
        log "$("$WIN_RUSTC" --version 2>/dev/null) does not know $WIN_TARGET: apt-get update, then upgrade rustc-web cargo-web rust-web-src"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q rustc-web cargo-web rust-web-src >/dev/null ||
            die "cannot upgrade rustc-web"
        win_rustc_knows_target ||
            die "$("$WIN_RUSTC" --version) does not know $WIN_TARGET (it needs rustc-web 1.96 from bookworm-security)"
    fi
}

WIN_BIN=
if [ -n "$WIN_BINARY" ]; then
    [ -f "$WIN_BINARY" ] || die "SYSMONENRICH_WINDOWS_BINARY '$WIN_BINARY' is not a file"
    log "using prebuilt Windows binary $WIN_BINARY (no build)"
    WIN_BIN=$WIN_BINARY
elif [ "$NO_WINDOWS" = 1 ]; then
    log "no Windows build (--no-windows): the package is for Linux search heads only"
else
    ensure_windows_tools
    # Debian's rustc with its standard library rebuilt for the target
    # (`-Zbuild-std`, allowed on a stable compiler by RUSTC_BOOTSTRAP); the
    # linker is named in .cargo/config.toml.
    log "Windows: $("$WIN_RUSTC" --version), cargo build --release -Zbuild-std --target $WIN_TARGET"
    RUSTC=$WIN_RUSTC RUSTC_BOOTSTRAP=1 "$WIN_CARGO" build --release --locked \
        -Zbuild-std=std,panic_abort --target "$WIN_TARGET" --bin "$APP"
    WIN_BIN=$TARGET_DIR/$WIN_TARGET/release/$APP.exe
    [ -f "$WIN_BIN" ] || die "Windows build finished but $WIN_BIN is missing"
fi

# ---- assemble build/sysmonenrich/ ------------------------------------------

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)
fi

for d in default bin linux_x86_64 windows_x86_64 local app.manifest; do
    [ ! -e "splunk_app/$d" ] || die "splunk_app/$d must not exist: it would clash with what package.sh puts there"
done
[ -f default/commands.conf ] || die "default/commands.conf not found"
[ -f splunk_app/metadata/default.meta ] || die "splunk_app/metadata/default.meta not found"

STAGE=$ROOT/build/$APP
rm -rf "$STAGE"
mkdir -p "$STAGE"
cp -R default "$STAGE/default"
if [ -d bin ]; then cp -R bin "$STAGE/bin"; fi
cp -R splunk_app/. "$STAGE/"
mkdir -p "$STAGE/linux_x86_64/bin"
cp "$BIN" "$STAGE/linux_x86_64/bin/$APP"
if [ -n "$WIN_BIN" ]; then
    mkdir -p "$STAGE/windows_x86_64/bin"
    cp "$WIN_BIN" "$STAGE/windows_x86_64/bin/$APP.exe"
fi
# The Binary File Declaration names the commit the binary was built from.
commit=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$BINARY" ]; then
    commit="not recorded (a prebuilt binary was packaged)"
elif [ "$commit" != unknown ] && [ -n "$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    commit="$commit (with uncommitted changes)"
fi
sed -i "s/@SOURCE_COMMIT@/$commit/" "$STAGE/README.md"
# [install] build: a new number per commit, so Splunk Web reloads static files.
sed -i "s/^build[[:space:]]*=.*/build = $SOURCE_DATE_EPOCH/" "$STAGE/default/app.conf"

# Never ship: dot files, local/ settings, local.meta, editor and Python leftovers.
find "$STAGE" -mindepth 1 \( -name '.*' -o -name local -o -name local.meta -o -name '__pycache__' \
    -o -name '*.pyc' -o -name '*~' -o -name '*.swp' -o -name '*.orig' -o -name '*.rej' \) -prune \
    -exec rm -rf {} +

# app.manifest (schema 2.0.0, the shape `slim generate-manifest` writes).
json_str() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    printf '"%s"' "$s"
}
title=$(conf_get default/app.conf ui label)
author=$(conf_get default/app.conf launcher author)
description=$(conf_get default/app.conf launcher description)
license=$(awk -F'"' '/^\[package\]/{p=1;next} /^\[/{p=0} p && /^license[[:space:]]*=/{print $2; exit}' Cargo.toml)
cat >"$STAGE/app.manifest" <<EOF
{
  "schemaVersion": "2.0.0",
  "info": {
    "title": $(json_str "${title:-$APP}"),
    "id": {
      "group": null,
      "name": $(json_str "$APP"),
      "version": $(json_str "$VERSION")
    },
    "author": [
      {
        "name": $(json_str "${author:-$APP}"),
        "email": null,
        "company": null
      }
    ],
    "releaseDate": null,
    "description": $(json_str "$description"),
    "classification": {
      "intendedAudience": "Security",
      "categories": ["Security, Fraud & Compliance"],
      "developmentStatus": null
    },
    "commonInformationModels": null,
    "license": {
      "name": $( [ -n "$license" ] && json_str "$license" || echo null ),
      "text": null,
      "uri": null
    },
    "privacyPolicy": {
      "name": null,
      "text": null,
      "uri": null
    },
    "releaseNotes": {
      "name": null,
      "text": null,
      "uri": null
    }
  },
  "dependencies": null,
  "tasks": null,
  "inputGroups": null,
  "incompatibleApps": null,
  "platformRequirements": null,
  "supportedDeployments": [
    "_standalone",
    "_distributed"
  ],
  "targetWorkloads": [
    "_search_heads"
  ]
}
EOF

# Modes: dirs 0755, files 0644; the binary and files that are executable in
# the repository's bin/ 0755. Nothing is group- or world-writable.
find "$STAGE" -type d -exec chmod 0755 {} +
find "$STAGE" -type f -exec chmod 0644 {} +
chmod 0755 "$STAGE/linux_x86_64/bin/$APP"
[ -z "$WIN_BIN" ] || chmod 0755 "$STAGE/windows_x86_64/bin/$APP.exe"
if [ -d bin ]; then
    (cd bin && find . -type f -perm -u+x -print) | while IFS= read -r f; do
        chmod 0755 "$STAGE/bin/$f"
    done
fi
if find "$STAGE" ! -type f ! -type d | grep -q .; then
    die "build/$APP holds something that is neither a file nor a folder (a symlink?): $(find "$STAGE" ! -type f ! -type d | head -3)"
fi

# ---- pack -------------------------------------------------------------------

mkdir -p dist
rm -f dist/"$APP"-*.tgz
OUT=dist/$APP-$VERSION.tgz
tmp=$OUT.tmp.$$
trap 'rm -f "$tmp"' EXIT
tar --format=gnu --sort=name --owner=0 --group=0 --numeric-owner \
    --mtime="@$SOURCE_DATE_EPOCH" -C "$ROOT/build" -cf - "$APP" | gzip -9n >"$tmp"
mv "$tmp" "$OUT"
trap - EXIT

size=$(wc -c <"$OUT")
sum=$(sha256sum "$OUT" | cut -d' ' -f1)
log "wrote $OUT ($size bytes, sha256 $sum, $(tar -tzf "$OUT" | wc -l) entries)"
echo "$ROOT/$OUT"
