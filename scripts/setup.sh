#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs batchway with the pinned versions of
# requirements.lock. Pass "dev" to add the test and lint tools.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
"$python" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"batchway needs Python 3.11 or newer, this is {sys.version.split()[0]}")
PY
[ -x .venv/bin/python ] || "$python" -m venv .venv
extra=""
[ "${1:-}" = "dev" ] && extra="[dev]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -c requirements.lock -e ".${extra}"
