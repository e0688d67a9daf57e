#!/usr/bin/env bash
# Cross-checks saring-bench's own client against h2load (Debian nghttp2-client), an independent and lighter
# HTTP/2 load generator: the same server (the ceiling, then saring with the in-memory store) pinned to CPU 0,
# driven from CPU 1 by h2load and then by saring-bench with the same connections and requests in flight,
# ScoreContact only, closed loop. If saring-bench reached clearly less than h2load on the ceiling, the harness's
# client would be the bottleneck.
#
#   scripts/bench/h2load-crosscheck.sh [requests] [connections] [streams-per-connection]
set -euo pipefail
cd "$(dirname "$0")/../.."
REQUESTS=${1:-300000}
CONNECTIONS=${2:-4}
STREAMS=${3:-16}
IN_FLIGHT=$((CONNECTIONS * STREAMS))
command -v h2load >/dev/null || apt-get install -y nghttp2-client >/dev/null
cargo build --release -q -p saring -p saring-bench
BIN=target/release
SCRATCH=$(mktemp -d)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$SCRATCH"; }
trap cleanup EXIT

TOKEN="crosscheck-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '[[auth.tokens]]\nname = "crosscheck"\nrole = "routing"\nsha256 = "%s"\n' \
  "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)" > "$SCRATCH/saring.toml"
"$BIN/saring-bench" frame --out "$SCRATCH/frame.bin"

taskset -c 0 "$BIN/saring-bench" ceiling-server --listen 127.0.0.1:50161 > /dev/null & PIDS+=($!)
taskset -c 0 "$BIN/saring" serve --config "$SCRATCH/saring.toml" --listen 127.0.0.1:50162 \
  --database-url "sqlite://$SCRATCH/cases.db" > "$SCRATCH/saring.log" 2>&1 & PIDS+=($!)
for port in 50161 50162; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
H=(-H "authorization: Bearer $TOKEN" -H 'content-type: application/grpc' -H 'te: trailers')
echo "one request through nghttp (grpc-status must be 0):"
nghttp -v "${H[@]}" -d "$SCRATCH/frame.bin" http://127.0.0.1:50162/saring.v1.Screening/ScoreContact 2>&1 \
  | grep -aE 'grpc-status|:status' | sed 's/^/  /'

echo "commit $(git rev-parse --short HEAD), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| server | client | requests/s | p50 ms | p99 ms |"
echo "|---|---|---|---|---|"
for target in ceiling:50161 saring:50162; do
  name=${target%%:*}; port=${target##*:}
  rm -f "$SCRATCH/h2load.log"
  # warm-up, then the measured run
  taskset -c 1 h2load -n 20000 -c "$CONNECTIONS" -m "$STREAMS" -t 1 "${H[@]}" -d "$SCRATCH/frame.bin" \
    "http://127.0.0.1:$port/saring.v1.Screening/ScoreContact" > /dev/null
  out=$(taskset -c 1 h2load -n "$REQUESTS" -c "$CONNECTIONS" -m "$STREAMS" -t 1 "${H[@]}" -d "$SCRATCH/frame.bin" \
    --log-file "$SCRATCH/h2load.log" "http://127.0.0.1:$port/saring.v1.Screening/ScoreContact")
  rate=$(grep -oE 'finished in [0-9.]+[a-z]+, [0-9.]+ req/s' <<<"$out" | grep -oE '[0-9.]+ req/s' | cut -d' ' -f1)
  ok=$(grep -oE '[0-9]+ succeeded' <<<"$out" | head -1)
  pct=$(awk '{print $3}' "$SCRATCH/h2load.log" | sort -n | awk '{a[NR]=$1} END {printf "%.3f | %.3f", a[int(NR*0.5)]/1000, a[int(NR*0.99)]/1000}')
  echo "| $name | h2load ($ok) | ${rate%.*} | $pct |"
  json=$(SARING_BENCH_TOKEN=$TOKEN taskset -c 1 "$BIN/saring-bench" run --addr "127.0.0.1:$port" \
    --connections "$CONNECTIONS" --concurrency "$IN_FLIGHT" --requests "$REQUESTS" --warmup 2 --json)
  python3 -c 'import json,sys; r=json.loads(sys.argv[1])["runs"][0]; l=r["score"]["latency"]; print("| %s | saring-bench (%d ok, %d errors) | %.0f | %.3f | %.3f |" % (sys.argv[2], l["count"], r["score"]["errors"], r["throughput"], l["p50_ms"], l["p99_ms"]))' "$json" "$name"
done
