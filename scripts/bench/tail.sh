#!/usr/bin/env bash
# The tail at 70% of capacity, several times: each run probes saring's closed-loop capacity, then drives saring and
# the ceiling (right after it) open loop at 70% of it for 30 s, with 1-second windows. Every run's timelines go to
# docs/bench/tail/LABEL-N.csv (saring) and LABEL-N.ceiling.csv (the ceiling), each window with the server's CPU time
# and run-queue wait (time its threads were runnable while something else had the CPU); the runs' summary lines
# to docs/bench/tail/LABEL.txt.
#   scripts/bench/tail.sh LABEL [RUNS] [BENCH]   # BENCH: a saring-bench binary (default target/release/saring-bench,
#                                                # which starts the saring binary beside it)
set -euo pipefail
cd "$(dirname "$0")/../.."
label=${1:?usage: tail.sh LABEL [RUNS] [BENCH]}
runs=${2:-5}
bench=${3:-target/release/saring-bench}
mkdir -p docs/bench/tail
out=docs/bench/tail/$label.txt
: > "$out"
for i in $(seq 1 "$runs"); do
  echo "== run $i ($(date -u +%H:%M:%S) UTC, load average $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$out"
  "$bench" run --start memory --preload --ceiling --rate-of-capacity 0.7 --duration 30 --window 1 \
    --timeline-csv "docs/bench/tail/$label-$i.csv" --server-cpus 0 --client-cpus 1 --connections 4 \
    --concurrency 64 2>&1 | grep -v '^preloaded' | tee -a "$out"
done
