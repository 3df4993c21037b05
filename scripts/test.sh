#!/usr/bin/env bash
# The whole test run: pytest (2 workers), ruff (lint and formatting) and mypy. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
# The web page test (tests/serving/test_web.py) drives Debian's chromium through Playwright; install
# it here when it is missing and we can (root with apt-get, as in CI). Elsewhere that test is skipped.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium for the browser test ..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
fi
status=0
python -m pytest -n 2 -q "$@" || status=$?
ruff check src tests benchmarks || status=$?
ruff format --check src tests benchmarks || status=$?
mypy || status=$?
exit $status
