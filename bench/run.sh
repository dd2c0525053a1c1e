#!/usr/bin/env bash
# hookgate benchmark: one command, one table. Builds the release binary and the bench tools,
# then measures, in this order and on this machine:
#   ceiling   a bare axum server that reads the body and answers 200 (the upper bound)
#   ingest    hookgate --role ingest, embedded SQLite (durable: fsync before 200), signed ~1 KiB JSON,
#             on a fresh store, with the default dedupe key (the SHA-256 of the body) and event ids
#             in no order (--random-ids): dedupe keys in no order, as real providers' traffic has.
#   ordered   the same with `dedupe = { json_pointer = "/id" }` and ids counting up: each new key
#             lands on the last page of the dedupe index (the standing figure until session 8).
#             The machine's speed drifts by tens of percent over minutes, so ceiling, ingest and
#             ordered alternate for ROUNDS rounds and the table shows the median round of each; the
#             ratios are the medians of the rounds' ratios.
#   dupes     the same body repeated (every request after the first is a duplicate)
#   pipeline  hookgate --role all delivering to a local receiver: events/s end to end, zero loss
#   backlog   ingest again on a store filled with BACKLOG events (keys in no order), their
#             deliveries pending (destination down)
#   restart   start-to-ready time with that backlog
# Every body is a distinct event; 64 connections; loopback only.
# "server CPU µs/req" is the measured server process's CPU time (user + system) per answered
# request. The load generator shares the same cores, so req/s moves with whatever else runs on the
# machine; CPU per request is the steadier figure to compare builds with.
#
# usage: bench/run.sh [DURATION_SECONDS=10] [BACKLOG=1000000] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
BACKLOG=${2:-1000000}
ROUNDS=${3:-3}
CONNS=64
SECRET=bench-secret

cargo build --release --quiet
(cd bench && cargo build --release --quiet)
B=bench/target/release
HG=target/release/hookgate
T=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT

source bench/common.sh
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }  # user + system CPU of a process, in clock ticks
# CPU microseconds per request: $1 = process, $2 = ticks before, $3 = requests
cpu_us() { python3 -c "print(round(($(ticks $1) - $2) * 1e6 / $(getconf CLK_TCK) / max(1, $3), 1))"; }
# Runs the load generator against process $1 (the rest are loadgen arguments); prints its JSON,
# then |RSS MiB|CPU µs per request of that process.
measured() {
    local pid=$1 t0 out; shift; t0=$(ticks "$pid")
    out=$(load "$@")
    echo "$out|$(hwm_mib "$pid")|$(cpu_us "$pid" "$t0" "$(json "$out" ok)")"
}

SINK_PORT=$(port)
config() { # $1 = db dir
    bench_config "$1/hookgate.toml" "sqlite://$1/hookgate.db" "$INGEST_PORT" "$ADMIN_PORT" \
        "http://127.0.0.1:$SINK_PORT/sink" $'[delivery]\ninitial_backoff = "1h"\nmax_backoff = "1h"'
}
start_hookgate() { # $1 = dir, $2 = role
    INGEST_PORT=$(port); ADMIN_PORT=$(port)
    config "$1"
    BENCH_SECRET=$SECRET HOOKGATE_LOG=warn $HG serve --config "$1/hookgate.toml" --role "$2" 2>>"$T/hookgate.log" &
    HGPID=$!; PIDS+=($HGPID)
    wait_ready "127.0.0.1:$ADMIN_PORT"
}
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }
load() { $B/loadgen "$@" --connections $CONNS --secret $SECRET; }

declare -A R
row() { R[$1]="$2"; }

CEIL_PORT=$(port)
$B/ceiling 127.0.0.1:$CEIL_PORT >/dev/null & CP=$!; PIDS+=($CP); sleep 0.3
CEIL_ROUNDS=(); INGEST_ROUNDS=(); ORDERED_ROUNDS=()
for i in $(seq 1 "$ROUNDS"); do
    echo "== ceiling, round $i of $ROUNDS" >&2
    CEIL_ROUNDS+=("$(measured $CP http://127.0.0.1:$CEIL_PORT/hook --duration "$DUR")")
    echo "== ordered (durable, dedupe on /id, ids counting up), round $i of $ROUNDS" >&2
    mkdir "$T/ordered$i"; BENCH_DEDUPE=pointer start_hookgate "$T/ordered$i" ingest
    ORDERED_ROUNDS+=("$(measured $HGPID http://127.0.0.1:$INGEST_PORT/hook --duration "$DUR")")
    stop $HGPID
    echo "== ingest (durable, --role ingest, keys in no order), round $i of $ROUNDS" >&2
    mkdir "$T/ingest$i"; start_hookgate "$T/ingest$i" ingest
    INGEST_ROUNDS+=("$(measured $HGPID http://127.0.0.1:$INGEST_PORT/hook --duration "$DUR" --random-ids)")
    if [ "$i" -lt "$ROUNDS" ]; then stop $HGPID; fi  # the last one takes the duplicates next
