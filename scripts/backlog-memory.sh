#!/usr/bin/env bash
# Memory with a large backlog, and its drain. Reuses the benchmark tools (bench/: loadgen, sink);
# bench/run.sh reports ingest speed and RSS with a backlog, this adds what happens next:
#   1. fill: N signed events into hookgate --role ingest while the destination is down
#   2. restart --role all with the destination up: start-to-ready time, then RSS sampled every
#      0.5 s while the whole backlog drains; delivered and duplicate counts from the sink.
# Loopback only; bounded by N and by a drain limit of 30 minutes.
#
# usage: [HG=BINARY] scripts/backlog-memory.sh [N=300000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-300000}
SECRET=bench-secret

# HG=path/to/hookgate compares another build (then nothing is built but the bench tools).
[ -z "${HG:-}" ] && cargo build --release --quiet
(cd bench && cargo build --release --quiet)
B=bench/target/release
HG=${HG:-target/release/hookgate}
T=$(mktemp -d)
PIDS=()
cleanup() {
    status=$?
    [ $status -ne 0 ] && { echo "failed; hookgate's log ends:" >&2; tail -n 20 "$T/hookgate.log" >&2; }
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$T"
}
trap cleanup EXIT

source bench/common.sh

INGEST_PORT=$(port); ADMIN_PORT=$(port); SINK_PORT=$(port)
bench_config "$T/hookgate.toml" "sqlite://$T/hookgate.db" "$INGEST_PORT" "$ADMIN_PORT" \
    "http://127.0.0.1:$SINK_PORT/sink" $'[delivery]\ninitial_backoff = "1s"\nmax_backoff = "5s"\nmax_attempts = 1000'
start() { # $1 = role
    BENCH_SECRET=$SECRET HOOKGATE_LOG=warn $HG serve --config "$T/hookgate.toml" --role "$1" 2>>"$T/hookgate.log" &
    HGPID=$!; PIDS+=($HGPID)
    wait_ready "127.0.0.1:$ADMIN_PORT"
}

echo "== fill: $N events, destination down (--role ingest)" >&2
start ingest
t0=$(date +%s.%N)
fill=$($B/loadgen "http://127.0.0.1:$INGEST_PORT/hook" --requests "$N" --connections 64 --secret $SECRET)
t1=$(date +%s.%N)
ACKED=$(json "$fill" ok)
FILL_RSS=$(rss_mib $HGPID); FILL_HWM=$(hwm_mib $HGPID)
kill $HGPID; wait $HGPID 2>/dev/null || true
DB_MIB=$(du -sm "$T/hookgate.db" | cut -f1); WAL_MIB=$(du -sm "$T/hookgate.db-wal" 2>/dev/null | cut -f1 || echo 0)

echo "== restart --role all with the destination up; drain" >&2
$B/sink 127.0.0.1:$SINK_PORT >/dev/null & SP=$!; PIDS+=($SP); sleep 0.3
r0=$(date +%s%N)
start all
r1=$(date +%s%N)
READY_MS=$(( (r1 - r0) / 1000000 ))
PEAK=0; d0=$(date +%s.%N)
for _ in $(seq 1 3600); do
    r=$(rss_mib $HGPID); [ "$r" -gt "$PEAK" ] && PEAK=$r
    got=$(curl -s http://127.0.0.1:$SINK_PORT/stats)
    [ "$(json "$got" received)" -ge "$ACKED" ] && break
    sleep 0.5
done
d1=$(date +%s.%N)
DRAIN_HWM=$(hwm_mib $HGPID)
kill $HGPID; wait $HGPID 2>/dev/null || true

python3 - "$N" "$ACKED" "$FILL_RSS" "$FILL_HWM" "$DB_MIB $WAL_MIB" "$READY_MS" "$PEAK" "$DRAIN_HWM" "$got" "$t0" "$t1" "$d0" "$d1" <<'PY'
import json, sys
n, acked, fill_rss, fill_hwm, files, ready, peak, drain_hwm, sink, t0, t1, d0, d1 = sys.argv[1:]
s = json.loads(sink)
print(f"| backlog of {int(acked):,} pending (destination down), then drained | fill {float(acked)/(float(t1)-float(t0)):.0f} ev/s; "
      f"RSS with the backlog {fill_rss} MiB (peak {fill_hwm}); database {files.split()[0]} MiB + WAL {files.split()[1]} MiB | start to ready {ready} ms | "
      f"RSS while draining: peak {peak} MiB sampled, {drain_hwm} MiB high-water | drained in {float(d1)-float(d0):.1f} s "
      f"({float(acked)/(float(d1)-float(d0)):.0f} ev/s) | delivered {s['received']} of {acked}, lost {int(acked)-s['received']}, duplicates {s['duplicates']} |")
PY
