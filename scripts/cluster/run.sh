#!/usr/bin/env bash
# Redis Cluster end to end (issue 8, item 6): a private Redis Cluster of 3 masters + 3 replicas, a private
# PostgreSQL, two saring replicas over them, and `saring-bench ledger` driving both.
#
#   scripts/cluster/run.sh [OUT_DIR]        # default docs/bench/cluster
#
# Phase 1 (exact):    RATE contacts/s for EXACT_S seconds across both replicas, then every caller's history is
#                     checked against the ledger of acknowledged outcomes (exactly once each).
# Phase 2 (failover): RATE contacts/s for FAILOVER_S seconds; KILL_AT s in, the master of slot 0 gets SIGKILL;
#                     its replica is promoted (cluster-node-timeout NODE_TIMEOUT_MS); traffic keeps running; then
#                     RESTART_AFTER_S (10) s after the promotion the dead node is started again and rejoins as a
#                     replica; then the same check, which now counts what the failover lost.
#
# Environment: RATE (default 300), RESTART_AFTER_S (10), EXACT_S (30), FAILOVER_S (60), KILL_AT (20), NODE_TIMEOUT_MS (2000),
# BASE_PORT (7001: Redis on BASE_PORT..BASE_PORT+5), PG_PORT (55432), SARING_PORT (50161, +1 for the second
# replica; consoles on +10), WAIT_REPLICAS (unset: saring's default; 1: history.redis_wait_replicas = 1),
# KEEP_SCRATCH=1 to keep the scratch directory. Needs the release binaries:
#   cargo build --release -p saring -p saring-bench
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../soak/lib.sh
. "$ROOT/scripts/soak/lib.sh"

OUT=${1:-$ROOT/docs/bench/cluster}
RATE=${RATE:-300}
EXACT_S=${EXACT_S:-30}
FAILOVER_S=${FAILOVER_S:-60}
KILL_AT=${KILL_AT:-20}
RESTART_AFTER_S=${RESTART_AFTER_S:-10}
NODE_TIMEOUT_MS=${NODE_TIMEOUT_MS:-2000}
BASE_PORT=${BASE_PORT:-7001}
SARING_PORT=${SARING_PORT:-50161}
SARING_BIN=${SARING_BIN:-$ROOT/target/release/saring}
BENCH_BIN=${BENCH_BIN:-$ROOT/target/release/saring-bench}
for binary in "$SARING_BIN" "$BENCH_BIN"; do
  [ -x "$binary" ] || { say "missing $binary: cargo build --release -p saring -p saring-bench"; exit 1; }
done
for port in $(seq "$BASE_PORT" $((BASE_PORT + 5))) "${PG_PORT:-55432}" "$SARING_PORT" $((SARING_PORT + 1)); do
  if port_open "$port"; then say "port $port is taken; set BASE_PORT / PG_PORT / SARING_PORT"; exit 1; fi
done

SCRATCH=$(mktemp -d /tmp/saring-cluster.XXXXXX)
chmod 755 "$SCRATCH"
trap cleanup EXIT
mkdir -p "$OUT"
LOG="$OUT/run.log"
: >"$LOG"
note() { say "$*"; printf '%s %s\n' "$(date -u +%H:%M:%S.%3N)" "$*" >>"$LOG"; }

note "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
note "commit $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo '+dirty'), $(redis-server --version | cut -d' ' -f3)"

# --- Redis Cluster: 3 masters, 3 replicas -------------------------------------------------------------------------
NODES=()
for i in 0 1 2 3 4 5; do
  port=$((BASE_PORT + i))
  redis_start "$port" "$SCRATCH/redis-$port" --appendonly no --cluster-enabled yes \
    --cluster-config-file nodes.conf --cluster-node-timeout "$NODE_TIMEOUT_MS" --repl-diskless-sync-delay 0
  NODES+=("127.0.0.1:$port")
