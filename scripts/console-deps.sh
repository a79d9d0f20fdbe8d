#!/usr/bin/env bash
# Installs what the web console's browser test needs when it is missing: Debian's Chromium
# (/usr/bin/chromium) and the pinned npm packages of tests/console (playwright-core).
# Idempotent and quiet when everything is present. Playwright's own browser download
# (`npx playwright install`) is never used: the test drives Debian's Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "console-deps: /usr/bin/chromium is missing and this is not root; install it with: sudo apt-get install -y chromium" >&2
    exit 1
  fi
  echo "console-deps: installing chromium (Debian)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
    echo "console-deps: apt-get install chromium failed" >&2
    exit 1
  fi
  if [ ! -x /usr/bin/chromium ]; then
    echo "console-deps: chromium was installed but /usr/bin/chromium is not there" >&2
    exit 1
  fi
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "console-deps: node and npm are needed for the console's browser test (Node.js 18 or newer)" >&2
  exit 1
fi

if [ ! -d tests/console/node_modules/playwright-core ]; then
  echo "console-deps: npm ci --prefix tests/console" >&2
  npm ci --prefix tests/console --no-audit --no-fund --loglevel=error >/dev/null
fi
