#!/bin/bash
# Instructions per ScoreContact, counted by callgrind: deterministic, whatever else the machine is doing.
#
#   scripts/bench/callgrind-per-call.sh LABEL SARING_BINARY HISTORY [capture]
#
# HISTORY is `memory` or a Redis URL (e.g. redis://127.0.0.1:6391/0; histories are preloaded and the history
# budget is raised to 2 s so that no read degrades under valgrind; the interval's history sweep is claimed
# beforehand, as if another replica had just swept, so that its 2^bucket_bits scripts, paid once an interval and
# not per call, stay out of the count). `capture` serves with SARING__CAPTURE__DIR.
# Runs `saring serve` under `valgrind --tool=callgrind --separate-threads=yes` twice, driven by
# `saring-bench run --addr … --requests N` with N = 2,000 and 12,000, and prints (instructions at 12,000 − at
# 2,000) / 10,000, so start-up and shutdown cancel. The capture's converter thread (Parquet, paid when a spool
# completes) is reported apart from the serving threads. saring-bench is taken from beside SARING_BINARY.
# COLLECT='*score_contact*' (any callgrind --toggle-collect pattern) counts only inside the functions it names, so that
# periodic tasks (notice follower, audit check, case writer after the preload) drop out of a comparison of two builds.
# Work files go to /tmp/callgrind-LABEL-N; the run's Redis keys are deleted after it. Minutes per run: saring answers ~300 calls/s under valgrind.
set -euo pipefail
label=$1; binary=$(realpath "$2"); history=$3; capture=${4:-}
bench=$(dirname "$binary")/saring-bench
token=callgrind-token-0123456789
digest=$(printf %s "$token" | sha256sum | cut -d' ' -f1)

run() {  # run N: leaves the per-thread callgrind files in /tmp/callgrind-$label-N
    local requests=$1 dir=/tmp/callgrind-$label-$1 port=$((20000 + RANDOM % 20000))
    local prefix="callgrind-$label-$requests-$RANDOM"
    rm -rf "$dir"; mkdir -p "$dir"
    printf '[[auth.tokens]]\nname = "callgrind"\nrole = "routing"\nsha256 = "%s"\n' "$digest" > "$dir/saring.toml"
    local -a environment=(SARING__PRIVACY__HASH_SECRET=callgrind-secret-0123456789abcdef
        SARING__AUDIT__CHAIN_SECRET=callgrind-chain-0123456789abcdef SARING__AUDIT__ANCHOR_PATH="$dir/anchor"
        SARING__CONSOLE__ENABLED=false SARING__HISTORY__JOURNAL_PATH="$dir/journal"
        SARING__HISTORY__BUDGET_MS=2000 SARING__HISTORY__REDIS_PREFIX="$prefix")
    [ -n "$capture" ] && environment+=(SARING__CAPTURE__DIR="$dir/capture")
    local -a preload=()
    if [ "$history" != memory ]; then
        preload=(--preload)
        redis-cli -u "$history" SET "$prefix:v2:swept" 0 PX 3600000 > /dev/null
    fi
    local -a collect=()
    [ -n "${COLLECT:-}" ] && collect=(--toggle-collect="$COLLECT")
    env "${environment[@]}" valgrind --tool=callgrind --separate-threads=yes "${collect[@]}" --callgrind-out-file="$dir/cg.out.%p" \
        "$binary" serve --config "$dir/saring.toml" --listen "127.0.0.1:$port" --log-format json \
        --history "$history" --database-url "sqlite://$dir/cases.db" > "$dir/log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 600); do grep -q "saring is serving" "$dir/log" && break; sleep 0.5; done
    "$bench" run --addr "127.0.0.1:$port" --token "$token" "${preload[@]}" --requests "$requests" --warmup 0 \
        --connections 4 --concurrency 16 --json > "$dir/bench.json" 2> "$dir/bench.err" || true
    kill -TERM "$pid"; wait "$pid" || true
    # Leave Redis as found: keys left behind kept later fresh prefixes from finishing their scan for layout-1 keys.
    if [ "$history" != memory ]; then
        redis-cli -u "$history" --scan --pattern "$prefix:*" | xargs -r -n 500 redis-cli -u "$history" UNLINK > /dev/null
    fi
    grep -o '"degraded": [0-9]*\|"errors": [0-9]*' "$dir/bench.json" | head -2 | tr '\n' ' ' >&2; echo "($requests calls)" >&2
}

total() {  # total DIR serving|converter: instructions of those threads
    local sum=0
    for file in "$1"/cg.out.*-*; do
        local count; count=$(grep -m1 '^summary:' "$file" | cut -d' ' -f2)
        if grep -q 'capture::Converter' "$file"; then
            [ "$2" = converter ] && sum=$((sum + count))
        else
            [ "$2" = serving ] && sum=$((sum + count))
        fi
    done
    echo "$sum"
}

run 2000
run 12000
small=/tmp/callgrind-$label-2000 big=/tmp/callgrind-$label-12000
echo "$label: $(( ($(total "$big" serving) - $(total "$small" serving)) / 10000 )) instructions per ScoreContact" \
    "(serving threads); converter $(( ($(total "$big" converter) - $(total "$small" converter)) / 10000 )) per record"
