"""``up``/``down``/``status`` orchestration against an in-memory provider (no hosts)."""

from __future__ import annotations

import ipaddress
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from labctl import hostrecords, lifecycle
from labctl.errors import LabError
from labctl.providers.base import HostRecord, Provider
from labctl.providers.readiness import WAITED_STEPS
from labctl.state import LabState

pytestmark = pytest.mark.unit


class FakeProvider(Provider):
    """Hosts are entries in a dict shared by every instance (like a real hypervisor)."""

    name = "fake"
    hosts: dict[str, str] = {}
    networks: set[str] = set()
    calls: list[tuple[str, str]] = []
    fail_create: set[str] = set()
    interrupt_create: set[str] = set()
    lock = threading.Lock()

    def ensure_network(self, net):
        self.networks.add(net.bridge)

    def destroy_network(self, net):
        self.networks.discard(net.bridge)

    def create(self, spec):
        with self.lock:
            self.calls.append(("create", spec.name))
        if spec.name in self.interrupt_create:
            raise KeyboardInterrupt
        if spec.name in self.fail_create:
            raise LabError(f"cannot create {spec.name}")
        self.hosts[spec.name] = "running"
        return HostRecord(spec.name, self.name, spec.address, {"made": True})

    def state(self, record):
        return self.hosts.get(record.name, "missing")

    def start(self, record):
        self.calls.append(("start", record.name))
        self.hosts[record.name] = "running"
        return record

    def stop(self, record):
        self.hosts[record.name] = "stopped"

    def destroy(self, record):
        with self.lock:
            self.calls.append(("destroy", record.name))
        self.hosts.pop(record.name, None)

    def console_log(self, record):
        return self.lab_root / "logs" / f"{record.name}.log"


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    FakeProvider.hosts, FakeProvider.networks, FakeProvider.calls = {}, set(), []
    FakeProvider.fail_create, FakeProvider.interrupt_create = set(), set()
    import labctl.images

    monkeypatch.setattr(labctl.images, "ensure_base_image", lambda progress=None: None)
    probes = {step: (lambda target, budget: "") for step in WAITED_STEPS}
    monkeypatch.setattr(lifecycle, "readiness_probes", lambda *a: probes)
    return tmp_path


def inventory(*names, memory_mb=512):
    net = ipaddress.ip_network("10.66.0.0/24")
    hosts = {
        n: SimpleNamespace(address=f"10.66.0.{10 + ord(n[0]) - ord('a')}", cpus=1, memory_mb=memory_mb, groups=("g",), vars={})
        for n in names
    }
    return SimpleNamespace(lab_name="fake", provider="fake", network=net, gateway="10.66.0.1", hosts=hosts, path="")


def up(inv):
    opts = lifecycle.UpOptions(deploy=False, verify=False, progress=None)
    return lifecycle.up(inv, opts, provider_factory=lambda name, root: FakeProvider(root))


def down(**kw):
    return lifecycle.down("fake", progress=None, provider_factory=lambda name, root: FakeProvider(root), **kw)


def test_up_creates_records_then_rerun_changes_nothing(lab):
    first = up(inventory("a", "b", "c"))
    assert sorted(first.plan.create) == ["a", "b", "c"]
    assert set(first.ready_at) == {"a", "b", "c"}
    assert {"image", "network", "create", "ready", "total"} <= set(first.phases)
    records = hostrecords.load_all(LabState.for_lab("fake").hosts_dir)
    assert sorted(records) == ["a", "b", "c"]
    assert records["a"].details["made"] and not records["a"].details.get("pending")
    assert records["a"].details["groups"] == ["g"]
    FakeProvider.calls.clear()
    second = up(inventory("a", "b", "c"))
    assert not second.plan.changes and FakeProvider.calls == []


def test_up_converges_on_inventory_changes(lab):
    up(inventory("a", "b"))
    FakeProvider.hosts["b"] = "stopped"
    result = up(inventory("b", "c"))
    assert (result.plan.create, result.plan.start, result.plan.remove) == (("c",), ("b",), ("a",))
    assert sorted(FakeProvider.hosts) == ["b", "c"]
    result = up(inventory("b", "c", memory_mb=1024))
    assert sorted(result.plan.recreate) == ["b", "c"]


def test_failed_create_is_reported_and_the_rest_stays_for_resume(lab):
    FakeProvider.fail_create = {"b"}
    with pytest.raises(LabError, match="(?s)creating hosts failed for 1 host.*b: cannot create b"):
        up(inventory("a", "b"))
    records = hostrecords.load_all(LabState.for_lab("fake").hosts_dir)
    assert records["b"].details.get("pending")  # `down` can still find it
    FakeProvider.fail_create = set()
    result = up(inventory("a", "b"))
    assert result.plan.keep == ("a",) and result.plan.recreate == ("b",)


def test_interrupted_up_is_resumed_by_up_and_removed_by_down(lab):
    FakeProvider.interrupt_create = {"b"}
    with pytest.raises(KeyboardInterrupt):
        up(inventory("a", "b", "c"))
    hosts_dir = LabState.for_lab("fake").hosts_dir
    assert sorted(hostrecords.load_all(hosts_dir)) == ["a", "b", "c"]
    FakeProvider.interrupt_create = set()
    result = up(inventory("a", "b", "c"))
    assert "b" in result.plan.recreate
    result = down()
    assert result.removed == ["a", "b", "c"]
    assert FakeProvider.hosts == {} and FakeProvider.networks == set()
    assert not LabState.for_lab("fake").root.exists()


def test_down_keep_state_keeps_key_and_pki_only(lab):
    up(inventory("a"))
    state = LabState.for_lab("fake")
    (state.pki_dir / "ca.pem").write_text("ca")
    down(keep_state=True)
    assert state.private_key.exists() and (state.pki_dir / "ca.pem").exists()
    assert not state.hosts_dir.exists() and not state.known_hosts.exists()
    assert not (state.root / lifecycle.LAB_FILE).exists()
    assert down().removed == []  # nothing left to remove, and that is fine


def test_status_rows_merge_records_and_inventory(lab):
    up(inventory("a"))
    FakeProvider.hosts["a"] = "stopped"
    rows = lifecycle.status("fake", inventory("a", "b"), provider_factory=lambda n, r: FakeProvider(r))
    assert rows == [
        {"host": "a", "provider": "fake", "state": "stopped", "address": "10.66.0.10", "groups": ["g"]},
        {"host": "b", "provider": "fake", "state": "absent", "address": "10.66.0.11", "groups": ["g"]},
    ]


def test_find_record_names_the_known_hosts(lab):
    up(inventory("a"))
    assert lifecycle.find_record("fake", "a").address == "10.66.0.10"
    with pytest.raises(LabError, match=r"no host 'zz' \(hosts: a\)"):
        lifecycle.find_record("fake", "zz")


def test_lab_names_lists_labs(lab):
    up(inventory("a"))
    assert lifecycle.lab_names() == ["fake"]
    assert isinstance(LabState.for_lab("fake").root, Path)