done
redis-cli --cluster create "${NODES[@]}" --cluster-replicas 1 --cluster-yes >"$SCRATCH/cluster-create.log" 2>&1
# Ready when the cluster is ok and every node sees the three replicas (they are attached after the slots).
for _ in $(seq 1 150); do
  ready=1
  for node in "${NODES[@]}"; do
    port=${node#*:}
    redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok' || ready=0
    [ "$(redis-cli -p "$port" cluster nodes | grep -c slave)" = 3 ] || ready=0
  done
  synced=0
  for node in "${NODES[@]}"; do
    redis-cli -p "${node#*:}" info replication | grep -q 'master_link_status:up' && synced=$((synced + 1))
  done
  [ "$synced" = 3 ] || ready=0
  [ "$ready" = 1 ] && break
  sleep 0.2
done
redis-cli -p "$BASE_PORT" cluster nodes | sort -k3 >"$OUT/cluster-nodes-before.txt"
note "cluster up: $(grep -c master "$OUT/cluster-nodes-before.txt") masters, $(grep -c slave "$OUT/cluster-nodes-before.txt") replicas, cluster-node-timeout $NODE_TIMEOUT_MS ms"

# --- PostgreSQL and two saring replicas ------------------------------------------------------------------------------
pg_init "${PG_PORT:-55432}"
make_tokens
HISTORY_URL="redis-cluster://$(IFS=,; echo "${NODES[*]}")"
REDIS_PREFIX="cluster$(date +%s)"
extra_history=""
if [ -n "${WAIT_REPLICAS:-}" ]; then
  export SARING__HISTORY__REDIS_WAIT_REPLICAS=$WAIT_REPLICAS
  extra_history=", history.redis_wait_replicas = $WAIT_REPLICAS"
fi
saring_start 1 "$SARING_PORT" $((SARING_PORT + 10))
saring_start 2 $((SARING_PORT + 1)) $((SARING_PORT + 11))
note "saring replicas on :$SARING_PORT and :$((SARING_PORT + 1)), history $HISTORY_URL$extra_history, cases on a private PostgreSQL"

export SARING_BENCH_TOKEN=$ROUTING_TOKEN SARING_BENCH_OPERATOR_TOKEN=$OPERATOR_TOKEN SARING_BENCH_LEGAL_TOKEN=$LEGAL_TOKEN
REPLICAS="127.0.0.1:$SARING_PORT,127.0.0.1:$((SARING_PORT + 1))"

replayed_total() {
  local total
  total=$(cat "$SCRATCH"/saring-*/saring.log | grep 'journal replayed' | grep -o '"replayed":[0-9]*' | cut -d: -f2 | paste -sd+ | bc)
  echo "${total:-0}"
}

journal_depths() {
  local n total=0
  for n in 1 2; do total=$((total + $(cat "$SCRATCH/saring-$n/outcomes.journal" 2>/dev/null | wc -l))); done
  echo "$total"
}

# --- Phase 1: exactness --------------------------------------------------------------------------------------------
note "phase 1: $RATE contacts/s for $EXACT_S s across both replicas, then the check"
"$BENCH_BIN" ledger --replicas "$REPLICAS" --rate "$RATE" --duration "$EXACT_S" --concurrency 64 \
  --check-settle-s 60 --out-dir "$SCRATCH/exact" >"$SCRATCH/exact.json" 2>>"$LOG" || note "phase 1: check FAILED"
cp "$SCRATCH/exact/report.json" "$OUT/exact-report.json"
cp "$SCRATCH/exact/timeline.csv" "$OUT/exact-timeline.csv"
REPLAYED_BEFORE=$(replayed_total)
note "phase 1 done; journal lines left: $(journal_depths); outcomes replayed from the journals so far: $REPLAYED_BEFORE"

# --- Phase 2: a master killed mid-traffic --------------------------------------------------------------------------
VICTIM_PORT=$(redis-cli -p "$BASE_PORT" cluster nodes | awk '$3 ~ /master/ && $9 ~ /^0-/ {split($2, a, "[:@]"); print a[2]}')
VICTIM_ID=$(redis-cli -p "$VICTIM_PORT" cluster myid)
REPLICA_PORT=$(redis-cli -p "$BASE_PORT" cluster nodes | awk -v id="$VICTIM_ID" '$4 == id {split($2, a, "[:@]"); print a[2]}')
note "phase 2: $RATE contacts/s for $FAILOVER_S s; SIGKILL to master :$VICTIM_PORT (slot 0) at ${KILL_AT} s; its replica :$REPLICA_PORT"
"$BENCH_BIN" ledger --replicas "$REPLICAS" --rate "$RATE" --duration "$FAILOVER_S" --concurrency 64 \
  --check-settle-s 60 --out-dir "$SCRATCH/failover" >"$SCRATCH/failover.json" 2>>"$LOG" &
LEDGER=$!
sleep "$KILL_AT"
KILLED_AT=$(date +%s.%N)
redis_kill "$SCRATCH/redis-$VICTIM_PORT"
note "killed master :$VICTIM_PORT"
PROMOTED_AT=""
for _ in $(seq 1 300); do
  if redis-cli -p "$REPLICA_PORT" role 2>/dev/null | head -1 | grep -q master \
    && redis-cli -p "$REPLICA_PORT" cluster info | grep -q 'cluster_state:ok'; then
    PROMOTED_AT=$(date +%s.%N)
    break
  fi
  sleep 0.05
done
if [ -n "$PROMOTED_AT" ]; then
  note "replica :$REPLICA_PORT promoted, cluster_state ok, $(echo "$PROMOTED_AT - $KILLED_AT" | bc | xargs printf '%.2f') s after the kill"
else
  note "replica :$REPLICA_PORT NOT promoted within 15 s"
fi
# As an operator (or a supervisor) would: start the dead node again; it rejoins as the new primary's replica.
sleep "$RESTART_AFTER_S"
redis_start "$VICTIM_PORT" "$SCRATCH/redis-$VICTIM_PORT" --appendonly no --cluster-enabled yes \
  --cluster-config-file nodes.conf --cluster-node-timeout "$NODE_TIMEOUT_MS" --repl-diskless-sync-delay 0
for _ in $(seq 1 100); do
  redis-cli -p "$VICTIM_PORT" role 2>/dev/null | head -1 | grep -q slave && break
  sleep 0.1
done
note "restarted :$VICTIM_PORT $RESTART_AFTER_S s after the promotion; its role now: $(redis-cli -p "$VICTIM_PORT" role | head -1)"
LEDGER_STATUS=0
wait "$LEDGER" || LEDGER_STATUS=$?
note "phase 2 ledger exit status $LEDGER_STATUS (non-zero: histories do not match the ledger)"
cp "$SCRATCH/failover/report.json" "$OUT/failover-report.json"
cp "$SCRATCH/failover/timeline.csv" "$OUT/failover-timeline.csv"
redis-cli -p "$REPLICA_PORT" cluster nodes | sort -k3 >"$OUT/cluster-nodes-after.txt"
STARTED=$(python3 -c "import json; print(json.load(open('$OUT/failover-report.json'))['report']['started_unix_s'])")
note "kill at $(echo "$KILLED_AT - $STARTED" | bc | xargs printf '%.1f') s into phase 2's timeline; journal lines left: $(journal_depths); outcomes replayed from the journals in phase 2: $(( $(replayed_total) - REPLAYED_BEFORE ))"
grep -h '"level":"WARN"\|"level":"ERROR"' "$SCRATCH"/saring-*/saring.log | sed 's/"timestamp":"[^"]*",//' \
  | cut -c1-220 | sort | uniq -c | sort -rn | head -20 >"$OUT/saring-warnings.txt" || true
python3 - "$OUT" <<'PY' | tee -a "$LOG"
import json, sys
out = sys.argv[1]
for phase in ("exact", "failover"):
    r = json.load(open(f"{out}/{phase}-report.json"))["report"]
    c = r["check"] or {}
    print(f"{phase}: sent {r['sent']} ({r['sent_per_s']:.0f}/s), scored {r['scored']} ({r['degraded']} degraded "
          f"{r['degraded_reasons']}), acknowledged {r['acknowledged']} (after retry {r['acknowledged_after_retry']}, "
          f"duplicate {r['acknowledged_duplicate']}, by replica {r['acknowledged_by_replica']}), given up {r['given_up']}; "
          f"score failures {r['score_failures']['by_code']}, outcome failures {r['outcome_failures']['by_code']}, "
          f"undesigned {r['score_failures']['undesigned_samples'] + r['outcome_failures']['undesigned_samples']}; "
          f"ScoreContact p50/p99/max {r['score_ms']} ms, RecordOutcome {r['outcome_ms']} ms; "
          f"check: {c.get('callers')} callers, acknowledged {c.get('expected')}, counted {c.get('found')}, "
          f"missing {c.get('missing')}, extra {c.get('extra')}, exact callers {c.get('exact')}, "
          f"settled after {c.get('settled_after_s', 0):.1f} s, mismatches {c.get('mismatches')}")
PY
