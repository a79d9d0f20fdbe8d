#!/usr/bin/env bash
# The repository's Python virtual environment (.venv): dxpy (the official DNAnexus client and
# `dx` CLI), nats-py (the example subscriber), awscli (the S3 benchmark's baseline) and
# schemathesis (the schema-driven fuzzer that checks the server against /openapi.json), pinned so
# that a new release cannot change what the fuzzer reports.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
missing=()
"$venv/bin/python" -c "import dxpy" 2>/dev/null || missing+=(dxpy)
"$venv/bin/python" -c "import nats" 2>/dev/null || missing+=(nats-py)
[ -x "$venv/bin/aws" ] || missing+=(awscli)
schemathesis_version=4.32.5
"$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$schemathesis_version')" 2>/dev/null ||
  missing+=("schemathesis==$schemathesis_version")
if [ ${#missing[@]} -gt 0 ]; then
  echo "python-deps: installing ${missing[*]} into $venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${missing[@]}"
fi
