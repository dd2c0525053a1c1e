#!/usr/bin/env bash
# Compares two hookgate binaries in alternating rounds, because on a shared machine the speed
# drifts by tens of percent over minutes and only runs close in time compare.
# ingest (the default): each round starts the binary (--role ingest, embedded SQLite on a temp
#   dir, the benchmark's config), warms it, and drives it for DURATION seconds with 64 connections.
# pipeline: each round starts a sink and the binary (--role all), sends DURATION * 6,000 events
#   with 64 connections, and waits until the sink has them all; "req/s" is then events/s end to end.
# Per run it prints req/s, p50/p99 of the load, the server's CPU µs per request (or event), the
# machine's idle share, the KiB the server wrote per request (its write system calls: the WAL and
# the checkpoints' copies), and CPU µs per request by thread; at the end, the medians and the median of
# the B/A ratios of each round.
#
# Event ids are in no order (--random-ids) and the source has the default dedupe key (the SHA-256
# of the body), as real traffic has: dedupe keys in no order. BENCH_DEDUPE=pointer dedupes on /id.
# ORDERED_A=1 / ORDERED_B=1 give that side the ordered run instead (dedupe on /id, ids counting up).
# ROUTES_A / ROUTES_B (plain|filters|ordered|limited) give side A or B the routed source of
# bench/common.sh, so one binary can be compared with itself with and without filters:
# ROUTES_A=plain ROUTES_B=filters. LOADGEN_ARGS are added to the pipeline's load (e.g. --keys 10000,
# which gives every body a "customer" for ROUTES_B=ordered's ordering key).
# OTLP_A / OTLP_B (on) give side A or B `[telemetry] otlp_endpoint`, a second sink taking the spans
# (OTEL_BSP_SCHEDULE_DELAY=1000), so one binary can be compared with traces off and on: OTLP_B=on.
#
# In ingest mode each round also drives bench/'s ceiling (a bare axum server) for DURATION seconds,
# and the summary gives each side's median ratio to the ceiling of its round.
# FILL=N (ingest mode): each side runs on a store of its own, filled with N events (keys in no
#   order, deliveries pending) before its first round and kept, growing, through the rounds.
#
# usage: bench/ab.sh BINARY_A BINARY_B [ROUNDS=6] [DURATION_SECONDS=5] [ingest|pipeline]
# e.g.:  git stash; cargo build --release; cp target/release/hookgate /tmp/a; git stash pop
#        cargo build --release; bench/ab.sh /tmp/a target/release/hookgate
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1; B=$2; ROUNDS=${3:-6}; DUR=${4:-5}; MODE=${5:-ingest}
(cd bench && cargo build --release --quiet)
source bench/common.sh
LOADGEN=bench/target/release/loadgen
SINK=bench/target/release/sink
T=$(mktemp -d)
CEIL=0
trap '[ "$CEIL" != 0 ] && kill "$CEIL"; rm -rf "$T"' EXIT
FILL=${FILL:-0}

ticks() { awk '{print $14+$15}' "$1"; }                       # user + system CPU of /proc/.../stat
busy_idle() { head -1 /proc/stat | awk '{print $2+$3+$4+$7+$8+$9, $5+$6}'; }

# One run of binary $1 (side $3, ordered ids if $4); prints "rps p50 p99 cpu idle written threads".
run() {
    local ids=--random-ids dedupe=""
    if [ -n "$4" ]; then ids=""; dedupe=pointer; fi
    local dir ip ap sp op sink=0 otlp=0 pid out ok c0 c1 s0 s1 w0 w1 t0 t1 threads="" dest="http://127.0.0.1:9/sink" role=ingest fresh=1
    dir=$(mktemp -d "$T/run.XXXX"); ip=$(port); ap=$(port)
    if [ "$FILL" != 0 ]; then dir=$T/store.$3; [ -d "$dir" ] && fresh=0; mkdir -p "$dir"; fi
    local delivery=$'[delivery]\ninitial_backoff = "1h"\nmax_backoff = "1h"'
    if [ "$MODE" = pipeline ]; then
        sp=$(port); $SINK "127.0.0.1:$sp" >/dev/null & sink=$!
        dest="http://127.0.0.1:$sp/sink"; role=all; delivery=""
    fi
    if [ "${5:-}" = on ]; then
        op=$(port); $SINK "127.0.0.1:$op" >/dev/null & otlp=$!
        delivery+=$'\n[telemetry]\notlp_endpoint = "http://127.0.0.1:'"$op"'"'
    fi
    BENCH_ROUTES=$2 BENCH_DEDUPE=${dedupe:-${BENCH_DEDUPE:-}} bench_config "$dir/h.toml" "sqlite://$dir/h.db" "$ip" "$ap" "$dest" "$delivery"
    BENCH_SECRET=bench-secret HOOKGATE_LOG=warn OTEL_BSP_SCHEDULE_DELAY=1000 "$1" serve --config "$dir/h.toml" --role "$role" 2>"$dir/log" &
    pid=$!
    wait_ready "127.0.0.1:$ap"
    if [ "$MODE" != pipeline ] && [ "$fresh" = 1 ]; then
        $LOADGEN "http://127.0.0.1:$ip/hook" --requests $((FILL > 2000 ? FILL : 2000)) --connections 64 --secret bench-secret \
            --start-id $((RANDOM * 100000000)) --random-ids >/dev/null
    fi
    declare -A before
    for t in /proc/$pid/task/*; do before[${t##*/}]=$(ticks "$t/stat"); done
    c0=$(ticks /proc/$pid/stat); s0=$(busy_idle); w0=$(awk '/^wchar/ {print $2}' /proc/$pid/io)
    if [ "$MODE" = pipeline ]; then
        local n=$((DUR * 6000))
        t0=$(date +%s.%N)
        # shellcheck disable=SC2086 # LOADGEN_ARGS is a list of words
        out=$($LOADGEN "http://127.0.0.1:$ip/hook" --requests "$n" --connections 64 --secret bench-secret --random-ids ${LOADGEN_ARGS:-})
        for _ in $(seq 1 6000); do
            [ "$(json "$(curl -s "http://127.0.0.1:$sp/stats")" received)" -ge "$(json "$out" ok)" ] && break
            sleep 0.05
        done
        t1=$(date +%s.%N)
        out=$(python3 -c "import json,sys; r=json.loads(sys.argv[1]); r['rps']=r['ok']/($t1-$t0); print(json.dumps(r))" "$out")
    else
        out=$($LOADGEN "http://127.0.0.1:$ip/hook" --duration "$DUR" --connections 64 --secret bench-secret --start-id $((RANDOM * 100000000 + 4000000000)) $ids)
    fi
    c1=$(ticks /proc/$pid/stat); s1=$(busy_idle); w1=$(awk '/^wchar/ {print $2}' /proc/$pid/io)
    ok=$(json "$out" ok)
    for t in /proc/$pid/task/*; do
        local d=$(( $(ticks "$t/stat") - ${before[${t##*/}]:-0} ))
        [ "$d" -gt 0 ] && threads+=" $(cat "$t/comm")=$(python3 -c "print(round($d * 1e6 / $(getconf CLK_TCK) / $ok, 1))")"
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
    if [ "$sink" != 0 ]; then kill "$sink"; wait "$sink" 2>/dev/null || true; fi
    if [ "$otlp" != 0 ]; then kill "$otlp"; wait "$otlp" 2>/dev/null || true; fi
    python3 - "$out" "$c0" "$c1" "$ok" "$s0" "$s1" "$(getconf CLK_TCK)" "$threads" "$w0" "$w1" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); c0, c1, ok = map(int, sys.argv[2:5]); tck = int(sys.argv[7])
