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
# the browser tests (tests/browser) drive Debian's chromium; install it when it is missing
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "installing chromium for the browser tests"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "chromium is missing and this is not root: the browser tests will be skipped" >&2
    fi
fi
exec .venv/bin/pytest "$@"
