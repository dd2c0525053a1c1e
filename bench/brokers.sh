#!/usr/bin/env bash
# Delivery rate of each broker destination, as a ratio to the http destination's rate to the local
# sink (bench/src/bin/sink.rs) in the same run (docs/PERFORMANCE.md, "Broker destinations").
# For each destination: hookgate --role ingest stores N signed ~1 KiB events (SQLite), stops; then
# hookgate --role worker delivers that backlog, and the time from ready to the N-th successful
# attempt (its time in the attempt log) gives deliveries/s. Only delivery is
# measured: claims, the publish and its confirmation, the attempt record. The machine is shared
# and its speed drifts, so the destinations alternate, http first, for ROUNDS rounds, and each
# broker's ratio is the median of its rounds' ratios to that round's http rate.
# The brokers are the machine's (HOOKGATE_TEST_*_URL, as scripts/test.sh sets them); the bench
# makes its own subject's stream, queue, Redis stream and MQTT topic and removes them.
#
# usage: bench/brokers.sh [EVENTS=20000] [ROUNDS=3] [KINDS="nats nats-bare redis rabbitmq mqtt"]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
ROUNDS=${2:-3}
KINDS=${3:-nats nats-bare redis rabbitmq mqtt}
SECRET=bench-secret
NATS=${HOOKGATE_TEST_NATS_URL:-nats://127.0.0.1:4222}
AMQP=${HOOKGATE_TEST_RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
REDIS=${HOOKGATE_TEST_REDIS_URL:-redis://127.0.0.1:6379}
MQTT=${HOOKGATE_TEST_MQTT_URL:-mqtt://127.0.0.1:1883}
PY=${HOOKGATE_TEST_PYTHON:-target/test-venv/bin/python3}

cargo build --release --quiet
(cd bench && cargo build --release --quiet)
B=bench/target/release
HG=${HG:-target/release/hookgate}  # HG=path: another build, for an A/B
T=$(mktemp -d)
PIDS=()
TAG=bench$$
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
    "$PY" bench/brokers_setup.py down "$TAG" "$NATS" "$AMQP" "$REDIS" || true
    rm -rf "$T"
}
trap cleanup EXIT
source bench/common.sh
"$PY" bench/brokers_setup.py up "$TAG" "$NATS" "$AMQP" "$REDIS"

SINK_PORT=$(port)
$B/sink 127.0.0.1:$SINK_PORT >/dev/null & PIDS+=($!); sleep 0.3

target() { # $1 = kind: the destination's keys
    case $1 in
    http) printf 'type = "http"\nurl = "http://127.0.0.1:%s/sink"\n' "$SINK_PORT" ;;
    nats) printf 'type = "nats"\nurl = "%s"\nsubject = "%s.{source}"\n' "$NATS" "$TAG" ;;
    redis) printf 'type = "redis"\nurl = "%s"\nstream = "%s:{source}"\nmaxlen = 100000\n' "$REDIS" "$TAG" ;;
    rabbitmq) printf 'type = "rabbitmq"\nurl = "%s"\nrouting_key = "%s"\n' "$AMQP" "$TAG" ;;
    mqtt) printf 'type = "mqtt"\nurl = "%s"\ntopic = "%s/{source}"\n' "$MQTT" "$TAG" ;;
    esac
}
config() { # $1 = dir, $2 = kind
    cat > "$1/hookgate.toml" <<TOML
[server]
listen = "127.0.0.1:$INGEST_PORT"
[storage]
url = "sqlite://$1/hookgate.db"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[delivery]
initial_backoff = "1s"
max_backoff = "1s"
[[sources]]
name = "bench"
path = "/hook"
verify = { scheme = "hmac-sha256", header = "X-Signature", secret_env = "BENCH_SECRET" }
dedupe = { json_pointer = "/id" }
deliver_to = ["out"]
[[destinations]]
name = "out"
timeout = "10s"
$(target "$2")
TOML
}
start() { # $1 = dir, $2 = role
    BENCH_SECRET=$SECRET HOOKGATE_LOG=warn $HG serve --config "$1/hookgate.toml" --role "$2" 2>>"$T/hookgate.log" &
    HGPID=$!; PIDS+=($HGPID)
    wait_ready "127.0.0.1:$ADMIN_PORT"
}
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }
successes() {
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" \
        | awk '/^hookgate_delivery_attempts_total\{.*outcome="success"/ {s += $2} END {print s + 0}'
}
# Prints the delivery rate (events/s) of a backlog of N events to destination kind $1.
# `nats-bare` is no destination: bench/src/bin/natspub.rs publishes N messages the way the nats
# destination does, with nothing else on the machine's CPU, the broker's own ceiling here.
rate() {
    local d="$T/$1-$RANDOM" t0 t1 got
    if [ "$1" = nats-bare ]; then
        $B/natspub "$NATS" "$TAG.bare" "$N" 64 | sed 's/.*rate=//'; return
    fi
    mkdir "$d"; INGEST_PORT=$(port); ADMIN_PORT=$(port); config "$d" "$1"
    start "$d" ingest
    $B/loadgen "http://127.0.0.1:$INGEST_PORT/hook" --requests "$N" --connections 64 --secret $SECRET >/dev/null
    stop $HGPID
    start "$d" worker
    t0=$(date +%s%3N)
    # Polled seldom: a scrape of /metrics costs the server CPU (every 20 ms slowed the http
    # destination by a fifth). The end is the last attempt's own time in the attempt log.
    for _ in $(seq 1 6000); do
        got=$(successes); [ "$got" -ge "$N" ] && break; sleep 0.2
    done
    stop $HGPID
    [ "$got" -ge "$N" ] || { echo "FATAL: $1 delivered $got of $N" >&2; exit 1; }
    t1=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT max(at) FROM attempts").fetchone()[0])' "$d/hookgate.db")
    python3 -c "print(round($N * 1000 / ($t1 - $t0)))"
}

declare -A RATES
for r in $(seq 1 "$ROUNDS"); do
    for kind in http $KINDS; do
        echo "== round $r of $ROUNDS: $kind" >&2
        RATES[$kind]+="$(rate "$kind") "
    done
done
python3 - "$N" "$ROUNDS" "http $KINDS" "$(for k in http $KINDS; do echo "$k ${RATES[$k]}"; done)" <<'PY'
import statistics, sys
n, rounds, kinds, table = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4]
rates = {l.split()[0]: [float(x) for x in l.split()[1:]] for l in table.splitlines()}
http = rates["http"]
print(f"delivery of a backlog of {n} events, {rounds} alternating rounds (median; ratio: the median of the rounds' ratios to http)\n")
print("| destination | deliveries/s (median) | each round | ratio to http |")
print("|---|---|---|---|")
for k in kinds:
    ratio = statistics.median(r / h for r, h in zip(rates[k], http))
    each = ", ".join(f"{r:.0f}" for r in rates[k])
    print(f"| {k} | {statistics.median(rates[k]):.0f} | {each} | {ratio:.2f} |")
PY
