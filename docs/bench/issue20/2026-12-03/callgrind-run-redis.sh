#!/bin/bash
# usage: run-redis.sh LABEL REQUESTS SARING_BINARY   (Redis history on 127.0.0.1:6391, preloaded histories)
set -e
label=$1; requests=$2; binary=$3
dir=/tmp/cg/$label; rm -rf $dir; mkdir -p $dir
cat > $dir/saring.toml <<TOML
[[auth.tokens]]
name = "cg"
role = "routing"
sha256 = "31fd5072148044eba65819dc2bc84f8354041ed8655131209fe92e2157d83ed0"
TOML
port=$((20000 + RANDOM % 20000))
export SARING__PRIVACY__HASH_SECRET=callgrind-secret-0123456789abcdef SARING__AUDIT__CHAIN_SECRET=callgrind-chain-0123456789abcdef
export SARING__AUDIT__ANCHOR_PATH=$dir/anchor SARING__CONSOLE__ENABLED=false SARING__HISTORY__JOURNAL_PATH=$dir/journal
export SARING__HISTORY__BUDGET_MS=2000 SARING__HISTORY__REDIS_PREFIX=cg-$label-$RANDOM
valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=$dir/cg.out.%p \
  $binary serve --config $dir/saring.toml --listen 127.0.0.1:$port --log-format json \
  --history redis://127.0.0.1:6391/0 --database-url sqlite://$dir/cases.db > $dir/log 2>&1 &
pid=$!
for i in $(seq 1 600); do grep -q "saring is serving" $dir/log && break; sleep 0.5; done
redis=$(redis-cli -p 6391 info server | grep process_id | cut -d: -f2 | tr -d '\r')
before=$(awk '{print $14+$15}' /proc/$redis/stat)
/tmp/new/saring-bench run --addr 127.0.0.1:$port --token cg-token-0123456789 --preload --requests $requests --warmup 0 \
  --connections 4 --concurrency 16 --json > $dir/bench.json 2> $dir/bench.err || true
after=$(awk '{print $14+$15}' /proc/$redis/stat)
echo "redis_cpu_ticks $((after - before))" > $dir/redis-cpu.txt
kill -TERM $pid; wait $pid || true
redis-cli -p 6391 --scan --pattern "$SARING__HISTORY__REDIS_PREFIX*" | head -1 > /dev/null
echo "$label done"
