#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install Tingfeng into it, editable, with the test extras.
#
# Idempotent and fast: skipped when .venv works and its stamp is newer than pyproject.toml.
# PYTHON selects the interpreter used to create the venv (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.tingfeng-installed
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

log() { printf 'install-python: %s\n' "$*" >&2; }

version_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

if [[ -f $STAMP && $STAMP -nt pyproject.toml ]] && version_ok "$VENV/bin/python"; then
    exit 0
fi

if [[ ! -x $VENV/bin/python ]] || ! version_ok "$VENV/bin/python"; then
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        log "error: '$PYTHON' not found; Tingfeng needs Python >= 3.11 (set PYTHON=/path/to/python3.11)"
        exit 1
    fi
    if ! version_ok "$PYTHON"; then
        found=$("$PYTHON" -c 'import sys; print(".".join(map(str, sys.version_info[:3])))' 2>/dev/null || echo "unknown")
        log "error: Tingfeng needs Python >= 3.11, but '$PYTHON' is $found" \
            "(set PYTHON=/path/to/python3.11)"
        exit 1
    fi
    rm -rf "$VENV"
    log "creating $VENV with $("$PYTHON" --version 2>&1)"
    if ! "$PYTHON" -m venv "$VENV"; then
        log "error: '$PYTHON -m venv' failed (on Debian: apt-get install python3-venv," \
            "or run scripts/install-system.sh)"
        exit 1
    fi
fi

# pip's output (and setuptools' build warnings) only when something fails.
out=$(mktemp)
trap 'rm -f "$out"' EXIT
run_quiet() {
    if ! "$@" >"$out" 2>&1; then
        cat "$out" >&2
        log "failed: $*"
        exit 1
    fi
}

log "installing Python packages into $VENV"
run_quiet "$VENV/bin/python" -m pip install --upgrade pip
run_quiet "$VENV/bin/python" -m pip install -e '.[test]'
touch "$STAMP"
log "done"
