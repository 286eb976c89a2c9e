#!/usr/bin/env bash
# Makes sure Redis and PostgreSQL run on 127.0.0.1 as the tests and
# `make run` expect: installs them on Debian when missing, starts them when
# stopped, lets the postgres user in over TCP without a password (trust on
# loopback only), and creates the `antaca` database.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

need_apt=()
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server redis-tools)
command -v pg_ctlcluster >/dev/null 2>&1 || need_apt+=(postgresql postgresql-contrib)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting redis"
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/antaca.log
fi

pg_ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if ! pg_ready; then
  echo "starting postgresql"
  ver=$(ls /etc/postgresql | sort -n | tail -1)
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start || $SUDO pg_ctlcluster "$ver" main start
fi
for _ in $(seq 1 60); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && pg_ready && break; sleep 0.5; done
redis-cli -h 127.0.0.1 ping >/dev/null || { echo "redis did not start" >&2; exit 1; }
pg_ready || { echo "postgresql did not start" >&2; exit 1; }

if ! psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
  echo "allowing the postgres user over loopback without a password"
  ver=$(ls /etc/postgresql | sort -n | tail -1)
  hba="/etc/postgresql/$ver/main/pg_hba.conf"
  $SUDO sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main reload 2>/dev/null || $SUDO pg_ctlcluster "$ver" main reload
  sleep 1
fi
psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null

if [ "$(psql -h 127.0.0.1 -U postgres -d postgres -Atqc "select 1 from pg_database where datname='antaca'")" != 1 ]; then
  psql -h 127.0.0.1 -U postgres -d postgres -qc 'create database antaca' >/dev/null
fi
echo "redis and postgresql ready on 127.0.0.1"
