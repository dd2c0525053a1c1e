#!/usr/bin/env bash
# kill -9 chaos on the release build: many cycles of { continuous signed load (8 clients that
# resend what got no answer), deliveries in flight to a receiver that is sometimes slow → kill -9
# hookgate at a random moment → restart }. At the end every acknowledged event must have been
# delivered; prints one table row per run (docs/RELIABILITY.md). Three runs: the receiver within
# its timeout (every duplicate is then the kill's doing), sometimes past it, and SIGTERM in every
# other cycle instead of kill -9.
#
# The code is tests/it/chaos.rs, the default test's 3 cycles scaled up. Loopback only; bounded:
# each cycle lasts at most ~2 s, and the final drain at most HOOKGATE_CHAOS_DRAIN_SECONDS.
#
# usage: scripts/chaos-kill.sh [CYCLES=40] [CLIENTS=8]
set -euo pipefail
cd "$(dirname "$0")/.."
CYCLES=${1:-40}
CLIENTS=${2:-8}
REPORT=$(mktemp)
trap 'rm -f "$REPORT"' EXIT

cargo test --release --test it --no-run --quiet 2>/dev/null || cargo test --release --test it --no-run
run() { # $1 = 1 if the receiver is sometimes slower than the destination's timeout; $2 = kill | mixed
    HOOKGATE_CHAOS_CYCLES=$CYCLES HOOKGATE_CHAOS_CLIENTS=$CLIENTS HOOKGATE_CHAOS_TIMEOUTS=$1 HOOKGATE_CHAOS_SIGNAL=$2 \
    HOOKGATE_CHAOS_DRAIN_SECONDS=120 HOOKGATE_CHAOS_REPORT=$REPORT \
        cargo test --release --quiet --test it -- chaos::kill_9_at_random_moments_loses_no_acknowledged_event \
        --exact --nocapture >&2
}
run 0 kill
run 1 kill
run 1 mixed
echo "| fault | cycles | requests sent | acknowledged | delivered (of acknowledged) | lost | duplicate deliveries | time |"
echo "|---|---|---|---|---|---|---|---|"
cat "$REPORT"
