#!/usr/bin/env bash
# The peer: Celery (from PyPI) on the same RabbitMQ and PostgreSQL, running
# the shapes of Weft's suite (scripts/peer/celery_bench.py). Creates a venv
# under target/, a vhost `weft_peer` and a database `weft_peer`, starts a
# Celery worker (prefork, one process per core) and runs the benchmark.
# Pass --quick for a short run, --json for JSON.
set -euo pipefail
cd "$(dirname "$0")/../.."

scripts/services.sh >/dev/null
venv=target/peer-venv
if [[ ! -x $venv/bin/celery ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'celery[sqlalchemy]==5.7.*' 'psycopg2-binary==2.9.*'
fi

rabbitmqctl -q add_vhost weft_peer 2>/dev/null || true
rabbitmqctl -q set_permissions -p weft_peer guest '.*' '.*' '.*' >/dev/null
rabbitmqctl -q purge_queue -p weft_peer celery >/dev/null 2>&1 || true
psql -h 127.0.0.1 -U postgres -qc 'DROP DATABASE IF EXISTS weft_peer' >/dev/null
psql -h 127.0.0.1 -U postgres -qc 'CREATE DATABASE weft_peer' >/dev/null

cd scripts/peer
log=$(mktemp -t celery-worker.XXXXXX.log)
"../../$venv/bin/celery" -A celery_bench worker --loglevel=WARNING \
    --concurrency "$(nproc)" --pool prefork >"$log" 2>&1 &
worker=$!
trap 'kill -TERM "$worker" 2>/dev/null; wait "$worker" 2>/dev/null || true' EXIT
"../../$venv/bin/python" celery_bench.py "$@"
