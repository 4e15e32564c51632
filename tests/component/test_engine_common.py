"""The ``common`` role on netns hosts: wheelhouse push, venv, agents installed from
wheels; an unchanged wheelhouse changes nothing, a changed agent is re-pushed alone."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from labctl.connection import ConnectionPool
from labctl.engine import DeployOptions, deploy
from labctl.inventory import load_inventory
from labctl.testing.netns_hosts import NetnsHosts
from labctl.wheelhouse import copy_sources, ensure_wheelhouse, tree_key
from tests.conftest import need_root, need_tool

pytestmark = pytest.mark.component

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    need_root()
    need_tool("sshd")
    with NetnsHosts(count=1, workdir=tmp_path_factory.mktemp("commonfarm")) as hosts:
        yield hosts


def apply(farm, tmp_path, wheelhouse: Path):
    inv_path = farm.write_inventory(tmp_path / "inv.yml")
    inv = load_inventory(inv_path, {"lab_wheelhouse_dir": str(wheelhouse)})
    out = io.StringIO()
    with ConnectionPool({h.name: (h.address, h.port) for h in farm.hosts},
                        key_path=farm.key_path, known_hosts=farm.known_hosts) as pool:
        result = deploy(inv, pool, ROOT / "site.yml", DeployOptions(out=out))
        checks = {h.name: pool.get(h.name).run(
            "/opt/lab/venv/bin/python -c 'import agents, grpc, aiohttp, yaml, google.protobuf, "
            "cryptography; import agents._engine_marker as m; print(m.VALUE)'")
            for h in farm.hosts}
    return result, out.getvalue(), checks


def task_result(result, name: str, host: str) -> dict:
    for play in result.plays:
        for task in play["tasks"]:
            if task["name"] == f"common : {name}":
                return task["hosts"][host]
    raise AssertionError(f"task {name} not reported")


def project_copy(tmp_path: Path, marker_value: str) -> Path:
    root = tmp_path / f"src-{marker_value}"
    root.mkdir()
    copy_sources(ROOT, root)
    (root / "agents" / "_engine_marker.py").write_text(f"VALUE = {marker_value!r}\n")
    return root


def test_common_role_installs_agents_and_reinstalls_only_a_changed_agent(farm, tmp_path):
    home = tmp_path / "home"
    first_root = project_copy(tmp_path, "one")
    wheels_one = ensure_wheelhouse(first_root, home)
    assert ensure_wheelhouse(first_root, home) == wheels_one       # cached, not rebuilt
    assert wheels_one.name == tree_key(first_root)

    result, out, checks = apply(farm, tmp_path, wheels_one)
    assert result.ok, out
    for host in farm.hosts:
        assert checks[host.name].stdout.strip() == "one", checks[host.name].stderr
    again, out, _ = apply(farm, tmp_path, wheels_one)
    assert again.ok and again.changed == 0, out

    second_root = project_copy(tmp_path, "two")
    wheels_two = ensure_wheelhouse(second_root, home)
    assert wheels_two != wheels_one
    changed, out, checks = apply(farm, tmp_path, wheels_two)
    assert changed.ok, out
    host = farm.hosts[0].name
    pushed = task_result(changed, "push the wheelhouse (only files that differ travel)", host)
    assert pushed["changed_files"] == ["labctl-0.1.0-py3-none-any.whl"]
    assert task_result(changed, "reinstall the agents when their wheel changed", host)["status"] == "changed"
    for h in farm.hosts:
        assert checks[h.name].stdout.strip() == "two", checks[h.name].stderr
    final, out, _ = apply(farm, tmp_path, wheels_two)
    assert final.ok and final.changed == 0, out
    shutil.rmtree(home)
