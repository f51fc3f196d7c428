#!/usr/bin/env bash
# The counting proxy against nginx proxy_pass (Debian's nginx, keep-alive upstream), in
# front of the same instant upstream (an nginx `return 200` server), in one run,
# alternating rounds; then memory with 1,000 client connections, a 20 MB upload, and
# the 45009 -> clear -> retried answer round trip (against `wxquotad sim`).
#
#   bench/proxy.sh [SECONDS_PER_RUN] [ROUNDS] [TRIALS]     defaults: 6 s, 3 rounds, 20 trials
#   env: WRK_THREADS (1), WRK_CONNS (32)
source "$(dirname "$0")/lib.sh"
SECS="${1:-6}"
ROUNDS="${2:-3}"
TRIALS="${3:-20}"
ensure_wrk
if ! command -v nginx >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nginx-light >/dev/null 2>&1 || apt-get install -y -qq nginx >/dev/null
fi
# 1,000 client connections plus upstream ones need more than the usual 1,024 files:
# raise the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)"
build
machine
APPID=wx00000000000b3c40
SECRET=bench-secret-0123456789abcdef

UP=$(free_port); NGX=$(free_port); D=$(free_port); P=$(free_port)
cat >"$WORK/nginx.conf" <<NGINX
worker_processes auto;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx-body;
    proxy_temp_path $WORK/nginx-proxy;
    upstream wechat { server 127.0.0.1:$UP; keepalive 64; }
    # The instant upstream both proxies forward to.
    server {
        listen 127.0.0.1:$UP;
        keepalive_requests 1000000;
        client_max_body_size 64m;
        location / { default_type application/json; return 200 '{"errcode":0,"errmsg":"ok"}'; }
    }
    # nginx as a reverse proxy: keep-alive upstream, bodies streamed.
    server {
        listen 127.0.0.1:$NGX;
        keepalive_requests 1000000;
        client_max_body_size 64m;
        location / {
            proxy_pass http://wechat;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
        }
    }
}
NGINX
nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" 2>>"$WORK/nginx-error.log" &
PIDS+=($!)

mkdir -p "$WORK/d"
printf '%s\n' "$SECRET" >"$WORK/d/bench.secret"; chmod 600 "$WORK/d/bench.secret"
daemon_config() { # DIR BASE_URL POLICY
    mkdir -p "$1"
    cat >"$1/config.toml" <<TOML
[daemon]
listen = "127.0.0.1:$D"
state_dir = "$1/state"
log_format = "json"
[wechat]
base_url = "$2"
timeout = "5s"
[policy]
$3
[poll]
interval = "0s"
[proxy]
listen = "127.0.0.1:$P"
[[accounts]]
name = "bench"
appid = "$APPID"
preset = "normal"
secret_file = "$WORK/d/bench.secret"
TOML
}
start_daemon() { # DIR -> sets DAEMON
    "$REL/wxquotad" -c "$1/config.toml" run 2>"$1/daemon.log" &
    DAEMON=$!; PIDS+=($DAEMON)
    wait_listening "$1/daemon.log"
}
stop_daemon() { kill "$DAEMON"; wait "$DAEMON" 2>/dev/null || true; }

daemon_config "$WORK/d1" "http://127.0.0.1:$UP" ""
start_daemon "$WORK/d1"
until curl -fs "http://127.0.0.1:$NGX/" >/dev/null; do sleep 0.05; done

# The call: a counted interface with no daily limit, attributed by its appid.
CALL="/cgi-bin/bench/item?access_token=bench-token&appid=$APPID"
cat >"$WORK/latency.lua" <<'LUA'
done = function(summary, latency, requests)
    io.write(string.format("RESULT rps=%.0f p50_ms=%.3f p99_ms=%.3f errors=%d\n",
        summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
        latency:percentile(99) / 1000,
        summary.errors.connect + summary.errors.read + summary.errors.write +
        summary.errors.status + summary.errors.timeout))
end
LUA
run() { # URL CONNS
    wrk -t "${WRK_THREADS:-1}" -c "$2" -d "${SECS}s" -s "$WORK/latency.lua" "$1" | grep '^RESULT'
}
field() { sed "s/.*$1=\([0-9.]*\).*/\1/" <<<"$2"; }

C="${WRK_CONNS:-32}"
echo "wrk: -t ${WRK_THREADS:-1} -c $C -d ${SECS}s, GET $CALL"
for r in $(seq 1 "$ROUNDS"); do
    u=$(run "http://127.0.0.1:$UP$CALL" "$C")
    n=$(run "http://127.0.0.1:$NGX$CALL" "$C")
    w=$(run "http://127.0.0.1:$P$CALL" "$C")
    echo "round $r upstream direct: $u"
    echo "round $r nginx:           $n"
    echo "round $r wxquotad proxy:  $w"
    awk -v nr="$(field rps "$n")" -v wr="$(field rps "$w")" -v u99="$(field p99_ms "$u")" \
        -v n99="$(field p99_ms "$n")" -v w99="$(field p99_ms "$w")" -v u50="$(field p50_ms "$u")" \
        -v n50="$(field p50_ms "$n")" -v w50="$(field p50_ms "$w")" -v r="$r" 'BEGIN {
        printf "round %s: throughput wxquotad/nginx = %.2f; added over direct: p50 nginx %.3f ms, wxquotad %.3f ms; p99 nginx %.3f ms, wxquotad %.3f ms\n",
            r, wr / nr, n50 - u50, w50 - u50, n99 - u99, w99 - u99 }'
