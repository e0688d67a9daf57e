#!/usr/bin/env bash
# Soak under faults (issue 8, item 7): two saring replicas over a private Redis (history, AOF fsynced on every
# write) and a private PostgreSQL (cases), driven by `saring-bench ledger` at SHARE (0.7) of the capacity measured
# first, for MINUTES (10), while faults kill and restart Redis, PostgreSQL and saring replica 2 in turn. A legal
# team decides proposed cases meanwhile. Afterwards every acknowledged outcome must be counted exactly once in
# its caller's history and stored once in the case database, every acknowledged decision must be in the audit
# log exactly once, and the surviving replica's resident memory is reported.
#
#   scripts/soak/run.sh [MINUTES] [OUT_DIR]          # defaults: 10, docs/bench/soak-faults
#
# Environment: RATE (skip the capacity probe and use this many contacts/s), SHARE (0.7), PROBE_S (20),
# FIRST_FAULT_S (60), FAULT_EVERY_S (90), FAULT_FOR_S (20), CONCURRENCY (64), REDIS_PORT (56379),
# PG_PORT (55433), SARING_PORT (50181, +1 for replica 2; consoles +10), KEEP_SCRATCH=1.
# Needs the release binaries: cargo build --release -p saring -p saring-bench
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
. "$ROOT/scripts/soak/lib.sh"

MINUTES=${1:-10}
OUT=${2:-$ROOT/docs/bench/soak-faults}
SHARE=${SHARE:-0.7}
PROBE_S=${PROBE_S:-20}
FIRST_FAULT_S=${FIRST_FAULT_S:-60}
FAULT_EVERY_S=${FAULT_EVERY_S:-90}
FAULT_FOR_S=${FAULT_FOR_S:-20}
CONCURRENCY=${CONCURRENCY:-64}
REDIS_PORT=${REDIS_PORT:-56379}
SARING_PORT=${SARING_PORT:-50181}
SARING_BIN=${SARING_BIN:-$ROOT/target/release/saring}
BENCH_BIN=${BENCH_BIN:-$ROOT/target/release/saring-bench}
for binary in "$SARING_BIN" "$BENCH_BIN"; do
  [ -x "$binary" ] || { say "missing $binary: cargo build --release -p saring -p saring-bench"; exit 1; }
done
for port in "$REDIS_PORT" "${PG_PORT:-55433}" "$SARING_PORT" $((SARING_PORT + 1)); do
  if port_open "$port"; then say "port $port is taken; set REDIS_PORT / PG_PORT / SARING_PORT"; exit 1; fi
done

SCRATCH=$(mktemp -d /tmp/saring-soak.XXXXXX)
chmod 755 "$SCRATCH"
trap cleanup EXIT
mkdir -p "$OUT"
LOG="$OUT/run.log"
: >"$LOG"
note() { say "$*"; printf '%s %s\n' "$(date -u +%H:%M:%S.%3N)" "$*" >>"$LOG"; }
FAULTS="$OUT/faults.csv"
echo "unix_s,event" >"$FAULTS"
fault_event() { printf '%s,%s\n' "$(date +%s.%N)" "$1" >>"$FAULTS"; note "$1"; }

note "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
note "commit $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo '+dirty')"

redis_start "$REDIS_PORT" "$SCRATCH/redis"
pg_init "${PG_PORT:-55433}"
make_tokens
HISTORY_URL="redis://127.0.0.1:$REDIS_PORT/0"
REDIS_PREFIX="soak$(date +%s)"
saring_start 1 "$SARING_PORT" $((SARING_PORT + 10))
saring_start 2 $((SARING_PORT + 1)) $((SARING_PORT + 11))
note "Redis (AOF, appendfsync always) on :$REDIS_PORT, PostgreSQL on :$PG_PORT, saring on :$SARING_PORT and :$((SARING_PORT + 1))"
export SARING_BENCH_TOKEN=$ROUTING_TOKEN SARING_BENCH_OPERATOR_TOKEN=$OPERATOR_TOKEN SARING_BENCH_LEGAL_TOKEN=$LEGAL_TOKEN
REPLICAS="127.0.0.1:$SARING_PORT,127.0.0.1:$((SARING_PORT + 1))"

