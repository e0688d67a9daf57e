#!/usr/bin/env bash
# Makes sure the local services saring's tests and production-like runs use are answering:
# Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`).
# Installs the Debian packages when they are missing and starts the servers when they are not running.
# Idempotent: does nothing when both already answer.
set -euo pipefail

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
  if command -v redis-cli >/dev/null 2>&1 && redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
    return 0
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    say "installing redis-server"
    apt_install redis-server redis-tools
  fi
  say "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_for_port 6379 || { say "redis did not start"; exit 1; }
}

ensure_postgres() {
  if command -v pg_isready >/dev/null 2>&1 && pg_isready -h 127.0.0.1 -p 5432 -q; then
    ensure_test_database
    return 0
  fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    say "installing postgresql"
    apt_install postgresql
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  # Trust auth on loopback for the test cluster (as on the development machines).
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    say "adding trust authentication for loopback and the local socket at the top of $hba (tests connect without a password)"
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$hba"
  fi
  say "starting postgresql $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for_port 5432 || { say "postgresql did not start"; exit 1; }
  ensure_test_database
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
say "redis and postgresql are answering"
