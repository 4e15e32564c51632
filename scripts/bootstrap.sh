#!/usr/bin/env bash
# Installs what labctl needs on a Debian 12 machine (as root): apt packages and .venv.
# Idempotent and quick when everything is already there.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

say() { printf '[bootstrap] %s\n' "$*"; }

missing=()
while read -r pkg; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < scripts/apt-packages.txt
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "bootstrap: missing Debian packages: ${missing[*]}; run as root or install them" >&2
        exit 1
    fi
    say "installing ${#missing[@]} Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# The venv uses Debian's Python so the lab machine and the hosts run the same 3.11.
stamp=.venv/.labctl-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    say "creating .venv and installing labctl with its test dependencies"
    [[ -x .venv/bin/python ]] || /usr/bin/python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[agents,test]'
    echo "$want" > "$stamp"
fi
say "ready: $(.venv/bin/python --version), labctl $(.venv/bin/labctl --version | cut -d' ' -f2)"