(b0, i0), (b1, i1) = (map(int, s.split()) for s in sys.argv[5:7])
idle = 100 * (i1 - i0) / max(1, (b1 - b0) + (i1 - i0))
written = (int(sys.argv[10]) - int(sys.argv[9])) / 1024 / ok
print(f"{r['rps']:.0f} {r['p50_ms']} {r['p99_ms']} {(c1 - c0) * 1e6 / tck / ok:.1f} {idle:.0f} {written:.2f}{sys.argv[8]}")
PY
}

# The ceiling's req/s for DURATION seconds, and its CPU µs per request.
ceiling() {
    local c0 out
    c0=$(ticks /proc/$CEIL/stat)
    out=$($LOADGEN "http://127.0.0.1:$CP/hook" --duration "$DUR" --connections 64 --secret bench-secret --random-ids)
    python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(f\"{r['rps']:.0f} {($(ticks /proc/$CEIL/stat) - $c0) * 1e6 / $(getconf CLK_TCK) / r['ok']:.1f}\")" "$out"
}
if [ "$MODE" != pipeline ]; then CP=$(port); bench/target/release/ceiling "127.0.0.1:$CP" >/dev/null & CEIL=$!; sleep 0.3; fi

results="$T/results"
for i in $(seq 1 "$ROUNDS"); do
    if [ "$CEIL" != 0 ]; then
        c=$(ceiling); echo "C $c" | tee -a "$results" | awk '{printf "ceiling req/s %s  CPU %s µs/req\n", $2, $3}'
    fi
    for side in A B; do
        bin=$A; routes=${ROUTES_A:-}; ordered=${ORDERED_A:-}; otlp=${OTLP_A:-}
        [ "$side" = B ] && bin=$B && routes=${ROUTES_B:-} && ordered=${ORDERED_B:-} && otlp=${OTLP_B:-}
        line=$(run "$bin" "$routes" "$side" "$ordered" "$otlp")
        echo "$side $line" | tee -a "$results" | awk '{printf "%s req/s %s  p50 %s  p99 %s ms  CPU %s µs/req  idle %s%%  written %s KiB/req |", $1, $2, $3, $4, $5, $6, $7; for (i = 8; i <= NF; i++) printf " %s", $i; print ""}'
    done
done
python3 - "$results" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1])]
a = [r for r in rows if r[0] == "A"]; b = [r for r in rows if r[0] == "B"]; c = [r for r in rows if r[0] == "C"]
print()
if c:
    for name, side in (("A", a), ("B", b)):
        ratios = [float(x[1]) / float(y[1]) for x, y in zip(side, c)]
        print(f"{name} / ceiling: median {st.median(ratios):.3f} (rounds: {', '.join(f'{r:.3f}' for r in ratios)}); "
              f"ceiling median {st.median(float(y[1]) for y in c):.0f} req/s")
for i, name in enumerate(["req/s", "p50 ms", "p99 ms", "CPU µs/req", "idle %", "KiB/req"], start=1):
    va = [float(r[i]) for r in a]; vb = [float(r[i]) for r in b]
    ratios = [y / x for x, y in zip(va, vb) if x]
    ratio = f"{st.median(ratios):.3f}" if ratios else "-"
    print(f"{name:11} A {st.median(va):9.2f}   B {st.median(vb):9.2f}   B/A (median of rounds) {ratio}")
PY