done
counted=$(curl -fs "http://127.0.0.1:$D/metrics" | awk '/^wxquotad_proxied_calls_total\{account="bench",outcome="0"\}/ { print $2 }')
echo "calls counted for the account by the proxy: $counted"

echo "nginx at 1000 connections: $(run "http://127.0.0.1:$NGX$CALL" 1000)"
echo "RSS idle: $(mib "$(kib VmRSS "$DAEMON")") MiB"
c1k=$(run "http://127.0.0.1:$P$CALL" 1000)
echo "1000 connections: $c1k"
echo "RSS after 1000 connections: $(mib "$(kib VmRSS "$DAEMON")") MiB (peak $(mib "$(kib VmHWM "$DAEMON")") MiB)"
c1k=$(run "http://127.0.0.1:$P$CALL" 1000)
echo "1000 connections again: $c1k"
echo "RSS after the second 1000-connection run: $(mib "$(kib VmRSS "$DAEMON")") MiB (peak $(mib "$(kib VmHWM "$DAEMON")") MiB)"
stop_daemon

# A 20 MB upload through a fresh daemon: its peak RSS before and after.
head -c $((20 * 1024 * 1024)) /dev/urandom >"$WORK/upload.bin"
rm -rf "$WORK/d1/state"; start_daemon "$WORK/d1"
curl -fs -o /dev/null "http://127.0.0.1:$P$CALL"
before=$(kib VmHWM "$DAEMON")
up=$(curl -fs -o /dev/null -w '%{http_code} %{size_upload} %{time_total}' \
    -H 'content-type: application/octet-stream' --data-binary @"$WORK/upload.bin" \
    "http://127.0.0.1:$P/cgi-bin/media/upload?access_token=bench-token&type=image&appid=$APPID")
after=$(kib VmHWM "$DAEMON")
echo "20 MB upload: status, bytes, seconds = $up; peak RSS $(mib "$before") -> $(mib "$after") MiB (+$(mib $((after - before))) MiB)"
stop_daemon

# 45009 -> clear -> retried answer, against the simulator (a fresh state per 10 trials:
# the monthly budget is 10 clears).
SIMP=$(free_port)
"$REL/wxquotad" sim --listen "127.0.0.1:$SIMP" >"$WORK/sim.log" 2>&1 &
PIDS+=($!)
wait_listening "$WORK/sim.log"
curl -fs -XPOST "http://127.0.0.1:$SIMP/sim/accounts" \
    -d "{\"appid\":\"$APPID\",\"secret\":\"$SECRET\"}" -H 'content-type: application/json' >/dev/null
EAGER='reserve = 0
min_interval = "0s"
max_clears_per_day = 100
quiet_before_reset = "0s"
confirm_45009 = false
api_clears = false'
: >"$WORK/rtt.txt"
t=0
while [ "$t" -lt "$TRIALS" ]; do
    dir="$WORK/r$t"; daemon_config "$dir" "http://127.0.0.1:$SIMP" "$EAGER"; start_daemon "$dir"
    curl -fs -XPOST "http://127.0.0.1:$SIMP/sim/clears" -H 'content-type: application/json' \
        -d "{\"appid\":\"$APPID\",\"charged\":0}" >/dev/null
    for i in $(seq 1 8); do
        [ "$t" -lt "$TRIALS" ] || break
        curl -fs -XPOST "http://127.0.0.1:$SIMP/sim/usage" -H 'content-type: application/json' \
            -d "{\"appid\":\"$APPID\",\"api\":\"/cgi-bin/user/get\",\"used\":500}" >/dev/null
        out=$(curl -fs -w ' %{time_total}' "http://127.0.0.1:$P/a/bench/cgi-bin/user/get")
        grep -q '"errcode":0' <<<"$out" || { echo "trial $t: not retried: $out" >&2; exit 1; }
        awk '{ print $NF * 1000 }' <<<"$out" >>"$WORK/rtt.txt"
        t=$((t + 1))
    done
    stop_daemon
done
sort -n "$WORK/rtt.txt" | awk '{ v[NR] = $1 } END {
    i50 = int((NR + 1) * 0.50); i99 = int(NR * 0.99 + 0.999); if (i99 > NR) i99 = NR
    printf "45009 -> clear -> retried answer over %d trials: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
        NR, v[i50], v[i99], v[NR] }'
