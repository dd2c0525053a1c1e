#!/usr/bin/env bash
# Durable ingest over HTTP, SQLite against PostgreSQL: `hookgate serve --role ingest` on each store,
# the bench/ load generator (64 keep-alive connections, signed ~1 KiB JSON, event ids in no order;
# the default dedupe key, the SHA-256 of the body, so dedupe keys in no order too, as real traffic has).
#
#   scripts/bench-ingest-postgres.sh [DURATION_SECONDS=10] [ROUNDS=2]
#   ORDERED=1 scripts/bench-ingest-postgres.sh   # the ordered run instead: dedupe on /id, ids counting up
#
# PostgreSQL: HOOKGATE_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test), in a
# fresh schema dropped afterwards. Loopback only; both runs bounded by DURATION_SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
ROUNDS=${2:-2}
export PGOPTIONS="--client-min-messages=warning"
DB=${HOOKGATE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
SCHEMA=hookgate_bench_$$
IDS=--random-ids
if [ -n "${ORDERED:-}" ]; then export BENCH_DEDUPE=pointer; IDS="--start-id $RANDOM$RANDOM"; fi

cargo build --release --quiet
(cd bench && cargo build --release --quiet --bin loadgen)
HG=target/release/hookgate
T=$(mktemp -d)
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    psql "$DB" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
    rm -rf "$T"
}
trap cleanup EXIT
source bench/common.sh

run() { # $1 = name, $2 = storage url
    local ingest admin
    ingest=$(port); admin=$(port)
    bench_config "$T/hookgate.toml" "$2" "$ingest" "$admin" "http://127.0.0.1:9/sink"
    BENCH_SECRET=bench-secret HOOKGATE_LOG=warn $HG serve --config "$T/hookgate.toml" --role ingest 2>>"$T/hookgate.log" &
    PID=$!
    wait_ready "127.0.0.1:$admin"
    echo "$1: $(bench/target/release/loadgen "http://127.0.0.1:$ingest/hook" --connections 64 --duration "$DUR" \
        --secret bench-secret $IDS)"
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
}

sep='?'; [[ "$DB" == *\?* ]] && sep='&'
for _ in $(seq 1 "$ROUNDS"); do
    rm -f "$T"/hg.db*
    run sqlite "sqlite://$T/hg.db"
    psql "$DB" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >/dev/null
    run postgres "$DB${sep}options=-csearch_path%3D$SCHEMA"
    echo "  postgres stored: $(psql "$DB" -Atc "SELECT count(*) FROM $SCHEMA.events") events"
done
