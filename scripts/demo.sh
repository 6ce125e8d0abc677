#!/usr/bin/env bash
# The engine end to end: services, a release build, `weft dev` (migrate +
# an executor + a worker), then an example workflow submitted and followed
# to its end. Pass another workflow file (and --input flags) to run that.
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

"$weft" validate "$workflow"
"$weft" graph "$workflow"
id=$("$weft" submit "$workflow" "$@")
echo "submitted $id"
status=0
"$weft" watch "$id" --timeout 120 || status=$?
"$weft" status "$id"
exit "$status"
