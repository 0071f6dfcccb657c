#!/usr/bin/env bash
# .ci/appinspect.sh [PACKAGE.tgz]
#
# Runs Splunk AppInspect (PyPI splunk-appinspect, offline) on the app package
# twice:
#   1. --mode precert                        every check tag
#   2. --mode precert --included-tags cloud  the Splunk Cloud vetting checks
# prints a summary of each, lists every warning, failure and error with its
# messages, and exits non-zero when either run has a failure, an error, or a
# warning other than the expected ones. splunk_app/README.md ("Splunk
# AppInspect") says which warnings are expected and why they stay.
#
# PACKAGE defaults to the one dist/sysmonenrich-*.tgz that package.sh wrote.
#
# Environment:
#   APPINSPECT_VENV      venv to use or create (default /tmp/appinspect-venv)
#   APPINSPECT_VERSION   splunk-appinspect version to install (default 4.3.1,
#                        the one this was verified with; "latest" for the newest)
#   APPINSPECT_OUT       where the JSON reports go (default build/appinspect)
#   APPINSPECT_EXPECTED_WARNINGS
#                        comma-separated check names whose warning is expected
#                        (default: check_collections_conf, AppInspect warns
#                        about every app that ships a collections.conf, "No
#                        action required", whatever the file holds;
#                        check_that_app_contains_any_windows_specific_components,
#                        given for any PE executable, i.e. the Windows build;
#                        check_command_scripts_exist_for_cloud, AppInspect
#                        4.3.1 cannot find a command without `filename`, which
#                        is how one stanza serves both platforms; see
#                        splunk_app/README.md, "Splunk AppInspect")
#
# Needs python3 with venv (apt-get installs python3-venv when missing) and
# libmagic (apt-get installs libmagic1 when missing). Network: PyPI only, and
# only while the venv is being created.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${APPINSPECT_VENV:-/tmp/appinspect-venv}
WANT=${APPINSPECT_VERSION:-4.3.1}
OUT=${APPINSPECT_OUT:-$ROOT/build/appinspect}

log() { printf 'appinspect.sh: %s\n' "$*" >&2; }
die() { printf 'appinspect.sh: error: %s\n' "$*" >&2; exit 2; }

apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "cannot install $* (no apt-get)"
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 || {
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
    }
}

# ---- package ------------------------------------------------------------------

if [ $# -ge 1 ]; then
    PKG=$1
else
    shopt -s nullglob
    pkgs=("$ROOT"/dist/sysmonenrich-*.tgz)
    shopt -u nullglob
    [ ${#pkgs[@]} -eq 1 ] || die "expected exactly one dist/sysmonenrich-*.tgz, found ${#pkgs[@]} (run ./package.sh, or pass the package)"
    PKG=${pkgs[0]}
fi
[ -f "$PKG" ] || die "no such package: $PKG"
PKG=$(cd "$(dirname "$PKG")" && pwd)/$(basename "$PKG")

# ---- tool ---------------------------------------------------------------------

spec=splunk-appinspect
[ "$WANT" = latest ] || spec="splunk-appinspect==$WANT"

have_version() {
    "$VENV/bin/python3" -c 'import importlib.metadata as m; print(m.version("splunk-appinspect"))' 2>/dev/null
}

installed=$(have_version || true)
if [ -z "$installed" ] || { [ "$WANT" != latest ] && [ "$installed" != "$WANT" ]; }; then
    command -v python3 >/dev/null 2>&1 || apt_install python3
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        apt_install python3-venv python3-pip
        python3 -m venv "$VENV"
    fi
    log "pip install $spec into $VENV"
    start=$(date +%s)
    "$VENV/bin/python3" -m pip install -q --disable-pip-version-check "$spec"
    log "installed in $(($(date +%s) - start)) s"
    installed=$(have_version)
fi

# python-magic needs the libmagic shared library.
if ! "$VENV/bin/python3" -c 'import magic; magic.from_buffer(b"x", mime=True)' >/dev/null 2>&1; then
    apt_install libmagic1
    "$VENV/bin/python3" -c 'import magic; magic.from_buffer(b"x", mime=True)' >/dev/null ||
        die "python-magic still cannot load libmagic"
fi

log "splunk-appinspect $installed on $(basename "$PKG")"

# ---- run ----------------------------------------------------------------------

mkdir -p "$OUT"
run() { # name, extra args...
    local name=$1
    shift
    local json=$OUT/$name.json
    rm -f "$json"
    # AppInspect's own exit code says little; the JSON report decides.
    "$VENV/bin/splunk-appinspect" inspect "$PKG" --mode precert "$@" \
        --output-file "$json" --data-format json >"$OUT/$name.log" 2>&1 || true
    [ -s "$json" ] || {
        tail -n 40 "$OUT/$name.log" >&2
        die "AppInspect ($name) wrote no report; see $OUT/$name.log"
    }
}

run precert
run cloud --included-tags cloud

"$VENV/bin/python3" - "$installed" "${APPINSPECT_EXPECTED_WARNINGS-check_collections_conf,check_that_app_contains_any_windows_specific_components,check_command_scripts_exist_for_cloud}" \
    "$OUT/precert.json" "$OUT/cloud.json" <<'PY'
import json
import sys
import textwrap

version, expected, *reports = sys.argv[1:]
expected = {name.strip() for name in expected.split(",") if name.strip()}
labels = {"precert.json": "precert (all tags)", "cloud.json": "precert --included-tags cloud"}
shown = ("failure", "error", "future_failure", "warning", "skipped", "manual_check")
bad = 0
for path in reports:
    data = json.load(open(path))
    summary = data.get("summary", {})
    label = labels.get(path.rsplit("/", 1)[-1], path)
    print(f"AppInspect {version}, {label}: "
          + ", ".join(f"{k} {summary.get(k, 0)}" for k in
                      ("failure", "error", "future_failure", "warning", "skipped", "success", "not_applicable")))
    for report in data.get("reports", []):
        for group in report.get("groups", []):
            for check in group.get("checks", []):
                result = check.get("result")
                if result not in shown:
                    continue
                name = check.get("name")
                known = result == "warning" and name in expected
                print(f"  {result.upper()}: {name}" + (" (expected)" if known else ""))
                if result == "warning" and not known:
                    bad += 1
                seen = set()
                for m in check.get("messages", []):
                    text = " ".join(str(m.get("message", "")).split())
                    where = m.get("message_filename") or m.get("filename")
                    if where and where not in text:
                        text += f" [{where}]"
                    if text in seen:
                        continue
                    seen.add(text)
                    print(textwrap.fill(text, 100, initial_indent="      ", subsequent_indent="      "))
    bad += summary.get("failure", 0) + summary.get("error", 0)
if bad:
    print(f"AppInspect: FAILED ({bad} failures, errors and unexpected warnings)")
    sys.exit(1)
print("AppInspect: OK (no failures, no errors, no unexpected warnings)")
PY
