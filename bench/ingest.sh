#!/usr/bin/env bash
# Report ingestion: wrk against `wxquotad run` and against the baseline (a bare axum
# handler running the same parser, examples/bench_baseline.rs), in the same invocation,
# alternating, single items and batches of 100.
#
#   bench/ingest.sh [SECONDS_PER_RUN] [ROUNDS]      defaults: 6 s, 2 rounds
#   env: WRK_THREADS (1), WRK_CONNS (16), ACCOUNTS_N (10)
source "$(dirname "$0")/lib.sh"
SECS="${1:-6}"
ROUNDS="${2:-2}"
ensure_wrk
build
machine

# The daemon: N accounts, polling off, against a simulator (no clear is ever due here).
SIM_PORT=$(free_port); D_PORT=$(free_port); B_PORT=$(free_port)
"$REL/examples/bench_config" "${ACCOUNTS_N:-10}" "$WORK/d" "http://127.0.0.1:$SIM_PORT" "127.0.0.1:$D_PORT" >/dev/null
"$REL/wxquotad" -c "$WORK/d/config.toml" sim --listen "127.0.0.1:$SIM_PORT" >"$WORK/sim.log" 2>&1 &
PIDS+=($!)
"$REL/wxquotad" -c "$WORK/d/config.toml" run 2>"$WORK/daemon.log" &
DAEMON=$!; PIDS+=($DAEMON)
"$REL/examples/bench_baseline" "127.0.0.1:$B_PORT" 2>"$WORK/baseline.log" &
BASE=$!; PIDS+=($BASE)
wait_listening "$WORK/daemon.log"; wait_listening "$WORK/baseline.log"; wait_listening "$WORK/sim.log"

echo "wrk: -t ${WRK_THREADS:-1} -c ${WRK_CONNS:-16} -d ${SECS}s, ${ACCOUNTS_N:-10} accounts"
for kind in single batch100; do
    for r in $(seq 1 "$ROUNDS"); do
        b=$(run_wrk "http://127.0.0.1:$B_PORT" "$kind" "$WORK/d/accounts.txt" "$SECS")
        d=$(run_wrk "http://127.0.0.1:$D_PORT" "$kind" "$WORK/d/accounts.txt" "$SECS")
        echo "$kind round $r baseline: $b"
        echo "$kind round $r daemon:   $d"
        rb=$(sed 's/.*rps=\([0-9]*\).*/\1/' <<<"$b"); rd=$(sed 's/.*rps=\([0-9]*\).*/\1/' <<<"$d")
        per=1; [ "$kind" = batch100 ] && per=100
        awk -v rb="$rb" -v rd="$rd" -v per="$per" -v k="$kind" -v r="$r" 'BEGIN {
            printf "%s round %s: ratio daemon/baseline = %.2f; items/s daemon %.0f, baseline %.0f\n",
                k, r, rd / rb, rd * per, rb * per }'
    done
done
echo "daemon RSS after load: $(mib "$(kib VmRSS "$DAEMON")") MiB (peak $(mib "$(kib VmHWM "$DAEMON")") MiB)"
echo "daemon non-JSON/warn lines: $(grep -c '"level":"WARN"\|"level":"ERROR"' "$WORK/daemon.log" || true)"