done
stop $CP
# The median round of each (by req/s), and the median of the rounds' ingest/ceiling ratios.
median_round() { for r in "$@"; do echo "$(json "${r%%|*}" rps) $r"; done | sort -g | awk -v n=$# 'NR == int((n + 1) / 2) {$1 = ""; print substr($0, 2)}'; }
row ceiling "$(median_round "${CEIL_ROUNDS[@]}")"; CEIL_RPS=$(json "${R[ceiling]%%|*}" rps)
row ingest "$(median_round "${INGEST_ROUNDS[@]}")"; INGEST_RPS=$(json "${R[ingest]%%|*}" rps)
row ordered "$(median_round "${ORDERED_ROUNDS[@]}")"
ROUND_RPS=$(for i in "${!CEIL_ROUNDS[@]}"; do
    echo "$(json "${CEIL_ROUNDS[$i]%%|*}" rps) $(json "${INGEST_ROUNDS[$i]%%|*}" rps) $(json "${ORDERED_ROUNDS[$i]%%|*}" rps)"; done)

echo "== duplicates (same body repeated)" >&2
row dupes "$(measured $HGPID http://127.0.0.1:$INGEST_PORT/hook --duration "$DUR" --duplicate)"
stop $HGPID

echo "== full pipeline (ingest + delivery to a local receiver)" >&2
$B/sink 127.0.0.1:$SINK_PORT >/dev/null & SP=$!; PIDS+=($SP); sleep 0.3
mkdir "$T/pipe"; start_hookgate "$T/pipe" all
N=$(python3 -c "print(int(max(20000, float('$INGEST_RPS') * $DUR * 0.8)))")
t0=$(date +%s.%N); c0=$(ticks $HGPID)
out=$(load http://127.0.0.1:$INGEST_PORT/hook --requests "$N" --random-ids)
acked=$(json "$out" ok)
for _ in $(seq 1 6000); do
    got=$(curl -s http://127.0.0.1:$SINK_PORT/stats)
    [ "$(json "$got" received)" -ge "$acked" ] && break; sleep 0.05
done
t1=$(date +%s.%N)
PIPE_EPS=$(python3 -c "print(round($acked / ($t1 - $t0)))")
row pipeline "$out|$(hwm_mib $HGPID)|$(cpu_us $HGPID "$c0" "$acked")|$got|$PIPE_EPS"
stop $HGPID; stop $SP

echo "== backlog: filling $BACKLOG events, keys in no order, deliveries pending (destination down)" >&2
mkdir "$T/backlog"; start_hookgate "$T/backlog" ingest
load http://127.0.0.1:$INGEST_PORT/hook --requests "$BACKLOG" --start-id 100000000 --random-ids >/dev/null
r=$(measured $HGPID http://127.0.0.1:$INGEST_PORT/hook --duration "$DUR" --start-id 1900000000 --random-ids)
BACKLOG_RPS=$(json "${r%%|*}" rps); row backlog "$r"
stop $HGPID

echo "== restart with the backlog: start to ready" >&2
t0=$(date +%s%N)
start_hookgate "$T/backlog" all
t1=$(date +%s%N)
READY_MS=$(( (t1 - t0) / 1000000 ))
sleep 2
RESTART_RSS=$(hwm_mib $HGPID)
stop $HGPID

python3 - "$CEIL_RPS" "$INGEST_RPS" "$BACKLOG_RPS" "$PIPE_EPS" "$READY_MS" "$RESTART_RSS" "$BACKLOG" "$DUR" "$ROUND_RPS" <<PY
import json, statistics, sys
ceil, ingest, backlog, pipe, ready, restart_rss, n_backlog, dur, round_rps = sys.argv[1:]
rounds = [tuple(map(float, l.split())) for l in round_rps.splitlines()]
ingest_ratio = statistics.median(i / c for c, i, _ in rounds)
ordered_ratio = statistics.median(o / c for c, _, o in rounds)
rows = {
$(for k in ceiling ingest ordered dupes pipeline backlog; do echo "    '$k': '''${R[$k]}''',"; done)
}
print(f"hookgate benchmark: {dur}s per run, 64 connections, signed ~1 KiB JSON, SQLite (fsync before 200); "
      f"default dedupe (SHA-256 of the body) and ids in no order unless noted; "
      f"ceiling, ingest and ordered: the median of {len(rounds)} alternating rounds\n")
print(f"| run | req/s | ratio to ceiling | p50 ms | p99 ms | p99.9 ms | non-200 | errors | RSS MiB | server CPU µs/req |")
print(f"|---|---|---|---|---|---|---|---|---|---|")
for name, raw in rows.items():
    parts = raw.split('|'); r = json.loads(parts[0])
    ratio = {'ingest': ingest_ratio, 'ordered': ordered_ratio}.get(name, r['rps'] / float(ceil))
    print(f"| {name} | {r['rps']:.0f} | {ratio:.2f} | {r['p50_ms']} | {r['p99_ms']} | {r['p999_ms']} | {r['non_200']} | {r['errors']} | {parts[1]} | {parts[2]} |")
print("\nrounds (ceiling, ingest, ordered req/s, ratios): "
      + "; ".join(f"{c:.0f}, {i:.0f}, {o:.0f}, {i / c:.2f}, {o / c:.2f}" for c, i, o in rounds))
p = rows['pipeline'].split('|'); sink = json.loads(p[3])
print(f"full pipeline: {p[4]} events/s end to end (hookgate CPU {p[2]} µs per event, ingest and delivery); delivered {sink['received']} of {json.loads(p[0])['ok']} acknowledged; "
      f"duplicate deliveries {sink['duplicates']}; end-to-end p50 {sink['e2e_p50_ms']} ms, p99 {sink['e2e_p99_ms']} ms")
print(f"ingest on a store of {n_backlog} events (keys in no order), all pending: {float(backlog)/float(ceil):.2f} x the ceiling, "
      f"{float(backlog)/float(ingest):.2f} x the fresh store's rate")
print(f"start to ready with {n_backlog} pending: {ready} ms; RSS after 2 s of delivering (to a down destination): {restart_rss} MiB")
PY
