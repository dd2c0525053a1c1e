#!/usr/bin/env bash
# Stops and starts PostgreSQL while two hookgate nodes take traffic, and checks that ingest answers
# 503 while it is down, that every acknowledged event is delivered, and that the nodes recover by
# themselves (tests/it/pg_restart.rs). It restarts the server for everyone: never run it while
# other tests use the same server.
#
#   scripts/pg-restart-test.sh
#
# HOOKGATE_TEST_DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/test. The stop/start
# commands default to the Debian cluster tools; set HOOKGATE_PG_STOP / HOOKGATE_PG_START to other
# shell commands (e.g. "docker stop pg" / "docker start pg") for another setup.
set -euo pipefail
cd "$(dirname "$0")/.."

export HOOKGATE_TEST_DATABASE_URL="${HOOKGATE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
if [[ -z "${HOOKGATE_PG_STOP:-}" || -z "${HOOKGATE_PG_START:-}" ]]; then
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    export HOOKGATE_PG_STOP="pg_ctlcluster --skip-systemctl-redirect $version main stop -m fast"
    export HOOKGATE_PG_START="pg_ctlcluster --skip-systemctl-redirect $version main start"
fi
export HOOKGATE_PG_RESTART_TEST=1

# Whatever happens, leave the server running.
trap 'sh -c "$HOOKGATE_PG_START" >/dev/null 2>&1 || true' EXIT

cargo test --test it pg_restart -- --nocapture --test-threads=1
