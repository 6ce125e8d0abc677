#!/usr/bin/env bash
# Makes PostgreSQL and RabbitMQ available on 127.0.0.1 (5432 and 5672):
# uses running ones; otherwise installs them from Debian's packages if
# missing, starts them, and waits until they answer. Idempotent.
set -euo pipefail

log() { printf 'services: %s\n' "$*" >&2; }
# shellcheck source=lib/apt.sh
source "$(dirname "$0")/lib/apt.sh"

wait_for() { # description, tries, command...
  local what=$1 tries=$2; shift 2
  for _ in $(seq "$tries"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  log "$what did not become ready"; return 1
}

pg_ok() { psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; }

postgres() {
  if pg_ok; then log "PostgreSQL is up"; return; fi
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql postgresql-client
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
  wait_for "PostgreSQL" 60 pg_isready -h 127.0.0.1 -p 5432 -q
  if ! pg_ok; then
    # A fresh Debian cluster asks for passwords on TCP; trust loopback, as a
    # development machine does.
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    log "trusting loopback connections in $hba"
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    wait_for "PostgreSQL (trust)" 20 pg_ok
  fi
  log "PostgreSQL is up"
}

rabbit_ok() { rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1 && (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

rabbitmq() {
  if (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then log "RabbitMQ is up"; return; fi
  command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
  log "starting RabbitMQ"
  as_root rabbitmq-server -detached 2>/dev/null || true
  wait_for "RabbitMQ" 120 rabbit_ok
  log "RabbitMQ is up"
}

# The restart tests start private servers of their own (tests/src/private.rs)
# from these binaries, also where the shared services run elsewhere.
# The network-fault test (tests/tests/netns.rs) joins namespaces with
# `ip` (iproute2); it skips itself, saying why, where it cannot.
private_servers() {
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_install postgresql
  [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || apt_install rabbitmq-server
  command -v ip >/dev/null 2>&1 || apt_install iproute2
}

command -v psql >/dev/null 2>&1 || apt_install postgresql-client
postgres
rabbitmq
private_servers