# --- capacity --------------------------------------------------------------------------------------------------------
if [ -z "${RATE:-}" ]; then
  note "capacity probe: closed loop, $CONCURRENCY in flight over both replicas, $PROBE_S s (ScoreContact + RecordOutcome)"
  "$BENCH_BIN" ledger --replicas "$REPLICAS" --duration "$PROBE_S" --concurrency "$CONCURRENCY" --check-settle-s 0 \
    --out-dir "$SCRATCH/probe" >/dev/null 2>>"$LOG"
  CAPACITY=$(python3 -c "import json; print(round(json.load(open('$SCRATCH/probe/report.json'))['report']['sent_per_s']))")
  RATE=$(python3 -c "print(round($SHARE * $CAPACITY))")
  note "capacity $CAPACITY contacts/s; soak rate $SHARE x = $RATE contacts/s"
  cp "$SCRATCH/probe/report.json" "$OUT/probe-report.json"
fi

# --- the soak --------------------------------------------------------------------------------------------------------
DURATION=$((MINUTES * 60))
printf '%s\n%s\n' "saring-1 $SCRATCH/saring-1/pid" "saring-2 $SCRATCH/saring-2/pid" >"$SCRATCH/rss-targets"
rss_sampler "$OUT/rss.csv" 5 &
remember_pid rss-sampler $!
note "soak: $RATE contacts/s for $DURATION s; faults from $FIRST_FAULT_S s every $FAULT_EVERY_S s, each $FAULT_FOR_S s: Redis, PostgreSQL, saring replica 2, in turn"
"$BENCH_BIN" ledger --replicas "$REPLICAS" --rate "$RATE" --duration "$DURATION" --concurrency "$CONCURRENCY" \
  --window 10 --decide-every-s 2 --decide-batch 5 --call-timeout-ms 8000 --check-settle-s 180 --out-dir "$SCRATCH/soak" \
  >/dev/null 2>>"$LOG" &
LEDGER=$!
SOAK_START=$(date +%s)

faults() {
  local at=$FIRST_FAULT_S kind=0
  while [ $((at + FAULT_FOR_S + 30)) -le "$DURATION" ]; do
    local wait_s=$((SOAK_START + at - $(date +%s)))
    [ "$wait_s" -gt 0 ] && sleep "$wait_s"
    case $((kind % 3)) in
      0) fault_event "redis down (SIGKILL)"; redis_kill "$SCRATCH/redis"
         sleep "$FAULT_FOR_S"; redis_start "$REDIS_PORT" "$SCRATCH/redis"; fault_event "redis up" ;;
      1) fault_event "postgresql down (immediate shutdown)"; pg_crash
         sleep "$FAULT_FOR_S"; pg_start; fault_event "postgresql up" ;;
      2) fault_event "saring-2 down (SIGKILL)"; saring_kill 2
         sleep "$FAULT_FOR_S"; saring_start 2 $((SARING_PORT + 1)) $((SARING_PORT + 11)); fault_event "saring-2 up" ;;
    esac
    kind=$((kind + 1))
    at=$((at + FAULT_EVERY_S))
  done
}
faults
LEDGER_STATUS=0
wait "$LEDGER" || LEDGER_STATUS=$?
note "ledger exit status $LEDGER_STATUS (non-zero: a history does not match the ledger)"
for n in 1 2; do note "saring-$n journal lines left: $(cat "$SCRATCH/saring-$n/outcomes.journal" 2>/dev/null | wc -l)"; done

