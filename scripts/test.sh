#!/usr/bin/env bash
# The whole test suite: set-up, lint, type check, tests. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check passbridge tests scripts
.venv/bin/mypy passbridge
exec .venv/bin/python -m pytest -q "$@"
