#!/usr/bin/env bash
# The project's test command (README, "Two commands"): formatting, lints,
# the no-OpenSSL rule, and every test. Works on a fresh machine with the
# Rust toolchain; tests that need ../shared skip with a printed reason when
# it is absent.
set -euo pipefail
cd "$(dirname "$0")"

rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

echo "== no OpenSSL in the dependency tree"
if cargo tree --locked -e normal -i openssl-sys >/dev/null 2>&1; then
    echo "openssl-sys is linked: use rustls only" >&2
    exit 1
fi

echo "== benches compile"
cargo bench --locked --no-run

echo "== cargo test"
cargo test --locked
