#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time (default 60 s) with no sanitizer, so it
# works on a stable toolchain. Installs cargo-fuzz if missing.
#
#   fuzz/run.sh [SECONDS] [TARGET...]        default: 60 s, report_body and config
#
# cargo fuzz passes nightly-only flags to rustc even with `-s none`; on stable we let
# rustc accept them with RUSTC_BOOTSTRAP=1 (set only here, for this build).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-60}"; shift || true
TARGETS=("$@"); [ ${#TARGETS[@]} -eq 0 ] && TARGETS=(report_body config)
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi
for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    # Seeds: the shapes the parsers expect, so mutations start close to valid input.
    case "$t" in
        report_body)
            printf '%s' '{"account":"shop","api":"/cgi-bin/user/get","calls":25}' >"fuzz/corpus/$t/single"
            printf '%s' '[{"appid":"wx448f04719cd48f69","api":"cgi-bin/user/info?access_token=x","errcode":45009},{"account":"a","api":"https://h/x","calls":1}]' >"fuzz/corpus/$t/batch"
            ;;
        config) cp config.example.toml "fuzz/corpus/$t/example.toml" ;;
    esac
    echo "== $t (${SECS}s)"
    cargo fuzz run -s none "$t" "fuzz/corpus/$t" -- -max_total_time="$SECS" -print_final_stats=1 2>&1 |
        tee "fuzz/$t.log" | grep -E '^(#[0-9]+.*(DONE|pulse)|stat::number_of_executed_units|stat::peak_rss|==[0-9]+== ERROR|SUMMARY|Done)' || true
    grep -q 'stat::number_of_executed_units' "fuzz/$t.log" || { echo "$t did not finish cleanly; see fuzz/$t.log" >&2; exit 1; }
done
