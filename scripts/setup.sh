#!/usr/bin/env bash
# Creates .venv beside the project and installs passbridge with its test tools.
# Idempotent: a second run only re-installs the project itself.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
# pip's and setuptools' chatter goes to a log, shown only if the install fails,
# so that serve.sh's first lines are the service's own.
if ! .venv/bin/python -m pip install --quiet -e ".[test]" >.venv/setup.log 2>&1; then
  cat .venv/setup.log >&2
  exit 1
fi
# The console's browser tests drive Debian's chromium (Playwright cannot download
# browsers here). Installed only when running as root (CI does); elsewhere the
# browser tests skip with a message saying so.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "setup: could not install chromium; the browser tests will skip" >&2
fi
