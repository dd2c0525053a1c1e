#!/usr/bin/env bash
# Durable ingest over HTTP, SQLite against PostgreSQL: `hookgate serve --role ingest` on each store,
# the bench/ load generator (64 keep-alive connections, signed ~1 KiB JSON, distinct event ids).
#
#   scripts/bench-ingest-postgres.sh [DURATION_SECONDS=10] [ROUNDS=2]
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
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() { # $1 = name, $2 = storage url
    local ingest admin
    ingest=$(port); admin=$(port)
    cat > "$T/hookgate.toml" <<TOML
[server]
listen = "127.0.0.1:$ingest"
[storage]
url = "$2"
[admin]
listen = "127.0.0.1:$admin"
[[sources]]
name = "bench"
path = "/hook"
verify = { scheme = "hmac-sha256", header = "X-Signature", secret_env = "BENCH_SECRET" }
dedupe = { json_pointer = "/id" }
deliver_to = ["sink"]
[[destinations]]
name = "sink"
type = "http"
url = "http://127.0.0.1:9/sink"
TOML
    BENCH_SECRET=bench-secret HOOKGATE_LOG=warn $HG serve --config "$T/hookgate.toml" --role ingest 2>>"$T/hookgate.log" &
    PID=$!
    for _ in $(seq 1 500); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.01; done
    echo "$1: $(bench/target/release/loadgen "http://127.0.0.1:$ingest/hook" --connections 64 --duration "$DUR" \
        --secret bench-secret --start-id "$RANDOM$RANDOM")"
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
