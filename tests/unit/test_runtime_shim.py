"""The per-container shim's start-up cost and its exit record, and what the runtime
leaves to the network plugin: every container start runs a shim and every sandbox
makes a netns, so each import and each program there is paid once per pod."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agents.runtime import PodSandboxConfig, Runtime
from agents.runtime import runtime as runtime_module
from agents.runtime.shim import exit_record_json, write_file_atomically
from agents.runtime.state import read_json

pytestmark = pytest.mark.unit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAVY = {"subprocess", "threading", "signal", "enum", "re", "json", "pathlib", "tempfile",
         "typing", "datetime", "runpy", "importlib", "argparse", "random", "contextlib"}


def test_the_shim_entry_imports_no_heavy_module():
    probe = runtime_module.SHIM_ENTRY.replace("main()", "print(' '.join(sys.modules))")
    out = subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; {probe}"], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": ROOT}, timeout=30, check=True).stdout.split()
    assert "agents.runtime.shim" in out
    assert HEAVY.isdisjoint(out), sorted(HEAVY & set(out))


@pytest.mark.parametrize("code, finished, oom, pid", [
    (0, 1795737334.8793702, False, 4179), (137, 12.5, True, 1), (255, 0.0, False, 0)])
def test_exit_record_is_what_json_dumps_with_sorted_keys_gives(code, finished, oom, pid):
    text = exit_record_json(code, finished, oom, pid)
    expected = {"exit_code": code, "finished_at": finished, "oom_killed": oom, "pid": pid}
    assert text == json.dumps(expected, sort_keys=True) + "\n"
    assert json.loads(text) == expected


def test_exit_record_is_replaced_atomically(tmp_path):
    path = tmp_path / "exit.json"
    write_file_atomically(str(path), exit_record_json(3, 1.5, False, 9))
    assert read_json(path) == {"exit_code": 3, "finished_at": 1.5, "oom_killed": False, "pid": 9}
    assert os.listdir(tmp_path) == ["exit.json"]  # no temporary left


class PluginBringingUpLo:
    brings_up_loopback = True

    def setup(self, sandbox_id: str, netns_path: str) -> str:
        return "10.244.9.2"

    def teardown(self, sandbox_id: str, netns_path: str) -> None:
        pass


class PluginWithoutLo(PluginBringingUpLo):
    brings_up_loopback = False


@pytest.mark.parametrize("plugin, runtime_does_lo", [
    (PluginBringingUpLo(), False), (PluginWithoutLo(), True), (None, True)])
def test_the_runtime_brings_up_lo_unless_the_network_plugin_does(tmp_path, monkeypatch,
                                                                  plugin, runtime_does_lo):
    calls = []

    def create(name: str, loopback_up: bool = True) -> str:
        calls.append(loopback_up)
        return str(tmp_path / name)  # stands in for /run/netns/NAME

    monkeypatch.setattr(runtime_module.netns, "create", create)
    rt = Runtime(root=tmp_path / "rt", image_store=tmp_path / "images", network=plugin,
                 log_root=tmp_path / "logs")
    sid = rt.run_pod_sandbox(PodSandboxConfig(uid="u1", namespace="ns", name="p"))
    assert calls == [runtime_does_lo]
    assert rt.pod_sandbox_status(sid).ip == ("10.244.9.2" if plugin else "")


def test_listing_one_pods_sandbox_or_one_sandboxs_containers_skips_the_others_records(
        tmp_path, monkeypatch):
    from agents.runtime.model import ContainerConfig
    from agents.runtime.state import write_json

    rt = Runtime(root=tmp_path / "rt", image_store=tmp_path / "images", network=None,
                 log_root=tmp_path / "logs")
    sids = {uid: rt.run_pod_sandbox(PodSandboxConfig(uid=uid, namespace="ns", name=uid,
                                                     host_network=True))
            for uid in ("u1", "u2", "u3")}
    for uid, sid in sids.items():
        cdir = tmp_path / "rt" / "containers" / f"c{uid[1]}"
        cdir.mkdir(parents=True)
        write_json(cdir / "container.json", {
            "id": cdir.name, "sandbox_id": sid, "created_at": 1.0,
            "config": ContainerConfig(name="main", image="lab/busybox").to_dict()})
    assert len(rt.list_pod_sandboxes()) == 3 and len(rt.list_containers()) == 3  # learns
    reads = []
    real_read = runtime_module.read_json
    monkeypatch.setattr(runtime_module, "read_json",
                        lambda path: reads.append(path.name) or real_read(path))
    [only] = rt.list_pod_sandboxes("u2")
    assert (only.id, only.metadata.uid, reads) == (sids["u2"], "u2", ["sandbox.json"])
    reads.clear()
    [mine] = rt.list_containers(sids["u2"])
    assert mine.id == "c2" and reads.count("container.json") == 1
    # A sandbox made by another Runtime object (unknown here) is still found.
    other = Runtime(root=tmp_path / "rt", image_store=tmp_path / "images", network=None,
                    log_root=tmp_path / "logs")
    new = other.run_pod_sandbox(PodSandboxConfig(uid="u4", namespace="ns", name="u4",
                                                 host_network=True))
    assert [s.id for s in rt.list_pod_sandboxes("u4")] == [new]
    rt.remove_pod_sandbox(sids["u2"])
    assert rt.list_pod_sandboxes("u2") == [] and rt.list_containers(sids["u2"]) == []
