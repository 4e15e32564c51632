"""The ``common`` role on netns hosts: bundles pushed and unpacked into the venv; an
unchanged wheelhouse changes nothing, a changed agent is re-pushed and swapped in alone
(the dependency bundle neither travels nor is unpacked again)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from labctl.connection import ConnectionPool
from labctl.engine import DeployOptions, deploy
from labctl.inventory import load_inventory
from labctl.state import labctl_home
from labctl.testing.netns_hosts import NetnsHosts
from labctl.wheelhouse import AGENTS_BUNDLE, copy_sources, ensure_wheelhouse
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
        # the shipped site's common play alone: the farm's hosts are in no group, and the
        # site's other plays on `all` (pod network, API server balancer) need a cluster
        site = tmp_path / "site.yml"
        site.write_text("- name: common setup of every host\n  hosts: all\n  roles: [common]\n")
        result = deploy(inv, pool, site, DeployOptions(out=out, roles_path=(ROOT / "roles",)))
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


def farm_bundles(farm, host: str) -> list[str]:
    """The unpacked bundle directories on ``host``."""
    with ConnectionPool({h.name: (h.address, h.port) for h in farm.hosts},
                        key_path=farm.key_path, known_hosts=farm.known_hosts) as pool:
        return pool.get(host).run("ls -1 /opt/lab/venv/lab").stdout.split()


def project_copy(tmp_path: Path, marker_value: str) -> Path:
    root = tmp_path / f"src-{marker_value}"
    root.mkdir()
    copy_sources(ROOT, root)
    (root / "agents" / "_engine_marker.py").write_text(f"VALUE = {marker_value!r}\n")
    return root


def share_dependency_caches(home: Path) -> None:
    """Reuse the lab machine's dependency wheels and bundle (if built): they are keyed by
    the requirements, which the test does not change, and building them needs PyPI."""
    (home / "wheelhouse").mkdir(parents=True)
    shared = labctl_home() / "wheelhouse"
    if shared.is_dir():
        for d in shared.iterdir():
            if d.name.startswith(("deps-", "bundle-deps-")) and (d / ".complete").exists():
                (home / "wheelhouse" / d.name).symlink_to(d)


def test_common_role_installs_agents_and_reinstalls_only_a_changed_agent(farm, tmp_path):
    home = tmp_path / "home"
    share_dependency_caches(home)
    first_root = project_copy(tmp_path, "one")
    wheels_one = ensure_wheelhouse(first_root, home)
    assert ensure_wheelhouse(first_root, home) == wheels_one       # cached, not rebuilt
    agents_one = (wheels_one / AGENTS_BUNDLE).read_bytes()

    result, out, checks = apply(farm, tmp_path, wheels_one)
    assert result.ok, out
    for host in farm.hosts:
        assert checks[host.name].stdout.strip() == "one", checks[host.name].stderr
    again, out, _ = apply(farm, tmp_path, wheels_one)
    assert again.ok and again.changed == 0, out

    # a rebuilt wheelhouse of the same sources has the same bytes: nothing to do
    (first_root / "agents" / "__pycache__").mkdir(exist_ok=True)
    (first_root / "agents" / "__pycache__" / "junk.cpython-311.pyc").write_bytes(b"junk")
    shutil.rmtree(wheels_one)
    rebuilt = ensure_wheelhouse(first_root, home)
    assert rebuilt == wheels_one and (rebuilt / AGENTS_BUNDLE).read_bytes() == agents_one
    again, out, _ = apply(farm, tmp_path, rebuilt)
    assert again.ok and again.changed == 0, out

    second_root = project_copy(tmp_path, "two")
    wheels_two = ensure_wheelhouse(second_root, home)
    assert wheels_two != wheels_one
    changed, out, checks = apply(farm, tmp_path, wheels_two)
    assert changed.ok, out
    host = farm.hosts[0].name
    status = {name: task_result(changed, name, host)["status"] for name in (
        "push the dependency bundle", "push the agents bundle", "unpack the dependency bundle",
        "unpack the agents bundle", "put the unpacked bundles on the virtual environment's path",
        "remove bundles no longer on the path")}
    assert status == {"push the dependency bundle": "ok", "push the agents bundle": "changed",
                      "unpack the dependency bundle": "ok", "unpack the agents bundle": "changed",
                      "put the unpacked bundles on the virtual environment's path": "changed",
                      "remove bundles no longer on the path": "changed"}, out
    for h in farm.hosts:
        assert checks[h.name].stdout.strip() == "two", checks[h.name].stderr
        left = farm_bundles(farm, h.name)
        assert sorted(n.split("-")[0] for n in left) == ["agents", "deps"], left
    final, out, _ = apply(farm, tmp_path, wheels_two)
    assert final.ok and final.changed == 0, out
    shutil.rmtree(home)
