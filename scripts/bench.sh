#!/usr/bin/env bash
# The whole benchmark, Weft and its peer side by side on this machine:
#   1. Weft's suite: `cargo bench -p weft-tests --bench engine` (release
#      build; executor and worker processes on a fresh database and vhost);
#   2. the same shapes on Celery: scripts/peer/celery.sh.
# Results go to stdout and to target/bench/{weft,celery}.json, and the
# pairs measured the same way are set side by side with their ratios
# (scripts/peer/compare.py; exits non-zero if a ratio target is not met).
# Pass scenario names (latency throughput fanout upstream results depth
# children) to run only those of Weft's.
# WEFT_QUEUE_TYPE=classic measures Weft on classic queues (quorum, the
# default, otherwise): the daemons inherit it. Weft's figures are also kept
# as target/bench/weft-<type>.json, so both types can be set side by side.
set -euo pipefail
cd "$(dirname "$0")/.."

export WEFT_QUEUE_TYPE="${WEFT_QUEUE_TYPE:-quorum}"
case "$WEFT_QUEUE_TYPE" in
  quorum|classic) ;;
  *) echo "WEFT_QUEUE_TYPE must be quorum or classic, not \`$WEFT_QUEUE_TYPE\`" >&2; exit 2 ;;
esac

scripts/services.sh
mkdir -p target/bench
cargo build --release --locked --bin weft
cargo bench --locked -p weft-tests --bench engine --no-run
# Measure with the build's output on disk: its writeback would otherwise
# share the disk with the first scenario's commits.
sync
# The load the figures were measured under goes with them.
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "queue type: $WEFT_QUEUE_TYPE"
cargo bench --locked -p weft-tests --bench engine -- --json "$@" > target/bench/weft.json
cp target/bench/weft.json "target/bench/weft-$WEFT_QUEUE_TYPE.json"
scripts/peer/celery.sh --json > target/bench/celery.json
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 scripts/peer/compare.py target/bench/weft.json target/bench/celery.json
