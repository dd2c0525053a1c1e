#!/usr/bin/env bash
# The whole test suite, on a fresh machine, in one command: installs what the tests need (the
# providers' Python libraries, schemathesis, Chromium), starts PostgreSQL if it is down, points
# the tests at it, and runs `cargo test`. Arguments go to `cargo test` (e.g. `scripts/test.sh delivery::`).
# CI (.ci/run) runs exactly this. PostgreSQL is required: the store conformance and scale-out tests
# run against it and must never skip silently; so are NATS, RabbitMQ, Redis and Mosquitto (the
# broker destinations' tests).
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

# The brokers the broker destinations are tested on (tests/it/brokers.rs): the machine runs them on
# loopback. Each must answer, or the run stops here: broker tests never skip.
export HOOKGATE_TEST_NATS_URL="${HOOKGATE_TEST_NATS_URL:-nats://127.0.0.1:4222}"
export HOOKGATE_TEST_RABBITMQ_URL="${HOOKGATE_TEST_RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export HOOKGATE_TEST_REDIS_URL="${HOOKGATE_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export HOOKGATE_TEST_MQTT_URL="${HOOKGATE_TEST_MQTT_URL:-mqtt://127.0.0.1:1883}"
for var in HOOKGATE_TEST_NATS_URL HOOKGATE_TEST_RABBITMQ_URL HOOKGATE_TEST_REDIS_URL HOOKGATE_TEST_MQTT_URL; do
    hostport=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(p.hostname, p.port)' "${!var}")
    read -r host port <<<"$hostport"
    if ! timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; then
        echo "FATAL: $var: nothing answers on $host:$port; the broker tests cannot run." >&2
        exit 1
    fi
done

bash scripts/install-test-deps.sh

cargo --version
exec cargo test --locked "$@"
