#!/usr/bin/env bash
# Runs the service on its embedded defaults: the example site, a SQLite file
# under ./passbridge-data, simulated radios (--simulate), 127.0.0.1:8080; prints
# a single-use console sign-in link for the example site admin (alice).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/passbridge serve --site examples/site.yaml --db passbridge-data/passbridge.sqlite3 --host 127.0.0.1 --port "${PORT:-8080}" --simulate --console-link alice "$@"
