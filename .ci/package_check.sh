#!/usr/bin/env bash
# .ci/package_check.sh [PACKAGE.tgz]
#
# Checks the app package that package.sh wrote, as Splunk would see it:
#   tar-layout    one top folder sysmonenrich/, the files the app needs, no dot
#                 files, no local/ or local.meta, only files and folders
#   tar-modes     owner/group 0, folders 0755, files 0644, the binary 0755,
#                 nothing group- or world-writable
#   elf           linux_x86_64/bin/sysmonenrich is an x86-64 ELF executable
#   pe            windows_x86_64/bin/sysmonenrich.exe is a PE32+ x86-64 console
#                 program (skipped with PACKAGE_CHECK_NO_WINDOWS=1, for a
#                 package built with --no-windows)
#   glibc         the newest GLIBC_x.y symbol version it needs is <= 2.17
#   run           unpacked into a temporary $SPLUNK_HOME/etc/apps/, the binary,
#                 with SPLUNK_HOME set, answers a getinfo chunk and an execute
#                 chunk (finished:true, a small CSV of Sysmon fields) and exits 0
#                 within the time limit
#   chunks        its stdout is exactly two well-formed chunks
#   fields        the execute reply's body has the hash_sha256 column
#   no-error      no ERROR inspector message in either reply
#   log           $SPLUNK_HOME/var/log/splunk/sysmonenrich.log exists afterwards
#   statedb       $SPLUNK_HOME/var/lib/sysmonenrich/state.db exists afterwards
#   stderr        the binary wrote nothing to stderr
# and exits non-zero when any check fails.
#
# The exchange is hermetic: the only hash in it is in the app's local list
# (the SHA-256 of the empty file), splunkd_uri points at a closed port, and
# HTTP(S)_PROXY point at a closed port so that no provider is reached.
#
# PACKAGE defaults to the one dist/sysmonenrich-*.tgz.
# Environment:
#   PACKAGE_CHECK_XFAIL   comma-separated check names whose failure is
#                         reported as XFAIL and does not fail the run, e.g.
#                         "log,statedb" while the code does not write them yet
#   PACKAGE_CHECK_KEEP=1  keep the temporary SPLUNK_HOME and print its path
#   PACKAGE_CHECK_TIMEOUT seconds the binary may take (default 120)
# Needs python3, GNU tar, and objdump (apt-get installs binutils if missing).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
APP=sysmonenrich
GLIBC_MAX=2.17
TIMEOUT=${PACKAGE_CHECK_TIMEOUT:-120}
XFAIL=",${PACKAGE_CHECK_XFAIL:-},"

die() { printf 'package_check.sh: error: %s\n' "$*" >&2; exit 2; }

