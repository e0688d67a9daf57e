# Helpers shared by scripts/soak/run.sh and scripts/cluster/run.sh: private Redis, Redis Cluster, PostgreSQL and
# saring processes in a scratch directory, on ports of their own — never the system services on 6379 and 5432.
# Source it; every process started is recorded in $SCRATCH/pids and stopped by `cleanup` (by PID only).

say() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() { # PORT [SECONDS]
  local tries=$(( ${2:-30} * 10 ))
  for _ in $(seq 1 "$tries"); do
    port_open "$1" && return 0
    sleep 0.1
  done
  say "nothing listens on $1"
  return 1
}

remember_pid() { echo "$1 $2" >>"$SCRATCH/pids"; } # NAME PID

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)

# A private PostgreSQL cluster in $SCRATCH/pg on PORT, trust auth on loopback, database `saring`.
pg_init() { # PORT
  PG_PORT=$1
  PG_DIR="$SCRATCH/pg"
  mkdir -p "$PG_DIR"
  chown postgres "$PG_DIR"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres >"$PG_DIR/initdb.log" 2>&1
  pg_start
  runuser -u postgres -- "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres saring
  PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/saring"
}

pg_start() {
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
}

# A crash: immediate shutdown (SIGQUIT to the postmaster; no checkpoint, WAL recovery at the next start).
pg_crash() { runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true; }

pg_stop() { runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true; }

psql_q() { psql -X -q -At -h 127.0.0.1 -p "$PG_PORT" -U postgres -d saring "$@"; }

# A private Redis on PORT with an append-only file fsynced on every write (a SIGKILL loses nothing acknowledged).
redis_start() { # PORT DIR [extra redis-server args...]
  local port=$1 dir=$2
  shift 2
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly yes --appendfsync always \
    --logfile "$dir/redis.log" "$@" </dev/null >/dev/null 2>&1 &
  local pid=$!
  remember_pid "redis-$port" "$pid"
  echo "$pid" >"$dir/pid"
  wait_for_port "$port"
}

redis_kill() { # DIR
  local pid
  pid=$(cat "$1/pid")
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Tokens for the roles the drivers use, and a TOML [auth] section with their SHA-256.
make_tokens() {
  ROUTING_TOKEN="routing-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  OPERATOR_TOKEN="operator-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  LEGAL_TOKEN="legal-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  HASH_SECRET="soak-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  CHAIN_SECRET="soak-audit-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  AUTH_TOML=""
  local pair name token
  for pair in "routing:$ROUTING_TOKEN" "operator:$OPERATOR_TOKEN" "legal:$LEGAL_TOKEN"; do
    name=${pair%%:*}
    token=${pair#*:}
    AUTH_TOML+="[[auth.tokens]]
name = \"$name-driver\"
role = \"$name\"
sha256 = \"$(printf %s "$token" | sha256sum | cut -d' ' -f1)\"
"
  done
}

# saring replica N: gRPC on 127.0.0.1:PORT, console on CONSOLE_PORT, its own journal, shared everything else.
# Needs HISTORY_URL, PG_URL, HASH_SECRET, CHAIN_SECRET, AUTH_TOML, SARING_BIN, REDIS_PREFIX.
saring_start() { # N PORT CONSOLE_PORT
  local n=$1 port=$2 console=$3
  local dir="$SCRATCH/saring-$n"
  mkdir -p "$dir"
  cat >"$dir/saring.toml" <<TOML
[history]
store = "$HISTORY_URL"
redis_prefix = "$REDIS_PREFIX"
journal_path = "$dir/outcomes.journal"

[privacy]
hash_secret = "$HASH_SECRET"

[cases]
database_url = "$PG_URL"

[audit]
chain_secret = "$CHAIN_SECRET"
anchor_path = "$dir/audit-anchor"

[log]
format = "json"
filter = "info"

[console]
enabled = true
listen = "127.0.0.1:$console"

$AUTH_TOML
TOML
  ${SARING_TASKSET:-} "$SARING_BIN" serve --config "$dir/saring.toml" --listen "127.0.0.1:$port" \
    </dev/null >>"$dir/stdout.log" 2>>"$dir/saring.log" &
  local pid=$!
  remember_pid "saring-$n" "$pid"
  echo "$pid" >"$dir/pid"
  wait_for_port "$port" 60
}

saring_kill() { # N
  local pid
  pid=$(cat "$SCRATCH/saring-$1/pid")
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Samples VmRSS of the processes named in $SCRATCH/rss-targets ("name pidfile" lines) every INTERVAL seconds.
rss_sampler() { # CSV INTERVAL
  local csv=$1 interval=$2 started name pidfile pid kib
  started=$(date +%s.%N)
  echo "elapsed_s,process,vmrss_kib" >"$csv"
  while true; do
    while read -r name pidfile; do
      pid=$(cat "$pidfile" 2>/dev/null) || continue
      kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
      [ -n "$kib" ] && printf '%.0f,%s,%s\n' "$(echo "$(date +%s.%N) - $started" | bc)" "$name" "$kib" >>"$csv"
    done <"$SCRATCH/rss-targets"
    sleep "$interval"
  done
}

cleanup() {
  local name pid
  if [ -f "$SCRATCH/pids" ]; then
    while read -r name pid; do
      kill -KILL "$pid" 2>/dev/null || true
    done <"$SCRATCH/pids"
  fi
  if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
    pg_stop
  fi
  wait 2>/dev/null || true
  if [ "${KEEP_SCRATCH:-0}" = 0 ]; then
    rm -rf "$SCRATCH"
  else
    say "kept $SCRATCH"
  fi
}
