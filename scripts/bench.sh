#!/usr/bin/env bash
# Takes the measurements of BENCHMARKS.md: coedit serve and the plain relay
# (examples/relay.rs) under the same loads from `coedit bench`, each run against a
# freshly started server on this machine's loopback.
#
# Usage: scripts/bench.sh [loads|ceiling|steps|idle|durability|cluster|all]   (default: all)
#   loads    the three fixed loads, RUNS runs each
#   ceiling  rooms of CEILING_CLIENTS at CEILING_RATE edits/s, more rooms each step,
#            until p99 reaches 50 ms or keystrokes go missing
#   steps    each of CEILING_ROOMS, RUNS runs each, without stopping (to confirm
#            the ceiling with medians)
#   idle     IDLE_CONNECTIONS connections that only stay open: server memory, connect time
#   durability  load 2 and 500 rooms of 4 at 10/s, SERVERS interleaved run by run
#   cluster  each of CLUSTER_LOADS (ROOMSxCLIENTSxRATE, default 50x20x1: load 2)
#            on CLUSTER_SIZES nodes of one cluster (Redis with its AOF,
#            appendfsync REDIS_FSYNC (everysec), and BENCH_MONGO_URL or a MongoDB
#            test server started here), after a lone node on its embedded store,
#            each room's clients spread over the nodes, sizes interleaved run by run;
#            the report gains the CPU of every node, of Redis and of MongoDB
# Environment: RUNS (3), DURATION (10s), WARMUP (2s), RAMP (2s), PAYLOAD (full),
#   SERVERS ("coedit relay"; also coedit-relaxed, coedit-fsync, and coedit-mongo,
#   coedit-mongo-relaxed with BENCH_MONGO_URL: the durability levels), PORT (18401),
#   OUT (target/bench-results/<time>), COEDIT (target/release/coedit: the binary measured),
#   QUIET_WAIT (120): seconds to wait before each run for no compiler (rustc) to be
#   running on the machine, since a build on the same cores pollutes the numbers.
# Results: one JSON report per run under $OUT, and a summary table (median and
# min–max over the runs) on stdout. Needs jq for the summary.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-all}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
RAMP=${RAMP:-2s}
PAYLOAD=${PAYLOAD:-full}
SERVERS=${SERVERS:-coedit relay}
PORT=${PORT:-18401}
OUT=${OUT:-target/bench-results/$(date +%Y%m%d-%H%M%S)}
CEILING_CLIENTS=${CEILING_CLIENTS:-20}
CEILING_RATE=${CEILING_RATE:-2}
CEILING_ROOMS=${CEILING_ROOMS:-10 20 40 60 80 120 160 240 320}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
QUIET_WAIT=${QUIET_WAIT:-120}
CLUSTER_SIZES=${CLUSTER_SIZES:-1 2 3}
CLUSTER_LOADS=${CLUSTER_LOADS:-50x20x1}
P99_LIMIT_MS=50

# Every connection is a file descriptor, on both sides.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT"
cargo build --release --bins --examples >&2
COEDIT=${COEDIT:-target/release/coedit}
RELAY=target/release/examples/relay
SERVER_PID=

start_server() {
    case $1 in
        coedit | coedit-relaxed | coedit-fsync)
            local durability=${1#coedit-}
            [ "$durability" = coedit ] && durability=write-ahead
            "$COEDIT" serve --host 127.0.0.1 --port "$PORT" --data-dir "$(mktemp -d)" \
                --durability "$durability" --log-level warn >&2 & ;;
        coedit-mongo | coedit-mongo-relaxed)
            local durability=write-ahead
            [ "$1" = coedit-mongo-relaxed ] && durability=relaxed
            "$COEDIT" serve --host 127.0.0.1 --port "$PORT" --mongo-url "${BENCH_MONGO_URL:?set BENCH_MONGO_URL}" \
                --db-name "coedit_bench_$(date +%s%N)" --durability "$durability" --log-level warn >&2 & ;;
        relay) "$RELAY" --port "$PORT" 2>/dev/null & ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "server $1 did not start" >&2
    return 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}
trap stop_server EXIT

# run NAME SERVER BENCH-ARGS...: one bench against a fresh server; the report gets
# the number of compiler processes seen at its start, so noisy runs can be told apart.
run() {
    local name=$1 server=$2
    shift 2
    for _ in $(seq "$QUIET_WAIT"); do
        [ "$(pgrep -c rustc || true)" = 0 ] && break
        sleep 1
    done
    start_server "$server"
    local compilers
    compilers=$(pgrep -c rustc || true)
    local file="$OUT/$name.$server.$(date +%s%N).json"
    "$COEDIT" bench --url "ws://127.0.0.1:$PORT" --server-pid "$SERVER_PID" --json "$@" \
        | jq --arg name "$name" --arg server "$server" --argjson compilers "$compilers" \
            '. + {name: $name, server_kind: $server, compilers_running: $compilers}' > "$file" \
        || true
    stop_server
    echo "$file"
}

