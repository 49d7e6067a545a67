#!/usr/bin/env bash
# Install the system packages Tingfeng and its test suite need (Debian/Ubuntu, apt).
#
# Idempotent: does nothing (and needs no network) when everything is already installed.
# As root it uses apt-get; otherwise sudo when available; otherwise it prints the packages to
# install and exits non-zero. It never starts system services: the test suite runs its own
# private PostgreSQL and Redis servers (tests/servers.py), and `tingfeng demo` its own.
#
# Extra packages can be given in EXTRA_PACKAGES (space separated).
set -euo pipefail

# postgresql: server binaries for the tests and scale-out mode (the pip wheels bundle libpq).
# redis-server: the scale-out work queue and its tests.
# make, ca-certificates: the Makefile, and HTTPS for pip.
# chromium, fonts-noto-cjk: the browser tests of the web pages (driven by Playwright with the
# system Chromium; nothing is downloaded at test time) and Chinese text in screenshots.
# libpango-1.0-0, libpangoft2-1.0-0: WeasyPrint lays out the PDF reports with Pango;
# poppler-utils: pdftotext, with which the report tests read the PDFs back.
PACKAGES=(postgresql redis-server make ca-certificates chromium fonts-noto-cjk
    libpango-1.0-0 libpangoft2-1.0-0 poppler-utils)
# nodejs, npm: the pages' front-end libraries (ECharts) come from npm at install
# (scripts/install-web.sh); a Node.js that brings its own npm (e.g. NodeSource) is kept.
if ! command -v npm >/dev/null 2>&1; then
    PACKAGES+=(nodejs npm)
fi
# The Python wheels (psycopg[binary], lxml, ...) are all manylinux wheels: no compiler needed.
# shellcheck disable=SC2206
PACKAGES+=(${EXTRA_PACKAGES:-})

log() { printf 'install-system: %s\n' "$*" >&2; }

# `python3 -m venv` needs ensurepip, which Debian's own python3 ships separately.
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    PACKAGES+=(python3-venv)
fi

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    # Not Debian-like: accept the system if the binaries are there.
    if { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null; } \
        && command -v redis-server >/dev/null; then
        exit 0
    fi
    log "no apt-get here; please install with your package manager: PostgreSQL server" \
        "(initdb, pg_ctl), redis-server, make"
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == installed ]] || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        log "installing ${missing[*]} with sudo"
        exec sudo EXTRA_PACKAGES="${EXTRA_PACKAGES:-}" bash "$0" "$@"
    fi
    log "missing system packages: ${missing[*]}"
    log "install them as root:  apt-get update && apt-get install -y ${missing[*]}"
    exit 1
fi

log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

# Keep package scripts from starting services (PostgreSQL's main cluster, redis-server):
# a policy-rc.d that denies all actions, removed again afterwards if we created it.
policy=/usr/sbin/policy-rc.d
out=$(mktemp)
created_policy=""
cleanup() {
    rm -f "$out"
    if [[ -n $created_policy ]]; then rm -f "$policy"; fi
}
trap cleanup EXIT
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# added by tingfeng scripts/install-system.sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
fi

run_quiet() {
    if ! "$@" >"$out" 2>&1; then
        cat "$out" >&2
        log "failed: $*"
        return 1
    fi
}

run_quiet apt-get update -q
run_quiet apt-get install -y -q --no-install-recommends "${missing[@]}"
log "done"
