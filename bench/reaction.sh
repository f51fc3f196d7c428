#!/usr/bin/env bash
# Reaction time: a 45009 report's arrival to the clear_quota request reaching the
# simulator, over TRIALS trials (examples/bench_reaction.rs runs the simulator in-process
# and the release daemon as a child).
#
#   bench/reaction.sh [TRIALS]      default 300
source "$(dirname "$0")/lib.sh"
build
machine
"$REL/examples/bench_reaction" "${1:-300}" "$REL/wxquotad"
