#!/bin/sh
# Regenerate the etcd v3 API stubs. Protos import each other by their path from the
# repository root, so the generated modules import as `agents.etcdapi.*` as they are.
set -eu
cd "$(dirname "$0")/../.."
.venv/bin/python -m grpc_tools.protoc -I . \
    --python_out=. --grpc_python_out=. --pyi_out=. \
    agents/etcdapi/kv.proto agents/etcdapi/auth.proto agents/etcdapi/rpc.proto
