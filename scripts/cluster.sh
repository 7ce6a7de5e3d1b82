#!/usr/bin/env bash
# A coedit cluster on this machine, in one command: Redis (installed with apt-get
# when missing; with its append-only file), the MongoDB-compatible test
# server (secantusdb, installed into .venv), and NODES coedit nodes on ports
# BASE_PORT, BASE_PORT+1, … Ctrl-C stops everything.
#
# Usage: scripts/cluster.sh
# Environment: NODES (3), BASE_PORT (8001), REDIS_PORT (6380), MONGO_PORT (27018),
#   DATA (a new temporary directory; Redis' and MongoDB's files), RELEASE (1: build
#   and run the release binary; 0: the debug one).
#
# Then open http://127.0.0.1:8001/ and http://127.0.0.1:8002/ side by side, or
#   coedit cluster --server http://127.0.0.1:8003
#   coedit bench --url ws://127.0.0.1:8001 --url ws://127.0.0.1:8002 --url ws://127.0.0.1:8003
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=${NODES:-3}
BASE_PORT=${BASE_PORT:-8001}
REDIS_PORT=${REDIS_PORT:-6380}
MONGO_PORT=${MONGO_PORT:-27018}
DATA=${DATA:-$(mktemp -d "${TMPDIR:-/tmp}/coedit-cluster.XXXXXX")}
RELEASE=${RELEASE:-1}
SECANTUSDB_VERSION=0.7.0b3
VENV="$PWD/.venv"

if ! command -v redis-server >/dev/null; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y redis-server
fi
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -m pip show secantusdb 2>/dev/null | grep -qx "Version: $SECANTUSDB_VERSION"; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "secantusdb==$SECANTUSDB_VERSION"
fi
if [ "$RELEASE" = 1 ]; then
    cargo build --release --bin coedit
    COEDIT=target/release/coedit
else
    cargo build --bin coedit
    COEDIT=target/debug/coedit
fi

# Nodes stop first (they write their last updates to Redis and MongoDB), then the
# stores. The stores run in their own session, so a Ctrl-C reaches only the nodes.
NODE_PIDS=()
STORE_PIDS=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${NODE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${NODE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for pid in "${STORE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

wait_for() {
    local port=$1 what=$2
    for _ in $(seq 1 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "$what is not listening on $port after 60 s; see $DATA" >&2
    exit 1
}

mkdir -p "$DATA/redis" "$DATA/mongo"
setsid redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DATA/redis" \
    --appendonly yes --appendfsync everysec --save "" --logfile "$DATA/redis/redis.log" &
STORE_PIDS+=($!)
setsid "$VENV/bin/secantusd-py" --host 127.0.0.1 --port "$MONGO_PORT" --storage-path "$DATA/mongo" \
    >"$DATA/mongo/secantusd.log" 2>&1 &
STORE_PIDS+=($!)
wait_for "$REDIS_PORT" Redis
wait_for "$MONGO_PORT" "the MongoDB test server"

for n in $(seq 1 "$NODES"); do
    port=$((BASE_PORT + n - 1))
    "$COEDIT" serve --host 127.0.0.1 --port "$port" --node-id "node-$n" \
        --redis-url "redis://127.0.0.1:$REDIS_PORT" \
        --mongo-url "mongodb://127.0.0.1:$MONGO_PORT" --db-name coedit_cluster &
    NODE_PIDS+=($!)
done
for n in $(seq 1 "$NODES"); do
    wait_for $((BASE_PORT + n - 1)) "node-$n"
done

echo
echo "coedit cluster: $NODES nodes on ports $BASE_PORT-$((BASE_PORT + NODES - 1)), Redis on $REDIS_PORT, MongoDB on $MONGO_PORT (files in $DATA)"
echo "  open http://127.0.0.1:$BASE_PORT/ and http://127.0.0.1:$((BASE_PORT + 1))/ side by side"
echo "  $COEDIT cluster --server http://127.0.0.1:$BASE_PORT"
echo "Ctrl-C stops everything."
wait
