"""LibvirtProvider against libvirt's in-process test driver (``test:///default``).

No daemons, no qemu: the driver keeps domains and networks in memory, so this checks
the provider's bookkeeping — names, records, idempotent destroy, state mapping,
network checks — while the vm tier checks real VMs.
"""

from __future__ import annotations

import ipaddress
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from labctl.errors import LabError
from labctl.providers import libvirt as lv
from labctl.providers.base import HostSpec, NetworkSpec

pytestmark = pytest.mark.unit

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests labctl"


@pytest.fixture
def provider(tmp_path, monkeypatch):
    lab = f"u{uuid.uuid4().hex[:8]}"  # test:///default is shared by the whole process
    image_dir = tmp_path / "image"
    image_dir.mkdir()
    for name in ("base.qcow2", "vmlinuz", "initrd.img"):
        (image_dir / name).write_bytes(b"x")
    image = SimpleNamespace(qcow2=image_dir / "base.qcow2", kernel=image_dir / "vmlinuz", initrd=image_dir / "initrd.img")
    monkeypatch.setattr(lv.LibvirtProvider, "_make_overlay", staticmethod(lambda base, overlay: overlay.write_bytes(b"o")))
    monkeypatch.setattr(lv, "ensure_traversable", lambda *a, **k: None)
    p = lv.LibvirtProvider(tmp_path / "home" / "labs" / lab, default_uri="test:///default", image=image)
    net = NetworkSpec(lab, ipaddress.ip_network("10.77.0.0/24"), "10.77.0.1", f"lc-{lab}")
    yield p, net
    p.destroy_network(net)
    p.close()


def spec(net, name="n1", **vars):
    return HostSpec(name, "10.77.0.5", net, 1, 256, KEY, vars=vars)


def test_create_defines_and_starts_a_domain_and_records_what_it_made(provider):
    p, net = provider
    p.ensure_network(net)
    record = p.create(spec(net, libvirt_virt_type="qemu"))
    assert record.provider == "libvirt" and record.address == "10.77.0.5"
    d = record.details
    assert d["domain"] == lv.domain_name(p.lab_name, "n1") and d["uri"] == "test:///default"
    assert d["virt_type"] == "qemu"
    assert Path(d["overlay"]).exists()
    assert p.state(record) == "running"
    xml = p._conn("test:///default").lookupByName(d["domain"]).XMLDesc(0)
    assert "systemd.hostname=n1" in xml and lv.network_name(p.lab_name) in xml
    assert p.known_uris() == ["test:///default"]


def test_stop_start_destroy_and_destroy_again(provider):
    p, net = provider
    record = p.create(spec(net, libvirt_virt_type="qemu"))
    p.stop(record, timeout_s=5)
    assert p.state(record) == "stopped"
    p.start(record)
    assert p.state(record) == "running"
    p.destroy(record)
    assert p.state(record) == "missing"
    assert not Path(record.details["overlay"]).exists()
    p.destroy(record)  # idempotent
    with pytest.raises(LabError, match="VM is gone"):
        p.start(record)


def test_create_replaces_leftovers_of_an_interrupted_run(provider):
    p, net = provider
    first = p.create(spec(net, libvirt_virt_type="qemu"))
    again = p.create(spec(net, libvirt_virt_type="qemu"))  # same name: old domain replaced
    assert again.details["domain"] == first.details["domain"]
    assert p.state(again) == "running"


def test_network_is_reused_but_a_different_one_is_refused(provider):
    p, net = provider
    p.ensure_network(net)
    p._networks_ready.clear()
    p.ensure_network(net)  # same spec: fine
    p._networks_ready.clear()
    other = NetworkSpec(net.lab_name, net.cidr, "10.77.0.9", net.bridge)
    with pytest.raises(LabError, match="labctl down"):
        p.ensure_network(other)


def test_destroy_network_removes_it_everywhere_it_was_made(provider):
    p, net = provider
    p.ensure_network(net)
    conn = p._conn("test:///default")
    assert lv.network_name(net.lab_name) in conn.listNetworks()
    p.destroy_network(net)
    assert lv.network_name(net.lab_name) not in conn.listNetworks() + conn.listDefinedNetworks()
    assert p.known_uris() == []


def test_remote_uris_are_refused_with_the_reason(provider):
    p, net = provider
    with pytest.raises(LabError, match="remote hypervisor"):
        p.create(spec(net, libvirt_uri="qemu+ssh://hv2/system"))