loads() {
    for server in $SERVERS; do
        for _ in $(seq "$RUNS"); do
            run "1-10x10x2" "$server" --rooms 10 --clients 10 --rate 2 \
                --duration "$DURATION" --warmup "$WARMUP" --ramp "$RAMP" --payload "$PAYLOAD" >/dev/null
            run "2-50x20x1" "$server" --rooms 50 --clients 20 --rate 1 \
                --duration "$DURATION" --warmup "$WARMUP" --ramp "$RAMP" --payload "$PAYLOAD" >/dev/null
            run "3-1x100x1" "$server" --rooms 1 --clients 100 --rate 1 \
                --duration "$DURATION" --warmup "$WARMUP" --ramp "$RAMP" --payload "$PAYLOAD" >/dev/null
        done
    done
}

# Load 2 and rooms of 4 at 60k deliveries/s, the SERVERS interleaved run by run:
# what each durability level costs (SERVERS="coedit coedit-relaxed ...").
durability() {
    for _ in $(seq "$RUNS"); do
        for server in $SERVERS; do
            run "2-50x20x1" "$server" --rooms 50 --clients 20 --rate 1 \
                --duration "$DURATION" --warmup "$WARMUP" --ramp "$RAMP" --payload "$PAYLOAD" >/dev/null
            run "4-500x4x10" "$server" --rooms 500 --clients 4 --rate 10 \
                --duration "$DURATION" --warmup "$WARMUP" --ramp "$RAMP" --payload "$PAYLOAD" >/dev/null
        done
    done
}

ceiling() {
    for server in $SERVERS; do
        for rooms in $CEILING_ROOMS; do
            local file
            file=$(run "4-ceiling-${rooms}x${CEILING_CLIENTS}x${CEILING_RATE}" "$server" \
                --rooms "$rooms" --clients "$CEILING_CLIENTS" --rate "$CEILING_RATE" \
                --duration "$DURATION" --warmup "$WARMUP" --ramp "$RAMP" --payload "$PAYLOAD")
            if ! jq -e --argjson limit "$P99_LIMIT_MS" \
                '.latency_ms.p99 < $limit and .delivery_ratio >= 0.999 and .connections.failed == 0' \
                "$file" >/dev/null 2>&1; then
                echo "$server: p99 >= ${P99_LIMIT_MS} ms or deliveries lost at $rooms rooms" >&2
                break
            fi
        done
    done
}

steps() {
    for server in $SERVERS; do
        for rooms in $CEILING_ROOMS; do
            for _ in $(seq "$RUNS"); do
                run "4-steps-${rooms}x${CEILING_CLIENTS}x${CEILING_RATE}" "$server" \
                    --rooms "$rooms" --clients "$CEILING_CLIENTS" --rate "$CEILING_RATE" \
                    --duration "$DURATION" --warmup "$WARMUP" --ramp "$RAMP" --payload "$PAYLOAD" >/dev/null
            done
        done
    done
}

idle() {
    local rooms=$((IDLE_CONNECTIONS / 100))
    for server in $SERVERS; do
        for _ in $(seq "$RUNS"); do
            run "5-idle-${IDLE_CONNECTIONS}" "$server" --rooms "$rooms" --clients 100 --rate 0 \
                --duration 5s --warmup 0s --ramp 10s >/dev/null
        done
    done
}

# CPU seconds (user + system) a process has used so far.
cpu_seconds() {
    awk -v tck="$(getconf CLK_TCK)" '{ print ($14 + $15) / tck }' "/proc/$1/stat" 2>/dev/null || echo 0
}

