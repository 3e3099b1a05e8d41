#!/usr/bin/env bash
# One command: install batchway with its dev tools, lint, type-check, and run the whole test
# suite on SQLite and PostgreSQL (127.0.0.1:5432, database "test"; see tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/lint-imports
exec .venv/bin/pytest "$@"
