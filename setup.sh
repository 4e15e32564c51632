#!/usr/bin/env bash
# Quick start, step 1 (Debian 12, as root): install everything labctl needs, build the
# base image (cached) and bring up the default lab. Extra arguments go to `labctl up`,
# e.g. ./setup.sh -e lab_provider=libvirt
set -euo pipefail
top=$(cd "$(dirname "$0")" && pwd)
cd "$top"
scripts/bootstrap.sh
. scripts/daemons.sh
start_daemons   # libvirtd/virtlogd keep running for the lab's VMs
.venv/bin/labctl inventory validate -i inventory/default.yml "$@"
.venv/bin/labctl up -i inventory/default.yml "$@"
echo
echo "The lab is up: .venv/bin/labctl status -i inventory/default.yml"
