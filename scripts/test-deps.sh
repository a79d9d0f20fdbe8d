#!/usr/bin/env bash
# Installs what the test suite needs when it is missing: nats-server (Debian), and a Python
# virtual environment at .venv with the official DNAnexus client (dxpy), nats-py and awscli.
# Idempotent and quiet when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "test-deps: $* missing and not root; install it with: sudo apt-get install -y $*" >&2
    exit 1
  fi
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  echo "test-deps: installing nats-server" >&2
  apt_install nats-server
fi

if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "test-deps: installing cargo-nextest" >&2
  cargo install --locked cargo-nextest >/dev/null
fi

scripts/python-deps.sh
scripts/console-deps.sh
