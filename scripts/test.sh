#!/usr/bin/env bash
# The whole test suite, from a fresh clone: checks formatting and lints, builds, and
# runs every Rust test, then the interop tests with the real JavaScript Yjs libraries
# (Node 20+ and npm). Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --all-targets --locked

# After cargo test, so target/debug/coedit is built. Optional dependencies are left
# out: y-websocket lists a LevelDB store and an old `ws` that only its own server uses.
echo "== interop tests (tests/interop: y-websocket, yjs)"
(cd tests/interop && npm ci --no-audit --no-fund --omit=optional && node --test)