cluster() {
    local redis_port=$((PORT + 100)) dir
    dir=$(mktemp -d)
    setsid redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir" --appendonly yes \
        --appendfsync "${REDIS_FSYNC:-everysec}" --save "" --logfile "$dir/redis.log" &
    local redis_pid=$! mongo_pid="" mongo_url=${BENCH_MONGO_URL:-}
    if [ -z "$mongo_url" ]; then
        local mongo_port=$((PORT + 101))
        setsid .venv/bin/secantusd-py --host 127.0.0.1 --port "$mongo_port" --storage-path "$dir/mongo" \
            >"$dir/mongo.log" 2>&1 &
        mongo_pid=$!
        mongo_url="mongodb://127.0.0.1:$mongo_port"
        for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$mongo_port") 2>/dev/null && break; sleep 0.1; done
    fi
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break; sleep 0.05; done
    for _ in $(seq "$RUNS"); do
      for load in $CLUSTER_LOADS; do
        local rooms clients rate name
        IFS=x read -r rooms clients rate <<< "$load"
        # Load 2 keeps the name the fixed loads give it.
        name="cluster-$load"
        [ "$load" = 50x20x1 ] && name="2-50x20x1"
        # The reference: one lone node on its embedded store.
        run "$name" coedit --rooms "$rooms" --clients "$clients" --rate "$rate" \
            --duration "$DURATION" --warmup "$WARMUP" --ramp "$RAMP" --payload "$PAYLOAD" >/dev/null
        for size in $CLUSTER_SIZES; do
            for _ in $(seq "$QUIET_WAIT"); do
                [ "$(pgrep -c rustc || true)" = 0 ] && break
                sleep 1
            done
            redis-cli -p "$redis_port" FLUSHALL >/dev/null
            local db="coedit_bench_$(date +%s%N)" pids=() urls=() watch=()
            for n in $(seq "$size"); do
                local port=$((PORT + n - 1))
                "$COEDIT" serve --host 127.0.0.1 --port "$port" --node-id "node-$n" \
                    --redis-url "redis://127.0.0.1:$redis_port" --mongo-url "$mongo_url" \
                    --db-name "$db" --log-level warn >&2 &
                pids+=($!)
                urls+=(--url "ws://127.0.0.1:$port")
                watch+=(--server-pid "$!")
            done
            for n in $(seq "$size"); do
                for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$((PORT + n - 1))") 2>/dev/null && break; sleep 0.05; done
            done
            local before_redis before_mongo=0
            before_redis=$(cpu_seconds "$redis_pid")
            [ -n "$mongo_pid" ] && before_mongo=$(cpu_seconds "$mongo_pid")
            local compilers file="$OUT/$name.cluster-$size.$(date +%s%N).json"
            compilers=$(pgrep -c rustc || true)
            "$COEDIT" bench "${urls[@]}" "${watch[@]}" --json --rooms "$rooms" --clients "$clients" --rate "$rate" \
                --duration "$DURATION" --warmup "$WARMUP" --ramp "$RAMP" --payload "$PAYLOAD" > "$file.raw" || true
            local after_redis after_mongo=0
            after_redis=$(cpu_seconds "$redis_pid")
            [ -n "$mongo_pid" ] && after_mongo=$(cpu_seconds "$mongo_pid")
            for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
            for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
            # The bench sums the nodes' CPU over its measured window; Redis and MongoDB
            # are measured over the whole run (ramp and drain included), so their
            # per-delivery figures are upper bounds.
            jq --arg server "cluster-$size" --argjson compilers "$compilers" \
                --argjson redis "$(echo "$after_redis - $before_redis" | bc)" \
                --argjson mongo "$(echo "$after_mongo - $before_mongo" | bc)" \
                --arg name "$name" \
                '. + {name: $name, server_kind: $server, compilers_running: $compilers,
                      cluster: {redis_cpu_s: $redis, mongo_cpu_s: $mongo,
                        redis_us_per_delivery: ($redis * 1e6 / .deliveries)}}' \
                "$file.raw" > "$file" && rm -f "$file.raw"
        done
      done
    done
    kill "$redis_pid" ${mongo_pid:+"$mongo_pid"} 2>/dev/null || true
    wait "$redis_pid" ${mongo_pid:+"$mongo_pid"} 2>/dev/null || true
    rm -rf "$dir"
    jq -s -r '
      def median: sort | .[(length - 1) / 2 | floor];
      def spread(f): [.[] | f] as $v | "\($v | median | . * 100 | round / 100) (\($v | min | . * 100 | round / 100)–\($v | max | . * 100 | round / 100))";
      group_by([.name, .server_kind])[] | select(.[0].name | test("^(2-50x20x1|cluster-)"))
      | "| \(.[0].name) | \(.[0].server_kind) | \(length) | \(spread(.latency_ms.p50)) | \(spread(.latency_ms.p99)) | \(spread(.delivery_ratio)) | \(spread(.server.cpu_us_per_delivery)) | \(if .[0].cluster then spread(.cluster.redis_us_per_delivery) else "-" end) | \(if .[0].cluster then spread(.cluster.mongo_cpu_s) else "-" end) |"
    ' "$OUT"/*.json >&2
}

summary() {
    jq -s -r '
      def median: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
      # null (e.g. the delivery ratio of a run that expected no delivery) shows as -.
      def spread(f): [.[] | f | select(. != null)] as $values
        | if ($values | length) == 0 then "-"
          else "\($values | median | . * 100 | round / 100) (\($values | min | . * 100 | round / 100)–\($values | max | . * 100 | round / 100))"
          end;
      group_by([.name, .server_kind])[]
      | "| \(.[0].name) | \(.[0].server_kind) | \(length) | \(spread(.latency_ms.p50)) | \(spread(.latency_ms.p99)) | \(spread(.latency_ms.max)) | \(spread(.deliveries_per_sec)) | \(spread(.delivery_ratio)) | \(spread(.server.cpu.cores)) | \(spread(.server.cpu_us_per_delivery)) | \(spread(.bench_cpu.cores)) | \(spread(.server.rss_max_bytes / 1048576)) | \(spread(.connections.connect_ms.p99)) | \([.[].compilers_running] | max) |"
    ' "$OUT"/*.json
}

case $MODE in
    loads) loads ;;
    ceiling) ceiling ;;
    steps) steps ;;
    idle) idle ;;
    durability) durability ;;
    cluster) cluster ;;
    all) loads; ceiling; idle ;;
    *) echo "usage: $0 [loads|ceiling|steps|idle|durability|cluster|all]" >&2; exit 2 ;;
esac
echo "| load | server | runs | p50 ms | p99 ms | max ms | deliveries/s | delivery ratio | server cores | server µs/delivery | bench cores | server RSS MiB | connect p99 ms | compilers |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
summary
echo "results in $OUT" >&2
