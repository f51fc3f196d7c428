# Shared by the bench scripts: sourced, not run.
# Installs wrk if missing, builds the release daemon and the bench examples, and offers
# helpers to start a process, wait for its "listening" line and read its memory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REL="$ROOT/target/release"
WORK="$(mktemp -d -t wxquotad-bench.XXXXXX)"
PIDS=()

cleanup() {
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ensure_wrk() {
    if ! command -v wrk >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq wrk >/dev/null
    fi
}

build() {
    cargo build --release --quiet --bin wxquotad --examples
}

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_listening LOGFILE [TIMEOUT_S]: until LOGFILE has the "listening" event.
wait_listening() {
    local log="$1" limit="${2:-30}" start
    start=$(date +%s)
    until grep -q '"listening"\|listening on' "$log" 2>/dev/null; do
        if (( $(date +%s) - start > limit )); then
            echo "no 'listening' line in $log:" >&2
            tail -20 "$log" >&2
            return 1
        fi
        sleep 0.002
    done
}

# kib FIELD PID: a /proc/PID/status field (VmRSS, VmHWM) in KiB.
kib() {
    awk -v f="$1:" '$1 == f { print $2 }' "/proc/$2/status"
}

mib() {
    awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'
}

# run_wrk URL BODY_KIND ACCOUNTS_FILE SECONDS: prints wrk's RESULT line
# (rps, p50 and p99 in ms, non-2xx count). BODY_KIND: "single" or "batch100".
run_wrk() {
    local url="$1" kind="$2" accounts="$3" secs="$4"
    BODY_KIND="$kind" ACCOUNTS="$accounts" \
        wrk -t "${WRK_THREADS:-1}" -c "${WRK_CONNS:-16}" -d "${secs}s" \
        -s "$ROOT/bench/report.lua" "$url" | grep '^RESULT'
}

machine() {
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
        "$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)," \
        "load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -sr)"
}
