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
# The full run also drives the API server's kubectl and Python-client scenarios on our
# own etcd agent (the run above used real etcd 3.4).
if [[ $rc -eq 0 && $# -eq 0 ]]; then
    echo "test.sh: the API server's component tests again, on our etcd agent"
    set +e
    LABCTL_APISERVER_ETCD=agent .venv/bin/python -m pytest -p no:cacheprovider \
        tests/component/test_apiserver_kubectl.py tests/component/test_apiserver_pyclient.py \
        tests/component/test_apiserver_semantics.py
    rc=$?
    set -e
fi
exit $rc
