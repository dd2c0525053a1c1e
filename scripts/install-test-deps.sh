#!/usr/bin/env bash
# Installs what the integration tests need beyond cargo:
# - the providers' official Python libraries (tests/it/providers.rs signs requests with them) and
#   schemathesis (tests/it/openapi.rs checks the admin API against docs/openapi.json with it), and
#   the brokers' official clients (nats-py, pika, redis-py, paho-mqtt: tests/it/brokers.py), in a
#   virtualenv at target/test-venv (or $HOOKGATE_TEST_VENV), which the tests use;
# - Chromium, which tests/it/ui.rs drives headless to check the admin web UI (Debian's package).
# Safe to run again.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends chromium >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${HOOKGATE_TEST_VENV:-$root/target/test-venv}"
if [ ! -x "$venv/bin/python3" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python3" -m pip install --quiet --disable-pip-version-check -r "$root/scripts/test-requirements.txt"
"$venv/bin/python3" -c 'import standardwebhooks, stripe, slack_sdk, twilio, schemathesis, svix, hubspot, square, sendgrid, paddle_billing, discord_interactions, nats, pika, redis, paho.mqtt'
echo "test dependencies installed in $venv; $(chromium --version)"
