#!/usr/bin/env bash
# Makes the browser tests runnable: Debian's Chromium (/usr/bin/chromium,
# with chromium-driver) and Node with npm, then `npm ci` in tests/browser
# (playwright-core only, from the committed lockfile; it downloads no
# browser: the tests drive Debian's). Idempotent; needs root or sudo for
# apt-get when something is missing.
set -euo pipefail

log() { printf 'browser: %s\n' "$*" >&2; }
# shellcheck source=lib/apt.sh
source "$(dirname "$0")/lib/apt.sh"

root=$(cd "$(dirname "$0")/.." && pwd)

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# Fonts, so screenshots show text rather than boxes.
[ -d /usr/share/fonts/truetype/dejavu ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi

log "$(/usr/bin/chromium --version 2>/dev/null || echo 'chromium: version unknown')"
log "node $(node --version)"

cd "$root/tests/browser"
if [ ! -d node_modules/playwright-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci (playwright-core; no browser download)"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
fi
log "ready: cargo nextest run -p weft-tests --test browser"
