#!/usr/bin/env bash
# One command: install batchway and run the tutorial batch through it, offline, on the
# embedded default (SQLite and files in ./batchway-data, a clearly labelled simulated provider).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/batchway demo --file examples/batch.jsonl "$@"
