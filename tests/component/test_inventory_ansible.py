"""labctl reads inventories exactly as ansible-core's `ansible-inventory --list` does.

Same hosts, same groups (direct hosts and children), same variable values per host,
with and without -e, for the shipped inventories and for one that uses group_vars/ and
host_vars/ (files and directories), children of children, host ranges and ports.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labctl.inventory import load_inventory, parse_extra_vars
from labctl.inventory.export import ansible_list
from tests.conftest import need

pytestmark = pytest.mark.component

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ["default", "ha-stacked", "ha-external"]
EXTRA = ["lab_provider=libvirt cpus=2", '{"memory_mb": 1024, "nested": {"a": [1, 2]}}']


@pytest.fixture(scope="module")
def run_ansible(tmp_path_factory):
    """Run an ansible-core program from the venv with its state under a tmp dir."""
    home = tmp_path_factory.mktemp("ansible")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "ANSIBLE_HOME": str(home / "home"),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
    }

    def run(program: str, *args: str) -> str:
        path = Path(sys.executable).parent / program
        need(path.exists(), f"needs ansible-core's {program} in the venv")
        # cwd: an empty dir, so no ansible.cfg or playbook-adjacent vars dirs are picked up
        done = subprocess.run([str(path), *args], cwd=home, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


@pytest.fixture(scope="module")
def ansible_inventory(run_ansible):
    def run(path: Path, extra: list[str]) -> dict:
        args = ["-i", str(path), "--list"]
        for option in extra:
            args += ["-e", option]
        return json.loads(run_ansible("ansible-inventory", *args))

    return run


@pytest.fixture(scope="module")
def rich_inventory(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rich")
    files = {
        "lab.yml": """\
            all:
              vars:
                lab_network: 10.88.0.0/24
                level: all
                shadowed: inventory-all
              hosts:
                cp-1: {from_all_hosts: 1}
              children:
                k8s:
                  vars: {level: k8s, k8s_only: true}
                  children:
                    control_plane:
                      vars: {level: cp}
                      hosts:
                        cp-[1:3]:
                          cpus: 2
                    etcd:
                      children:
                        control_plane:
                    workers:
                      children:
                        big_workers:
                          vars: {level: big, memory_mb: 2048}
                          hosts:
                            w-[01:02]: {written: in-child}
                      hosts:
                        w-small:2222: {ansible_user: root}
                        w-01: {written: after-children}
            """,
        "group_vars/all.yml": "shadowed: group_vars-all\nlist_var: [1, 2]\n",
        "group_vars/k8s": "k8s_file: bare\n",
        "group_vars/workers/10-a.yml": "tier: a\nmerge: {x: 1}\n",
        "group_vars/workers/20-b.yaml": "tier: b\n",
        "group_vars/workers/skip.txt": "tier: skipped\n",
        "group_vars/big_workers.json": '{"json_var": 3}',
        "host_vars/cp-2.yml": "level: host-file\n",
        "host_vars/w-01/main.yml": "merge: {y: 2}\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "lab.yml"


@pytest.mark.parametrize("extra", [[], EXTRA], ids=["plain", "with-e"])
@pytest.mark.parametrize("which", [*SHIPPED, "rich"])
def test_same_hosts_groups_and_vars_as_ansible(ansible_inventory, rich_inventory, which, extra):
    path = rich_inventory if which == "rich" else REPO / "inventory" / f"{which}.yml"
    theirs = ansible_inventory(path, extra)
    extra_vars = parse_extra_vars(extra)
    inv = load_inventory(path, extra_vars)
    assert [p for p in inv.problems() if p.level == "error"] == []

    # hosts and every group's direct hosts and children
    assert set(theirs["_meta"]["hostvars"]) | _listed_hosts(theirs) == set(inv.hosts)
    for name, group in inv.groups.items():
        entry = theirs.get(name, {})
        if name != "all":
            assert entry.get("hosts", []) == group.direct_hosts, name
        assert entry.get("children", []) == group.children, name
    assert {k for k in theirs if k != "_meta"} <= set(inv.groups)

    # variables: Ansible's view = labctl's inventory vars with -e on top
    for host in inv.hosts:
        expected = theirs["_meta"]["hostvars"].get(host, {})
        assert {**inv.inventory_vars(host), **extra_vars} == expected, host
        # labctl's final view agrees on every other value (resources become ints)
        final = inv.hosts[host].vars
        same = [k for k in expected if k not in ("cpus", "memory_mb")]
        assert {k: final[k] for k in same} == {k: expected[k] for k in same}

    # and the JSON of `labctl inventory show --json` is Ansible's, plus the labctl object
    ours = ansible_list(inv)
    ours.pop("labctl")
    theirs["_meta"].pop("profile", None)
    assert ours == theirs


def test_rich_inventory_exercises_what_it_claims(rich_inventory):
    inv = load_inventory(rich_inventory)
    assert inv.groups["big_workers"].depth == 3
    assert inv.inventory_vars("w-01")["merge"] == {"y": 2}  # host_vars dir replaces the key
    assert inv.inventory_vars("w-02")["tier"] == "b"
    assert inv.inventory_vars("w-01")["written"] == "after-children"
    assert inv.inventory_vars("w-small")["ansible_port"] == 2222
    assert inv.inventory_vars("cp-1")["shadowed"] == "group_vars-all"


def _listed_hosts(listing: dict) -> set[str]:
    return {h for key, entry in listing.items() if key != "_meta" for h in entry.get("hosts", [])}


@pytest.mark.parametrize(
    "pattern",
    ["all", "workers:&k8s", "k8s:!big_workers", "w-*:cp-1", "control_plane[1:]:workers[0]", "~cp-[12]"],
)
def test_host_patterns_select_what_ansible_selects(run_ansible, rich_inventory, pattern):
    out = run_ansible("ansible", pattern, "-i", str(rich_inventory), "--list-hosts")
    theirs = [line.strip() for line in out.splitlines()[1:] if line.strip()]
    assert load_inventory(rich_inventory).hosts_matching(pattern) == theirs
