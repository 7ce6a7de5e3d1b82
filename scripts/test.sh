#!/usr/bin/env bash
# The whole test suite, from a fresh clone: checks formatting and lints, builds, and
# runs every Rust test, then the interop tests with the real JavaScript Yjs libraries
# and the browser tests of the dashboard and the bench report in headless Chromium
# (Node 20+ and npm; Chromium and Redis are installed with apt-get when missing). Usage:
# scripts/test.sh
#
# The MongoDB tests need a server that speaks the MongoDB wire protocol. Real mongod
# cannot be installed on our machines, so this script installs the PyPI package
# secantusdb into .venv and starts its `secantusd-py` daemon on a free port with a
# temporary data directory, stopping it on exit. With MONGO_URL already set, the
# tests use that server instead (the daemon is still installed: the outage test
# starts and stops private instances of it).
set -euo pipefail
cd "$(dirname "$0")/.."

# A beta: pinned, so a new upload cannot change what the tests run against.
SECANTUSDB_VERSION=0.7.0b3
VENV="$PWD/.venv"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== MongoDB-compatible test server (secantusdb $SECANTUSDB_VERSION)"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -m pip show secantusdb 2>/dev/null | grep -qx "Version: $SECANTUSDB_VERSION"; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "secantusdb==$SECANTUSDB_VERSION"
fi
MONGOD="$VENV/bin/secantusd-py"

free_port() {
    "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

MONGOD_PID=""
MONGOD_DIR=""
cleanup() {
    if [ -n "$MONGOD_PID" ]; then
        kill "$MONGOD_PID" 2>/dev/null || true
        wait "$MONGOD_PID" 2>/dev/null || true
    fi
    if [ -n "$MONGOD_DIR" ]; then
        rm -rf "$MONGOD_DIR"
    fi
}
trap cleanup EXIT

if [ -n "${MONGO_URL:-}" ]; then
    echo "using MONGO_URL from the environment"
    TEST_MONGO_URL="$MONGO_URL"
else
    MONGOD_DIR="$(mktemp -d "${TMPDIR:-/tmp}/coedit-test-mongod.XXXXXX")"
    MONGOD_PORT="$(free_port)"
    "$MONGOD" --host 127.0.0.1 --port "$MONGOD_PORT" --storage-path "$MONGOD_DIR/data" \
        >"$MONGOD_DIR/secantusd.log" 2>&1 &
    MONGOD_PID=$!
    # It imports a fair amount of Python before it listens: allow a minute.
    for _ in $(seq 1 600); do
        if "$VENV/bin/python" -c "import socket; socket.create_connection(('127.0.0.1', $MONGOD_PORT), 0.5)" 2>/dev/null; then
            break
        fi
        if ! kill -0 "$MONGOD_PID" 2>/dev/null; then
            echo "secantusd-py exited before listening:" >&2
            cat "$MONGOD_DIR/secantusd.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    if ! "$VENV/bin/python" -c "import socket; socket.create_connection(('127.0.0.1', $MONGOD_PORT), 0.5)" 2>/dev/null; then
        echo "secantusd-py is not listening on $MONGOD_PORT after 60 s:" >&2
        cat "$MONGOD_DIR/secantusd.log" >&2
        exit 1
    fi
    TEST_MONGO_URL="mongodb://127.0.0.1:$MONGOD_PORT"
    echo "secantusd-py listening at $TEST_MONGO_URL"
fi

# The cluster tests start their own Redis servers (Debian's redis-server), which
# they may kill and restart; installed here when missing.
echo "== Redis for the cluster tests"
REDIS_SERVER="$(command -v redis-server || true)"
if [ -z "$REDIS_SERVER" ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y redis-server
    # The package starts a system Redis on 6379; the tests use their own.
    REDIS_SERVER="$(command -v redis-server)"
fi
"$REDIS_SERVER" --version

echo "== cargo test"
# The tests read COEDIT_TEST_MONGO_URL, not MONGO_URL: every `coedit serve` a test
# spawns would inherit MONGO_URL and quietly switch from its own store to MongoDB.
env -u MONGO_URL \
    COEDIT_TEST_MONGO_URL="$TEST_MONGO_URL" \
    COEDIT_TEST_MONGOD="$MONGOD" \
    COEDIT_TEST_REDIS="$REDIS_SERVER" \
    cargo test --all-targets --locked

# The dashboard and the bench report are tested in a real browser: Debian's Chromium,
# driven by playwright-core. Under CI=true those tests fail rather than skip without it.
echo "== Chromium for the browser tests"
if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
fi
/usr/bin/chromium --version

# After cargo test, so target/debug/coedit is built. Optional dependencies are left
# out: y-websocket lists a LevelDB store and an old `ws` that only its own server uses.
echo "== interop and browser tests (tests/interop: y-websocket, yjs, Chromium)"
(cd tests/interop && npm ci --no-audit --no-fund --omit=optional \
    && env -u MONGO_URL COEDIT_TEST_MONGO_URL="$TEST_MONGO_URL" COEDIT_TEST_REDIS="$REDIS_SERVER" node --test)
