#!/usr/bin/env bash
# The whole test suite, from a fresh clone: checks formatting and lints, builds, and
# runs every Rust test. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --all-targets --locked
