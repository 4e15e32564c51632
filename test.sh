#!/usr/bin/env bash
# Quick start, step 2 (Debian 12, as root): install what the tests need, start the
# daemons they need, run ruff and every test tier, and stop what it started.
# Extra arguments go to pytest, e.g. ./test.sh -m unit
set -euo pipefail
top=$(cd "$(dirname "$0")" && pwd)
cd "$top"
scripts/bootstrap.sh
. scripts/daemons.sh
start_daemons
trap stop_started_daemons EXIT

.venv/bin/ruff check .
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    echo "test.sh: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit $rc
