#!/usr/bin/env bash
# Property-based API tests: schemathesis (PyPI) generates requests from
# `weft server`'s OpenAPI document (/api/v1/openapi.json) and checks every
# answer: no 5xx, status codes, content types, headers and bodies as the
# document says. Runs a `weft server` of this build against a database of
# its own (created here and dropped after), with an admin token.
#
# Needs PostgreSQL (WEFT_DATABASE_URL's server) and python3 with venv;
# installs schemathesis into target/schemathesis-venv the first time.
# SCHEMATHESIS_MAX_EXAMPLES (default 30) sets how many cases per operation.
set -euo pipefail
cd "$(dirname "$0")/.."

base_url=${WEFT_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/weft}
venv=target/schemathesis-venv
st=$venv/bin/schemathesis
if [[ ! -x $st ]]; then
  echo "== installing schemathesis into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check schemathesis
fi

echo "== building weft"
cargo build --locked -p weft-cli
weft=target/debug/weft

db="weft_schemathesis_$$"
db_url="${base_url%/*}/$db"
server_pid=""
cleanup() {
  if [[ -n $server_pid ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  psql -q "${base_url%/*}/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

export WEFT_DATABASE_URL=$db_url
"$weft" migrate >/dev/null
token=$("$weft" token create --role admin --name schemathesis --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

# A free port, picked by the OS.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=warn "$weft" server --addr "127.0.0.1:$port" >target/schemathesis-server.log 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null

# Something to read: a run (no executor runs here, so it stays pending —
# as good to read, cancel and refuse to retry as any).
curl -fsS -X POST "http://127.0.0.1:$port/api/v1/runs" \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"workflow":"name: st\ntasks:\n  a: { action: noop }\n"}' >/dev/null

echo "== schemathesis against http://127.0.0.1:$port/api/v1/openapi.json"
# From target/: schemathesis keeps its cache in .schemathesis/ where it runs.
(cd target && "../$st" run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --url "http://127.0.0.1:$port" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-30}" \
  --exclude-path-regex '/events$' \
  --seed 1 \
  --no-color)
