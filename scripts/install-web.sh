#!/usr/bin/env bash
# Install the pages' front-end libraries (ECharts) from npm into node_modules/ (never committed).
#
# Idempotent and fast: skipped when node_modules is newer than package-lock.json. The pages
# serve the files from there (tingfeng.web.assets); without them the charts say what to run.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'install-web: %s\n' "$*" >&2; }

STAMP=node_modules/.tingfeng-installed
if [[ -f $STAMP && $STAMP -nt package-lock.json && -f node_modules/echarts/dist/echarts.min.js ]]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    log "error: npm not found (scripts/install-system.sh installs it: apt-get install nodejs npm)"
    exit 1
fi
log "installing front-end libraries from npm (package-lock.json)"
npm ci --no-audit --no-fund --loglevel=error >&2
touch "$STAMP"
