#!/usr/bin/env bash
# Issue 20's cost of the rules in instructions: the search with SigmaHQ's
# rules against the same search without them, on the throughput bench's
# 200,000-row diverse stream, every thread summed by callgrind. Callgrind
# is deterministic where this machine's wall clock is not, so this is the
# figure that compares builds; `cargo bench --bench throughput` gives the
# CPU-time ratio (see docs/performance.md, issue 20).
#
#   benches/callgrind_ratio.sh [BINARY]
#
# Needs valgrind and ../shared/sigma. BINARY defaults to a fresh release
# build. Each search runs once natively first, to warm its process table.
set -euo pipefail
cd "$(dirname "$0")/.."
rules=$(cd ../shared/sigma && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo bench --quiet --bench throughput -- --rows 200000 \
    --save-diverse "$work/stream" "reputation=false backfill=false" >/dev/null 2>&1
if [ $# -ge 1 ]; then
    bin=$1
else
    # After the bench, which leaves its own (debug-info) build there.
    cargo build --release --quiet
    bin=target/release/sysmonenrich
fi

mkdir -p "$work/with/local" "$work/without"
printf '[sigma]\nrules = %s/rules,%s/rules-threat-hunting,%s/rules-emerging-threats\n' \
    "$rules" "$rules" "$rules" >"$work/with/local/sysmonenrich.conf"

# instructions APP_DIR NAME: every thread's total, summed; the output's
# digest goes to NAME.sha.
instructions() {
    local home="$work/home-$2"
    mkdir -p "$home"
    SPLUNK_HOME=$home SYSMONENRICH_APP_DIR=$1 "$bin" <"$work/stream" >/dev/null 2>&1
    SPLUNK_HOME=$home SYSMONENRICH_APP_DIR=$1 valgrind --tool=callgrind \
        --separate-threads=yes --callgrind-out-file="$work/cg.$2.%p" \
        "$bin" <"$work/stream" 2>/dev/null | sha256sum | cut -c1-16 >"$work/$2.sha"
    local sum=0 f
    for f in "$work"/cg."$2".*-*; do
        sum=$((sum + $(awk '/^totals:/ {print $2; exit}' "$f")))
    done
    echo "$sum"
}

with=$(instructions "$work/with" with)
without=$(instructions "$work/without" without)
awk -v a="$with" -v b="$without" -v sa="$(cat "$work/with.sha")" -v sb="$(cat "$work/without.sha")" 'BEGIN {
    printf "with rules:    %.3f G instructions (output %s)\n", a / 1e9, sa
    printf "without rules: %.3f G instructions (output %s)\n", b / 1e9, sb
    printf "ratio: %.2fx\n", a / b
}'
