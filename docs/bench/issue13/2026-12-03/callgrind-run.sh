#!/bin/bash
# usage: run.sh LABEL REQUESTS [capture]
set -e
label=$1; requests=$2; capture=$3
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
if [ -n "$capture" ]; then export SARING__CAPTURE__DIR=$dir/capture; fi
valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=$dir/cg.out.%p \
  /tmp/new/saring serve --config $dir/saring.toml --listen 127.0.0.1:$port --log-format json --history memory \
  --database-url sqlite://$dir/cases.db > $dir/log 2>&1 &
pid=$!
for i in $(seq 1 600); do grep -q "saring is serving" $dir/log && break; sleep 0.5; done
unset SARING__CAPTURE__DIR
/tmp/new/saring-bench run --addr 127.0.0.1:$port --token cg-token-0123456789 --requests $requests --warmup 0 \
  --connections 4 --concurrency 16 --json > $dir/bench.json 2> $dir/bench.err || true
kill -TERM $pid; wait $pid || true
echo "$label done"
