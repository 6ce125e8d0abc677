#!/usr/bin/env bash
# The whole test suite, as CI runs it: services, formatting, lints, tests.
# Integration and end-to-end tests use the real PostgreSQL and RabbitMQ;
# each test binary makes its own database and RabbitMQ vhost.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
# Chromium and playwright-core for the web UI's browser tests, which must
# run here rather than skip.
scripts/browser.sh
export WEFT_BROWSER_REQUIRED=1
export WEFT_DATABASE_URL=${WEFT_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/weft}
export WEFT_AMQP_URL=${WEFT_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets --locked
echo "== schemathesis (the API against its OpenAPI document)"
scripts/schemathesis.sh
