#!/bin/sh
# An exec destination: the event body arrives on stdin, facts in HOOKGATE_* variables.
# Exit 0 = delivered; anything else is retried with backoff, then dead-lettered.
set -eu
dir="$(dirname "$0")/../data"
mkdir -p "$dir"
bytes=$(wc -c)
echo "$(date -u +%FT%TZ) $1 event=$HOOKGATE_EVENT_ID attempt=$HOOKGATE_ATTEMPT bytes=$bytes" >> "$dir/handled.log"
