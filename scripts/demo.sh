#!/usr/bin/env bash
# The engine end to end: services, a release build, `weft dev` (migrate +
# an executor + a worker + the web UI and API without tokens on
# 127.0.0.1:8080, or WEFT_SERVER_ADDR), then an example workflow submitted
# and followed to its end, its status read back through the API. Pass
# another workflow file (and --input flags) to run that.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
cargo build --release --locked --bin weft
weft=target/release/weft
workflow=${1:-workflows/etl.yaml}
shift || true

"$weft" migrate
log=$(mktemp -t weft-dev.XXXXXX.log)
"$weft" dev >"$log" 2>&1 &
dev=$!
trap 'kill -TERM "$dev" 2>/dev/null; wait "$dev" 2>/dev/null || true' EXIT
echo "weft dev running (pid $dev, log $log)"

# `weft dev` says where its UI is once it listens (or warns that the
# port is taken: the engine runs on without it).
ui=""
for _ in $(seq 1 100); do
  ui=$(sed -n 's/^web UI *\(http[^ ]*\)\/$/\1/p' "$log" | head -n 1)
  [ -n "$ui" ] && break
  if grep -q "warning: no web UI" "$log"; then
    grep "warning: no web UI" "$log" >&2
    break
  fi
  sleep 0.1
done
if [ -n "$ui" ]; then
  echo
  echo "  web UI:  $ui/      (dev mode: no token; loopback only)"
  echo "  API:     $ui/api/v1  (OpenAPI: $ui/api/v1/openapi.json)"
  echo
fi

"$weft" validate "$workflow"
"$weft" graph "$workflow"
id=$("$weft" submit "$workflow" "$@")
echo "submitted $id"
status=0
"$weft" watch "$id" --timeout 120 || status=$?
if [ -n "$ui" ]; then
  # The same status, read through the HTTP API (the CLI's remote mode).
  "$weft" status "$id" --server "$ui"
  if [ -t 0 ]; then
    read -r -p "the web UI stays up at $ui/ — press Enter to stop weft dev " _
  fi
else
  "$weft" status "$id"
fi
exit "$status"
