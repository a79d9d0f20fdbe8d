#!/usr/bin/env bash
# Creates (or updates) the repository's Python venv at <repo>/.venv and installs the official
# DNAnexus client (dxpy, which provides `dx`) from PyPI when `dx` is missing there.
# Idempotent and quiet: a second run with `dx` present does nothing. Prints the path of `dx`.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(git -C "$script_dir" rev-parse --show-toplevel 2>/dev/null || (cd "$script_dir/.." && pwd))"
venv="${KEYLEDGER_VENV:-$repo_root/.venv}"
dx="$venv/bin/dx"

if [[ -x "$dx" ]]; then
    echo "$dx"
    exit 0
fi

python="${PYTHON:-$(command -v python3 || true)}"
if [[ -z "$python" ]]; then
    echo "dxpy-venv: python3 not found; install it (e.g. apt-get install python3-venv)" >&2
    exit 1
fi

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv" || {
        echo "dxpy-venv: could not create $venv (Debian needs: apt-get install python3-venv)" >&2
        exit 1
    }
fi

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade dxpy >&2

if [[ ! -x "$dx" ]]; then
    echo "dxpy-venv: dxpy installed but $dx is missing" >&2
    exit 1
fi
echo "$dx"
