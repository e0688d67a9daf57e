#!/usr/bin/env bash
# Every load scenario of BENCHMARKS.md, one after another, each one saring-bench command (printed with its
# results). Server (and ceiling) pinned to CPU 0, load generator to CPU 1. Output: docs/bench/<scenario>.txt.
#   scripts/bench/scenarios.sh [scenario ...]   # memory redis memory-70 redis-70 outcome burst (default: all)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p saring -p saring-bench
mkdir -p docs/bench
PIN=(--server-cpus 0 --client-cpus 1 --connections 4 --concurrency 64)
REDIS=${REDIS_URL:-redis://127.0.0.1:6379/0}
run() { local name=$1; shift; echo "== $name"; target/release/saring-bench run "$@" 2>&1 | tee "docs/bench/$name.txt"; }
for scenario in "${@:-memory redis memory-70 redis-70 outcome burst}"; do
  for s in $scenario; do
    case $s in
      memory)    run memory --start memory --preload --ceiling --repeat 3 --duration 15 "${PIN[@]}" ;;
      redis)     run redis --start "$REDIS" --preload --ceiling --repeat 3 --duration 15 "${PIN[@]}" ;;
      memory-70) run memory-70 --start memory --preload --ceiling --rate-of-capacity 0.7 --duration 30 "${PIN[@]}" ;;
      redis-70)  run redis-70 --start "$REDIS" --preload --ceiling --rate-of-capacity 0.7 --duration 30 "${PIN[@]}" ;;
      outcome)   run outcome --start memory --preload --ceiling --with-outcome --repeat 2 --duration 15 "${PIN[@]}" ;;
      burst)     run burst --start memory --preload --rate-of-capacity 0.1 --burst-multiplier 10 --burst-at 20 \
                   --burst-for 10 --duration 60 --warmup 5 --window 1 --timeline-csv docs/bench/burst-timeline.csv \
                   "${PIN[@]}" ;;
      *) echo "unknown scenario $s" >&2; exit 64 ;;
    esac
  done
done
