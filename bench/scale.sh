#!/usr/bin/env bash
# Scale: start-up time (spawn to the "listening" log line, fresh state file and again with
# the existing one) and memory (VmRSS, peak VmHWM) idle and under report load, with 10,
# 1,000 and 10,000 generated accounts; report throughput at each size (cost per report
# against the number of accounts).
#
#   bench/scale.sh [LOAD_SECONDS] [SIZES...]     defaults: 6 s; 10 1000 10000
source "$(dirname "$0")/lib.sh"
SECS="${1:-6}"; shift || true
SIZES=("${@:-10 1000 10000}"); read -r -a SIZES <<<"${SIZES[*]}"
ensure_wrk
build
machine

ms_since() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e6 }'; }

start_daemon() { # DIR -> sets DAEMON, STARTUP_MS
    local t0; t0=$(date +%s%N)
    "$REL/wxquotad" -c "$1/config.toml" run 2>"$1/daemon.log" &
    DAEMON=$!; PIDS+=($DAEMON)
    wait_listening "$1/daemon.log" 60
    STARTUP_MS=$(ms_since "$t0")
}

stop_daemon() { kill -TERM "$DAEMON"; wait "$DAEMON" || true; }

printf '%-8s %-11s %-11s %-10s %-10s %-10s %-10s %-9s %-9s\n' accounts start_fresh start_again idle_rss idle_peak load_rss load_peak rps p99_ms
for n in "${SIZES[@]}"; do
    port=$(free_port)
    # Nothing listens on port 9 (discard): no report here makes a clear due, and polling is off.
    "$REL/examples/bench_config" "$n" "$WORK/s$n" "http://127.0.0.1:9" "127.0.0.1:$port" >/dev/null
    start_daemon "$WORK/s$n"; fresh=$STARTUP_MS
    stop_daemon
    start_daemon "$WORK/s$n"; again=$STARTUP_MS
    sleep 1
    idle=$(kib VmRSS "$DAEMON"); idle_peak=$(kib VmHWM "$DAEMON")
    res=$(run_wrk "http://127.0.0.1:$port" single "$WORK/s$n/accounts.txt" "$SECS")
    load=$(kib VmRSS "$DAEMON"); load_peak=$(kib VmHWM "$DAEMON")
    rps=$(sed 's/.*rps=\([0-9]*\).*/\1/' <<<"$res"); p99=$(sed 's/.*p99=\([0-9.]*\).*/\1/' <<<"$res")
    printf '%-8s %-11s %-11s %-10s %-10s %-10s %-10s %-9s %-9s\n' "$n" "${fresh}ms" "${again}ms" \
        "$(mib "$idle")M" "$(mib "$idle_peak")M" "$(mib "$load")M" "$(mib "$load_peak")M" "$rps" "$p99"
    echo "  wrk: $res"
    stop_daemon
done
