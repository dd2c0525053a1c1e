# Shared by bench/run.sh, scripts/backlog-memory.sh and scripts/bench-ingest-postgres.sh.
# Sourced, not run.

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json() { python3 -c "import sys,json; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
hwm_mib() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
# Waits up to 30 s for hookgate's admin listener at $1 to answer /readyz.
wait_ready() { for _ in $(seq 1 3000); do curl -sf "http://$1/readyz" >/dev/null && return 0; sleep 0.01; done; return 1; }

# Writes the benchmark's hookgate config: one source of signed (HMAC-SHA256, X-Signature) JSON,
# delivered to one HTTP destination. Deduplicated by the default key (the SHA-256 of the body: keys in
# no order, as real traffic's are), or on /id with BENCH_DEDUPE=pointer.
# With BENCH_ROUTES=plain the source delivers to three destinations; with BENCH_ROUTES=filters to the
# same three, each with a jq filter (CONTRACT §7) and one with a transform (docs/PERFORMANCE.md);
# BENCH_ROUTES=ordered and =limited: see below.
# usage: bench_config FILE STORAGE_URL INGEST_PORT ADMIN_PORT DESTINATION_URL [DELIVERY_SECTION]
bench_config() {
    local deliver='["sink"]' more="" dedupe=""
    [ "${BENCH_DEDUPE:-}" = pointer ] && dedupe='dedupe = { json_pointer = "/id" }'
    if [ -n "${BENCH_ROUTES:-}" ]; then
        deliver='["sink", "audit", "chat"]'
        more=$(printf '[[destinations]]\nname = "%s"\ntype = "http"\nurl = "%s"\ntimeout = "10s"\n' audit "$5" chat "$5")
    fi
    # ordered: the one destination with an ordering key (the bodies' "customer", loadgen --keys N).
    # limited: the one destination beside a second one, "crm", limited to 10 attempts/s (CONTRACT §8).
    case "${BENCH_ROUTES:-}" in
        ordered) deliver='["sink"]'; more='ordering_key = ".body.customer"' ;;
        limited) deliver='["sink", "crm"]'
                 more=$(printf '[[destinations]]\nname = "crm"\ntype = "http"\nurl = "%s"\ntimeout = "10s"\nrate_limit = { per_second = 10, burst = 10 }\n' "$5") ;;
    esac
    if [ "${BENCH_ROUTES:-}" = filters ]; then
        deliver=$(cat <<'JQ'
[
  { destination = "sink", filter = '.body.type == "bench.event"' },
  { destination = "audit", filter = '.headers["content-type"] | startswith("application/json")' },
  { destination = "chat", filter = '.body.id | startswith("evt_0")', transform = '{text: "event \(.body.id)"}' },
]
JQ
)
    fi
    cat > "$1" <<TOML
[server]
listen = "127.0.0.1:$3"
[storage]
url = "$2"
[admin]
listen = "127.0.0.1:$4"
${6:-}
[[sources]]
name = "bench"
path = "/hook"
verify = { scheme = "hmac-sha256", header = "X-Signature", secret_env = "BENCH_SECRET" }
$dedupe
deliver_to = $deliver
[[destinations]]
name = "sink"
type = "http"
url = "$5"
timeout = "10s"
$more
TOML
}
