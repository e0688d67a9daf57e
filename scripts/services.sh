#!/usr/bin/env bash
# Makes sure what saring's tests need is there, changing nothing on the machine unless told to:
#
# - the `redis-server` binary (the Redis tests start their own servers on private ports, in temp directories);
# - a PostgreSQL the tests can reach: SARING_TEST_POSTGRES_URL, else a postgres:// DATABASE_URL, else
#   postgres://postgres@127.0.0.1:5432/test without a password (each test works in a schema of its own);
# - systemd-analyze and setpriv (the packaging tests).
#
# Missing Debian packages are installed (apt-get, said as it happens). The machine's own services are started or
# configured only with SARING_SYSTEM_SERVICES=1 (CI sets it: .ci/run): then Redis on 127.0.0.1:6379 and the
# PostgreSQL cluster on 127.0.0.1:5432 are started when they are not answering, and the cluster gets trust
# authentication for loopback, a `test` database and a `root` role. Without it, a PostgreSQL that does not answer
# is a clear error saying both ways out. Idempotent.
set -euo pipefail

system="${SARING_SYSTEM_SERVICES:-0}"

say() { printf 'services: %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
  for _ in $(seq 1 60); do
    port_open "$1" && return 0
    sleep 0.5
  done
  return 1
}

ensure_redis() {
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    say "installing redis-server and redis-tools (the tests start their own servers on private ports)"
    apt_install redis-server redis-tools
  fi
  if [ "$system" != 1 ] || redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
    return 0
  fi
  say "starting redis-server on 127.0.0.1:6379 (SARING_SYSTEM_SERVICES=1)"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_for_port 6379 || { say "redis did not start"; exit 1; }
}

ensure_postgres() {
  local url="${SARING_TEST_POSTGRES_URL:-}"
  case "${DATABASE_URL:-}" in postgres://*|postgresql://*) url="${url:-$DATABASE_URL}" ;; esac
  if [ -n "$url" ]; then
    command -v psql >/dev/null 2>&1 || { say "installing postgresql-client (psql)"; apt_install postgresql-client; }
    psql -d "$url" -q -c 'select 1' >/dev/null 2>&1 || { say "the PostgreSQL at the given URL does not answer"; exit 1; }
    return 0
  fi
  if command -v psql >/dev/null 2>&1 && psql -h 127.0.0.1 -U postgres -d test -q -c 'select 1' >/dev/null 2>&1; then
    [ "$system" = 1 ] && ensure_test_database
    return 0
  fi
  if [ "$system" != 1 ]; then
    say "no PostgreSQL answers as postgres@127.0.0.1:5432/test without a password. Either point the tests at one:"
    say "  SARING_TEST_POSTGRES_URL=postgres://USER:PASSWORD@HOST:PORT/DB scripts/test.sh"
    say "or let this script install and start the local cluster, add trust authentication for loopback to its"
    say "pg_hba.conf and create database test (what CI does):"
    say "  SARING_SYSTEM_SERVICES=1 scripts/test.sh"
    exit 1
  fi
  if command -v pg_isready >/dev/null 2>&1 && pg_isready -h 127.0.0.1 -p 5432 -q; then
    ensure_trust
    ensure_test_database
    return 0
  fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    say "installing postgresql"
    apt_install postgresql
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  ensure_trust
  say "starting postgresql $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for_port 5432 || { say "postgresql did not start"; exit 1; }
  ensure_test_database
}

# Trust auth on loopback for the test cluster (as on the development machines); SARING_SYSTEM_SERVICES=1 only.
ensure_trust() {
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    say "adding trust authentication for loopback and the local socket at the top of $hba (tests connect without a password)"
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
  fi
}

ensure_test_database() {
  if ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
    say "creating database test"
    psql -h 127.0.0.1 -U postgres -c 'create database test' >/dev/null 2>&1 || true
  fi
  if ! psql -h 127.0.0.1 -U root -d test -c 'select 1' >/dev/null 2>&1; then
    say "creating role root (superuser, login) for tools run as root"
    psql -h 127.0.0.1 -U postgres -c 'create role root superuser login' >/dev/null 2>&1 || true
  fi
}

# The packaging tests verify the systemd unit (systemd-analyze) and run saring as an unprivileged user (setpriv).
ensure_tools() {
  command -v systemd-analyze >/dev/null 2>&1 || { say "installing systemd (for systemd-analyze)"; apt_install systemd; }
  command -v setpriv >/dev/null 2>&1 || { say "installing util-linux (for setpriv)"; apt_install util-linux; }
}

ensure_redis
ensure_postgres
ensure_tools
if [ "$system" = 1 ]; then
  say "redis and postgresql are answering (SARING_SYSTEM_SERVICES=1)"
else
  say "redis-server is installed and postgresql answers"
fi
