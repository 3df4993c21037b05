#!/usr/bin/env bash
# The whole test run: pytest (2 workers), ruff and mypy. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
status=0
python -m pytest -n 2 -q "$@" || status=$?
ruff check src tests benchmarks || status=$?
mypy || status=$?
exit $status
