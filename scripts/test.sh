#!/usr/bin/env bash
# The whole test suite, on a fresh machine, in one command: installs what the tests need (the
# providers' Python libraries, schemathesis, Chromium), starts PostgreSQL if it is down, points
# the tests at it, and runs `cargo test`. Arguments go to `cargo test` (e.g. `scripts/test.sh delivery::`).
# CI (.ci/run) runs exactly this. PostgreSQL is required: the store conformance and scale-out tests
# run against it and must never skip silently.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    echo "FATAL: PostgreSQL is not reachable on 127.0.0.1:5432; the PostgreSQL tests cannot run." >&2
    exit 1
fi
export HOOKGATE_TEST_DATABASE_URL="${HOOKGATE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"

bash scripts/install-test-deps.sh

cargo --version
exec cargo test --locked "$@"