# --- the case database against the ledger -----------------------------------------------------------------------------
psql_q -c "CREATE TABLE ledger_outcomes (contact_id TEXT, caller TEXT, replica INT, attempts INT, duplicate BOOLEAN, acked_at_s DOUBLE PRECISION)"
psql_q -c "\\copy ledger_outcomes FROM '$SCRATCH/soak/outcomes.csv' CSV HEADER"
psql_q -c "CREATE TABLE ledger_decisions (case_id TEXT, decision TEXT, reason TEXT, attempts INT, resolved_by_read BOOLEAN)"
psql_q -c "\\copy ledger_decisions FROM '$SCRATCH/soak/decisions.csv' CSV HEADER"
OUTCOMES_WITH_NUMBER=$(psql_q -c "SELECT count(*) FROM ledger_outcomes WHERE caller <> ''")
OUTCOMES_IN_DB=$(psql_q -c "SELECT count(*) FROM ledger_outcomes l JOIN contacts c USING (contact_id)")
DECISIONS=$(psql_q -c "SELECT count(*) FROM ledger_decisions")
DECISIONS_ONCE=$(psql_q -c "SELECT count(*) FROM ledger_decisions d WHERE (SELECT count(*) FROM audit a WHERE a.case_id = d.case_id AND a.reason = d.reason) = 1")
DECISIONS_STATE=$(psql_q -c "SELECT count(*) FROM ledger_decisions d JOIN cases c USING (case_id) WHERE c.decision_reason = d.reason AND c.state = CASE d.decision WHEN 'approve' THEN 'approved' ELSE 'rejected' END")
DECIDED_BY_US=$(psql_q -c "SELECT count(*) FROM audit WHERE reason LIKE 'ledger % decision %'")
note "case database: $OUTCOMES_IN_DB of $OUTCOMES_WITH_NUMBER acknowledged outcomes with a number stored (contact_id is the primary key: at most once); decisions: $DECISIONS acknowledged, $DECISIONS_ONCE in the audit log exactly once, $DECISIONS_STATE with the case in that state, $DECIDED_BY_US audit entries by the decider in all"
AUDIT_CHAIN=$(psql_q -c "SELECT count(*) FROM audit a JOIN audit b ON b.seq = a.seq + 1 WHERE b.prev_hash <> a.hash")
note "audit chain breaks: $AUDIT_CHAIN"

cp "$SCRATCH/soak/report.json" "$OUT/report.json"
cp "$SCRATCH/soak/timeline.csv" "$OUT/timeline.csv"
grep -h '"level":"WARN"\|"level":"ERROR"' "$SCRATCH"/saring-*/saring.log \
  | sed -E 's/"timestamp":"[^"]*",//; s/[0-9a-f]{16,}/…/g; s/[0-9]+(\.[0-9]+)?/N/g' \
  | cut -c1-200 | sort | uniq -c | sort -rn | head -30 >"$OUT/saring-warnings.txt" || true
python3 - "$OUT" "$LOG" <<'PY' | tee -a "$LOG"
import csv, json, sys
out = sys.argv[1]
r = json.load(open(f"{out}/report.json"))["report"]
c = r["check"] or {}
print(f"sent {r['sent']} ({r['sent_per_s']:.0f}/s); ScoreContact answered {r['scored']}, degraded {r['degraded']} "
      f"{r['degraded_reasons']}, unanswered {r['unscored']}; RecordOutcome acknowledged {r['acknowledged']} "
      f"(after a retry {r['acknowledged_after_retry']}, as duplicate {r['acknowledged_duplicate']}, by replica "
      f"{r['acknowledged_by_replica']}), given up {r['given_up']}; decisions {r['decisions']}, conflicts {r['decide_conflicts']}")
print(f"failed attempts: ScoreContact {r['score_failures']['by_code']}, RecordOutcome {r['outcome_failures']['by_code']}, "
      f"Decide/List {r['decide_failures']['by_code']}; undesigned samples "
      f"{r['score_failures']['undesigned_samples'] + r['outcome_failures']['undesigned_samples'] + r['decide_failures']['undesigned_samples']}")
print(f"latency (retries included): ScoreContact p50/p99/max {r['score_ms']} ms; RecordOutcome until acknowledged {r['outcome_ms']} ms")
print(f"check: {c.get('callers')} callers, acknowledged {c.get('expected')}, counted {c.get('found')}, missing "
      f"{c.get('missing')}, extra {c.get('extra')}, exact callers {c.get('exact')}, settled after "
      f"{c.get('settled_after_s', 0):.1f} s, lookup failures {c.get('lookup_failures')}, mismatches {c.get('mismatches')}")
rows = [row for row in csv.DictReader(open(f"{out}/rss.csv")) if row["process"] == "saring-1"]
if rows:
    kib = [int(row["vmrss_kib"]) for row in rows]
    print(f"saring-1 (never killed) VmRSS: start {kib[0]} KiB, end {kib[-1]} KiB, max {max(kib)} KiB, "
          f"min {min(kib)} KiB over {len(kib)} samples")
PY
