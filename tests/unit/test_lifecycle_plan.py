"""Pure parts of the lifecycle: the convergence plan, names, records, lab file, status table."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import pytest

from labctl import hostrecords, lifecycle
from labctl.errors import LabError
from labctl.providers.base import HostRecord
from labctl.state import LabState

pytestmark = pytest.mark.unit

FP = {"provider": "nspawn", "address": "10.0.0.5", "cpus": 1, "memory_mb": 512, "libvirt_uri": None}


def rec(name, **details):
    return HostRecord(name, "nspawn", "10.0.0.5", {"spec": FP, **details})


def test_plan_for_a_fresh_lab_creates_everything():
    plan = lifecycle.plan_hosts({"a": FP, "b": FP}, {}, {})
    assert plan == lifecycle.Plan(create=("a", "b"))
    assert plan.changes


def test_plan_rerun_on_an_unchanged_running_lab_changes_nothing():
    plan = lifecycle.plan_hosts({"a": FP}, {"a": rec("a")}, {"a": "running"})
    assert plan == lifecycle.Plan(keep=("a",))
    assert not plan.changes


def test_plan_adds_new_and_removes_dropped_hosts():
    records = {"a": rec("a"), "old": rec("old")}
    plan = lifecycle.plan_hosts({"a": FP, "new": FP}, records, {"a": "running", "old": "running"})
    assert (plan.create, plan.keep, plan.remove) == (("new",), ("a",), ("old",))


def test_plan_recreates_missing_half_made_or_changed_hosts_and_starts_stopped_ones():
    changed = dict(FP, memory_mb=1024)
    records = {"gone": rec("gone"), "half": rec("half", pending=True), "chg": rec("chg"), "off": rec("off")}
    states = {"gone": "missing", "half": "running", "chg": "running", "off": "stopped"}
    plan = lifecycle.plan_hosts({"gone": FP, "half": FP, "chg": changed, "off": FP}, records, states)
    assert plan.recreate == ("gone", "half", "chg")
    assert plan.start == ("off",)


def test_bridge_names_fit_linux_limits_and_differ_per_lab():
    names = {lifecycle.bridge_name(n) for n in ("default", "ha-external", "a" * 20, "a" * 19 + "b", "x_y")}
    assert len(names) == 5
    assert all(len(n) <= 15 for n in names)
    assert lifecycle.bridge_name("default") == "lc-default"


def test_host_fingerprint_ignores_groups_but_tracks_address_and_size():
    class H:
        address, cpus, memory_mb, groups, vars = "10.0.0.5", 1, 512, ("x",), {"libvirt_uri": "qemu:///system"}

    assert lifecycle.host_fingerprint("nspawn", H) == FP
    assert lifecycle.host_fingerprint("libvirt", H)["libvirt_uri"] == "qemu:///system"


def test_host_records_round_trip_atomically(tmp_path):
    record = HostRecord("n1", "libvirt", "10.1.0.2", {"domain": "labctl-x-n1", "spec": FP})
    path = hostrecords.save(tmp_path / "hosts", record)
    assert path.name == "n1.json" and json.loads(path.read_text())["details"]["domain"] == "labctl-x-n1"
    assert hostrecords.load(tmp_path / "hosts", "n1") == record
    (tmp_path / "hosts" / ".n2.abc.tmp").write_text("{half")  # a crashed write
    assert list(hostrecords.load_all(tmp_path / "hosts")) == ["n1"]
    assert not [p for p in os.listdir(tmp_path / "hosts") if p.startswith(".n1")]
    hostrecords.remove(tmp_path / "hosts", "n1")
    hostrecords.remove(tmp_path / "hosts", "n1")  # idempotent
    assert hostrecords.load_all(tmp_path / "hosts") == {}
    assert hostrecords.load_all(tmp_path / "nothing") == {}


def test_corrupt_host_record_is_a_clear_error(tmp_path):
    (tmp_path / "n1.json").write_text("{not json")
    with pytest.raises(LabError, match=r"n1\.json: not a valid host record"):
        hostrecords.load_all(tmp_path)
    with pytest.raises(LabError, match="invalid host name"):
        hostrecords.record_path(tmp_path, "../x")


def test_lab_info_round_trips(tmp_path):
    state = LabState("demo", tmp_path / "demo")
    state.root.mkdir()
    info = lifecycle.LabInfo(
        "demo", "libvirt", lifecycle.network_spec("demo", ipaddress.ip_network("10.9.0.0/24"), "10.9.0.1"), "inv.yml"
    )
    lifecycle.save_lab_info(state, info)
    assert lifecycle.load_lab_info(state) == info
    assert lifecycle.load_lab_info(LabState("x", tmp_path / "x")) is None


def test_lab_lock_refuses_a_second_holder(tmp_path):
    state = LabState("demo", tmp_path / "demo")
    with lifecycle.lab_lock(state), pytest.raises(LabError, match="busy"), lifecycle.lab_lock(state):
        pass


def test_status_table():
    rows = [
        {"host": "cp-1", "provider": "nspawn", "state": "running", "address": "10.0.0.2", "groups": ["control_plane", "etcd"]},
        {"host": "worker-1", "provider": "nspawn", "state": "absent", "address": "10.0.0.3", "groups": []},
    ]
    lines = lifecycle.format_status_table(rows).splitlines()
    assert lines[0].split() == ["HOST", "PROVIDER", "STATE", "ADDRESS", "GROUPS"]
    assert lines[1].split() == ["cp-1", "nspawn", "running", "10.0.0.2", "control_plane,etcd"]
    assert lines[2].split() == ["worker-1", "nspawn", "absent", "10.0.0.3"]


def test_mounts_under_the_lab_are_found_so_down_never_deletes_through_them(tmp_path):
    mountinfo = (
        "22 1 0:21 / / rw - ext4 /dev/vda rw\n"
        "773 27 0:175 / /srv/labs/demo/hosts/n-2/merged rw - overlay overlay rw,lowerdir=/x\n"
        "774 27 0:176 / /srv/labs/demo2/merged rw - overlay overlay rw\n"
        "775 27 0:177 / /srv/labs/demo/with\\040space rw - tmpfs tmpfs rw\n"
    )
    assert lifecycle.mounts_under(Path("/srv/labs/demo"), mountinfo) == [
        "/srv/labs/demo/hosts/n-2/merged", "/srv/labs/demo/with space"
    ]
    assert lifecycle.mounts_under(tmp_path, Path("/proc/self/mountinfo").read_text()) == []
