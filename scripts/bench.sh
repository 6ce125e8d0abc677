#!/usr/bin/env bash
# The whole benchmark, Weft and its peer side by side on this machine:
#   1. Weft's suite: `cargo bench -p weft-tests --bench engine` (release
#      build; executor and worker processes on a fresh database and vhost);
#   2. the same shapes on Celery: scripts/peer/celery.sh.
# Results go to stdout and to target/bench/{weft,celery}.txt. Pass scenario
# names (latency throughput fanout upstream results depth) to run only
# those of Weft's.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
mkdir -p target/bench
cargo build --release --locked --bin weft
cargo bench --locked -p weft-tests --bench engine --no-run
# Measure with the build's output on disk: its writeback would otherwise
# share the disk with the first scenario's commits.
sync
cargo bench --locked -p weft-tests --bench engine -- "$@" | tee target/bench/weft.txt
scripts/peer/celery.sh | tee target/bench/celery.txt