if [ $# -ge 1 ]; then
    PKG=$1
else
    shopt -s nullglob
    pkgs=("$ROOT/dist/$APP"-*.tgz)
    shopt -u nullglob
    [ ${#pkgs[@]} -eq 1 ] || die "expected exactly one dist/$APP-*.tgz, found ${#pkgs[@]} (run ./package.sh, or pass the package)"
    PKG=${pkgs[0]}
fi
[ -f "$PKG" ] || die "no such package: $PKG"
command -v python3 >/dev/null 2>&1 || die "python3 is needed"

passed=0
failed=0
failures=()
result() { # name, ok(0/1), detail
    local name=$1 ok=$2 detail=${3:-}
    if [ "$ok" = 0 ]; then
        if [[ $XFAIL == *",$name,"* ]]; then
            printf '  XPASS %-9s %s (listed in PACKAGE_CHECK_XFAIL: take it out)\n' "$name" "$detail"
        else
            printf '  ok    %-9s %s\n' "$name" "$detail"
        fi
        passed=$((passed + 1))
    elif [[ $XFAIL == *",$name,"* ]]; then
        printf '  XFAIL %-9s %s\n' "$name" "$detail"
    else
        printf '  FAIL  %-9s %s\n' "$name" "$detail"
        failed=$((failed + 1))
        failures+=("$name")
    fi
}

WORK=$(mktemp -d /tmp/sysmonenrich-package-check.XXXXXX)
if [ "${PACKAGE_CHECK_KEEP:-0}" = 1 ]; then
    echo "package_check.sh: keeping $WORK"
else
    trap 'rm -rf "$WORK"' EXIT
fi

echo "package_check.sh: $(basename "$PKG")"

# ---- tarball --------------------------------------------------------------------

WINDOWS=1
[ "${PACKAGE_CHECK_NO_WINDOWS:-0}" = 1 ] && WINDOWS=0
tar_report=$(python3 - "$PKG" "$APP" "$WINDOWS" <<'PY'
import stat
import sys
import tarfile

path, app, windows = sys.argv[1:]
binary = f"{app}/linux_x86_64/bin/{app}"
exe = f"{app}/windows_x86_64/bin/{app}.exe"
required = [f"{app}/default/app.conf", f"{app}/default/commands.conf",
            f"{app}/default/collections.conf", f"{app}/default/transforms.conf",
            f"{app}/default/data/ui/views/sysmonenrich_overview.xml",
            f"{app}/metadata/default.meta", f"{app}/app.manifest", binary]
if windows == "1":
    required.append(exe)
layout, modes = [], []
names = set()
with tarfile.open(path, "r:gz") as tar:
    for m in tar.getmembers():
        name = m.name.rstrip("/")
        names.add(name)
        parts = name.split("/")
        if parts[0] != app:
            layout.append(f"outside {app}/: {m.name}")
        if any(p.startswith(".") for p in parts):
            layout.append(f"dot file: {m.name}")
        if "local" in parts[1:] or parts[-1] == "local.meta":
            layout.append(f"local settings: {m.name}")
        if not (m.isfile() or m.isdir()):
            layout.append(f"neither file nor folder: {m.name}")
        if m.uid != 0 or m.gid != 0:
            modes.append(f"owner {m.uid}:{m.gid}: {m.name}")
        mode = stat.S_IMODE(m.mode)
        if mode & 0o022:
            modes.append(f"group/world-writable {mode:04o}: {m.name}")
        if m.isdir():
            want = (0o755,)
        elif name in (binary, exe):
            want = (0o755,)
        elif parts[1:2] == ["bin"]:
            want = (0o644, 0o755)
        else:
            want = (0o644,)
        if m.isfile() or m.isdir():
            if mode not in want:
                modes.append(f"mode {mode:04o} (want {' or '.join(f'{w:04o}' for w in want)}): {m.name}")
for r in required:
    if r not in names:
        layout.append(f"missing: {r}")
print("layout\t" + "; ".join(layout[:8]) + (f" (+{len(layout) - 8} more)" if len(layout) > 8 else ""))
print("modes\t" + "; ".join(modes[:8]) + (f" (+{len(modes) - 8} more)" if len(modes) > 8 else ""))
print(f"count\t{len(names)}")
PY
)
layout=$(printf '%s\n' "$tar_report" | awk -F'\t' '$1=="layout"{print $2}')
modes=$(printf '%s\n' "$tar_report" | awk -F'\t' '$1=="modes"{print $2}')
count=$(printf '%s\n' "$tar_report" | awk -F'\t' '$1=="count"{print $2}')
if [ -z "$layout" ]; then result tar-layout 0 "$count entries under $APP/"; else result tar-layout 1 "$layout"; fi
if [ -z "$modes" ]; then result tar-modes 0 "0/0, dirs 0755, files 0644, binary 0755"; else result tar-modes 1 "$modes"; fi

# ---- unpack as Splunk would -------------------------------------------------------

export SPLUNK_HOME=$WORK/splunk
mkdir -p "$SPLUNK_HOME/etc/apps"
tar -xzf "$PKG" -C "$SPLUNK_HOME/etc/apps"
BIN=$SPLUNK_HOME/etc/apps/$APP/linux_x86_64/bin/$APP
[ -x "$BIN" ] || die "no executable $BIN after unpacking"

if ! command -v objdump >/dev/null 2>&1 || ! command -v readelf >/dev/null 2>&1; then
    echo "package_check.sh: apt-get install binutils" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q binutils >/dev/null 2>&1 || {
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q binutils >/dev/null
    }
fi

machine=$( (readelf -h "$BIN" 2>/dev/null || true) | awk -F: '/Machine:/ {gsub(/^[ \t]+/, "", $2); print $2}')
elftype=$( (readelf -h "$BIN" 2>/dev/null || true) | awk -F: '/Type:/ {gsub(/^[ \t]+/, "", $2); print $2}')
if [ "$machine" = "Advanced Micro Devices X86-64" ] && [[ $elftype == EXEC* || $elftype == DYN* ]]; then
    result elf 0 "x86-64, $elftype"
else
    result elf 1 "machine '${machine:-not an ELF}', type '${elftype:-?}'"
fi

glibc=$( (objdump -T "$BIN" 2>/dev/null || true) | (grep -o 'GLIBC_[0-9][0-9.]*' || true) | sed 's/GLIBC_//' | sort -u -V | tail -n 1)
if [ -z "$machine" ]; then
    result glibc 1 "not an ELF file"
elif [ -z "$glibc" ]; then
    result glibc 0 "needs no versioned glibc symbol (static?)"
elif [ "$(printf '%s\n%s\n' "$glibc" "$GLIBC_MAX" | sort -V | tail -n 1)" = "$GLIBC_MAX" ]; then
    result glibc 0 "newest symbol version GLIBC_$glibc <= $GLIBC_MAX"
else
    newer=$(objdump -T "$BIN" | sed -n 's/.*(\{0,1\}GLIBC_\([0-9][0-9.]*\))\{0,1\}[[:space:]]\{1,\}\([^[:space:]]*\).*/\1 \2/p' |
        sort -V | tail -n 3 | awk '{printf "%s%s@GLIBC_%s", sep, $2, $1; sep = ", "}')
    result glibc 1 "needs GLIBC_$glibc > $GLIBC_MAX (e.g. $newer) - build with ./package.sh, not --native"
fi

EXE=$SPLUNK_HOME/etc/apps/$APP/windows_x86_64/bin/$APP.exe
if [ "$WINDOWS" = 1 ]; then
    command -v file >/dev/null 2>&1 || {
        echo "package_check.sh: apt-get install file" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q file >/dev/null 2>&1 || {
            DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q file >/dev/null
        }
    }
    kind=$(file -b "$EXE" 2>/dev/null || echo "missing")
    case "$kind" in
        "PE32+ executable (console) x86-64"*) result pe 0 "$kind" ;;
        *) result pe 1 "windows_x86_64/bin/$APP.exe: $kind" ;;
    esac
fi

# ---- a protocol exchange ---------------------------------------------------------

python3 - "$WORK/stdin" <<'PY'
import json
import sys

getinfo = {
    "action": "getinfo", "preview": False,
    "searchinfo": {
        "args": [], "raw_args": [], "dispatch_dir": "/tmp", "sid": "1", "app": "search",
        "owner": "admin", "username": "admin", "session_key": "x",
        "splunkd_uri": "https://127.0.0.1:1", "splunk_version": "9.1.0",
        "search": "search%20%7C%20sysmonenrich", "command": "sysmonenrich",
        "maxresultrows": 50000, "earliest_time": "0", "latest_time": "0",
    },
}
execute = {"action": "execute", "finished": True}
empty_md5 = "D41D8CD98F00B204E9800998ECF8427E"
empty_sha256 = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
child = "{5770385F-C22A-43E0-BF4C-06F5698FFBD9}"
parent = "{5770385F-C22A-43E0-BF4C-06F5698FFBD8}"
zero = "{00000000-0000-0000-0000-000000000000}"
# Newest first, as Splunk returns events: the child before its parent.
body = (
    "EventCode,ProcessGuid,ParentProcessGuid,Image,ParentImage,CommandLine,Hashes,Computer,_chunked_idx\n"
    f'1,{child},{parent},C:\\Windows\\System32\\cmd.exe,C:\\Windows\\explorer.exe,"cmd.exe /c ipconfig",'
    f'"MD5={empty_md5},SHA256={empty_sha256}",host1,0\n'
    f'1,{parent},{zero},C:\\Windows\\explorer.exe,,explorer.exe,"SHA256={empty_sha256}",host1,1\n'
)

def chunk(meta, body=""):
    m = json.dumps(meta, separators=(",", ":")).encode()
    b = body.encode()
    return b"chunked 1.0,%d,%d\n" % (len(m), len(b)) + m + b

with open(sys.argv[1], "wb") as f:
    f.write(chunk(getinfo) + chunk(execute, body))
PY

mkdir -p "$WORK/home"
rc=0
start=$(date +%s%N)
env -i PATH=/usr/bin:/bin HOME="$WORK/home" LANG=C.UTF-8 SPLUNK_HOME="$SPLUNK_HOME" \
    HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 \
    https_proxy=http://127.0.0.1:9 http_proxy=http://127.0.0.1:9 \
    timeout --kill-after=5 "$TIMEOUT" "$BIN" <"$WORK/stdin" >"$WORK/stdout" 2>"$WORK/stderr" || rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
if [ "$rc" = 0 ]; then
    result run 0 "exit 0 in $ms ms"
elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    result run 1 "no exit within ${TIMEOUT}s"
else
    result run 1 "exit code $rc after $ms ms"
fi

reply=$(python3 - "$WORK/stdout" <<'PY'
import csv
import io
import json
import re
import sys

data = open(sys.argv[1], "rb").read()
pos, chunks, problem = 0, [], ""
header = re.compile(rb"chunked 1\.0,(\d+),(\d+)\n")
while pos < len(data):
    m = header.match(data, pos)
    if not m:
        problem = f"bytes at offset {pos} are not a chunk header: {data[pos:pos + 40]!r}"
        break
    ml, bl = int(m.group(1)), int(m.group(2))
    start = m.end()
    if start + ml + bl > len(data):
        problem = f"chunk {len(chunks) + 1} declares {ml}+{bl} bytes, {len(data) - start} follow"
        break
    chunks.append((data[start:start + ml], data[start + ml:start + ml + bl]))
    pos = start + ml + bl

metas = []
for meta, _ in chunks:
    try:
        metas.append(json.loads(meta or b"{}"))
    except ValueError as e:
        problem = problem or f"metadata is not JSON: {e}"
        metas.append({})

errors = []
for meta in metas:
    for msg in (meta.get("inspector") or {}).get("messages") or []:
        if msg and str(msg[0]).upper() == "ERROR":
            errors.append(str(msg[1])[:200] if len(msg) > 1 else "")

ok_chunks = not problem and len(chunks) == 2
first = metas[0] if metas else {}
print("chunks\t" + ("0" if ok_chunks else "1") + "\t" +
      (f"2 chunks, getinfo type={first.get('type')!r}, execute finished={metas[1].get('finished')!r}"
       if ok_chunks else (problem or f"{len(chunks)} chunks, want 2")))
body = chunks[1][1].decode("utf-8", "replace") if len(chunks) >= 2 else ""
table = list(csv.reader(io.StringIO(body))) if body else []
cols = table[0] if table else []
if "hash_sha256" in cols:
    col = cols.index("hash_sha256")
    filled = sum(1 for r in table[1:] if len(r) > col and r[col])
    print(f"fields\t0\thash_sha256 among {len(cols)} columns; {len(table) - 1} rows, {filled} with a SHA-256")
else:
    print("fields\t1\t" + (f"no hash_sha256 in header {','.join(cols)[:160]!r}" if cols else "no execute reply body"))
print("no-error\t" + ("1\t" + " | ".join(errors) if errors else "0\tno ERROR inspector message"))
PY
)
while IFS=$'\t' read -r name ok detail; do
    [ -n "$name" ] && result "$name" "$ok" "$detail"
done <<<"$reply"

log_file=$SPLUNK_HOME/var/log/splunk/$APP.log
if [ -f "$log_file" ]; then result log 0 "var/log/splunk/$APP.log, $(wc -c <"$log_file") bytes"; else result log 1 "no var/log/splunk/$APP.log"; fi
state=$SPLUNK_HOME/var/lib/$APP/state.db
if [ -f "$state" ]; then result statedb 0 "var/lib/$APP/state.db, $(wc -c <"$state") bytes"; else result statedb 1 "no var/lib/$APP/state.db"; fi
if [ -s "$WORK/stderr" ]; then
    result stderr 1 "$(head -c 300 "$WORK/stderr" | tr '\n' ' ')"
else
    result stderr 0 "empty"
fi

if [ "$failed" -gt 0 ]; then
    if [ "${PACKAGE_CHECK_KEEP:-0}" != 1 ]; then
        echo "package_check.sh: stderr of the binary:" && head -c 2000 "$WORK/stderr" | sed 's/^/    /'
    fi
    echo "package_check.sh: FAILED: ${failures[*]} ($passed checks passed)"
    exit 1
fi
echo "package_check.sh: OK ($passed checks passed)"
