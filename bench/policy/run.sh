#!/usr/bin/env bash
# The policy scenarios of docs/POLICY.md: generates them (bench/policy/scenarios.py,
# fixed seed), replays each with `wxquotad replay --json` (the daemon's own engine and
# policy at their defaults), and prints the table: rejected calls with no clears, the
# naive rule, our policy and the oracle, and efficiency = (none − x) / (none − oracle).
#
#   bench/policy/run.sh [SOURCE] [SEED]      SOURCE: reports (default) | proxy | poll
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
SOURCE="${1:-reports}"
SEED="${2:-12}"
WORK="$(mktemp -d -t wxquotad-policy.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

cargo build --release --quiet --bin wxquotad
python3 bench/policy/scenarios.py "$WORK" --seed "$SEED"

for dir in "$WORK"/*/; do
    name="$(basename "$dir")"
    start=$(date +%s.%N)
    ./target/release/wxquotad -c "$dir/config.toml" replay --traffic "$dir/traffic.jsonl" \
        --source "$SOURCE" --json >"$WORK/$name.json"
    end=$(date +%s.%N)
    echo "$name $(python3 -c "print(f'{$end - $start:.1f}')")" >>"$WORK/times"
done

python3 - "$WORK" "$SOURCE" "$SEED" <<'PY'
import json, os, sys
work, source, seed = sys.argv[1], sys.argv[2], sys.argv[3]
times = dict(l.split() for l in open(os.path.join(work, "times")))
def eff(none, x, oracle):
    return "n/a" if none <= oracle else f"{(none - x) / (none - oracle):.2f}"
print(f"source `{source}`, seed {seed}\n")
print("| scenario | lines | none | naive | policy | oracle | naive eff. | policy eff. | policy clears (account+api) | oracle clears | replay s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name in sorted(times):
    doc = json.load(open(os.path.join(work, name + ".json")))
    lines = sum(1 for _ in open(os.path.join(work, name, "traffic.jsonl")))
    t = {k: 0 for k in ("none", "naive", "policy", "oracle", "acct", "api", "oc")}
    exact = True
    for a in doc["accounts"]:
        t["none"] += a["none"]["rejected"]
        t["naive"] += a["naive"]["rejected"]
        t["policy"] += a["rejected"]
        t["oracle"] += a["oracle"]["rejected"]
        t["acct"] += sum(1 for c in a["clears"] if c["kind"] == "account")
        t["api"] += sum(1 for c in a["clears"] if c["kind"] == "api")
        t["oc"] += len(a["oracle"]["clears"])
        exact = exact and a["oracle"]["exact"]
    star = "" if exact else "*"
    print(f"| {name} | {lines} | {t['none']} | {t['naive']} | {t['policy']} | {t['oracle']}{star} "
          f"| {eff(t['none'], t['naive'], t['oracle'])} | {eff(t['none'], t['policy'], t['oracle'])} "
          f"| {t['acct']}+{t['api']} | {t['oc']} | {times[name]} |")
print("\n`*`: several limited interfaces: the oracle is the best schedule found, an upper bound.")
PY
