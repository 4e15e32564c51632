"""Rendering of the libvirt domain/network XML and the guest kernel command line."""

from __future__ import annotations

import ipaddress
import json
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from labctl.errors import LabError
from labctl.providers import libvirt as lv
from labctl.providers.base import HostSpec, NetworkSpec

pytestmark = pytest.mark.unit

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests labctl"
NET = NetworkSpec("demo", ipaddress.ip_network("10.77.0.0/24"), "10.77.0.1", "lc-demo")


def spec(name="node-1", address="10.77.0.11", key=KEY, **kw) -> HostSpec:
    return HostSpec(name=name, address=address, network=NET, cpus=2, memory_mb=384, public_key=key, **kw)


def params(virt_type="qemu", cmdline=None, overlay="/lab/vms/node-1.qcow2") -> lv.DomainParams:
    return lv.DomainParams(
        lab_name="demo",
        host_name="node-1",
        virt_type=virt_type,
        cpus=2,
        memory_mb=384,
        kernel=Path("/img/vmlinuz"),
        cmdline=cmdline or lv.kernel_cmdline(spec()),
        overlay=Path(overlay),
        console_log=Path("/lab/logs/node-1.console.log"),
        network_name=lv.network_name("demo"),
        mac=lv.mac_address("demo", "node-1"),
    )


def test_cmdline_carries_hostname_static_address_and_quoted_key():
    cmdline = lv.kernel_cmdline(spec())
    words = shlex.split(cmdline)  # the kernel splits like a shell: quotes keep the key whole
    assert "systemd.hostname=node-1" in words
    assert "ip=10.77.0.11::10.77.0.1:255.255.255.0::eth0:off" in words
    assert f"systemd.set_credential=ssh.authorized_keys.root:{KEY}" in words
    assert {"console=ttyS0", "net.ifnames=0"} <= set(words)
    assert f'"systemd.set_credential=ssh.authorized_keys.root:{KEY}"' in cmdline


def test_cmdline_mounts_the_nvme_root_without_an_initrd():
    words = shlex.split(lv.kernel_cmdline(spec()))
    # the kernel itself mounts root: it must wait for the (asynchronously probed) drive
    assert {"root=/dev/nvme0n1", "rootfstype=ext4", "rootwait", "rw"} <= set(words)
    assert not any(w.startswith(("rd.", "initrd")) for w in words)


def test_cmdline_netmask_follows_the_lab_network():
    net = NetworkSpec("demo", ipaddress.ip_network("10.8.0.0/16"), "10.8.0.1", "lc-demo")
    s = HostSpec("a", "10.8.3.4", net, 1, 256, KEY)
    assert "ip=10.8.3.4::10.8.0.1:255.255.0.0::eth0:off" in lv.kernel_cmdline(s)


@pytest.mark.parametrize("bad", ['ssh-ed25519 AAAA"x', "ssh-ed25519 AAAA\nx", ""])
def test_cmdline_rejects_keys_that_would_break_quoting(bad):
    with pytest.raises(LabError, match="public key"):
        lv.kernel_cmdline(spec(key=bad))


def test_cmdline_rejects_names_that_are_not_hostnames():
    with pytest.raises(LabError, match="hostname"):
        lv.kernel_cmdline(spec(name="bad_name"))


def test_tcg_domain_has_capped_translation_cache_and_default_cpu():
    root = ET.fromstring(lv.render_domain_xml(params("qemu")))
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "labctl-demo-node-1"
    tb = root.find("features/tcg/tb-cache")
    assert tb is not None and tb.get("unit") == "MiB" and tb.text == "128"
    assert root.find("cpu") is None  # mode='maximum' made TCG boots ~70 % slower
    assert root.find("features/acpi") is not None


def test_kvm_domain_has_no_tcg_section():
    root = ET.fromstring(lv.render_domain_xml(params("kvm")))
    assert root.get("type") == "kvm"
    assert root.find("features/tcg") is None


QEMU_NS = "{http://libvirt.org/schemas/domain/qemu/1.0}"


def qemu_args(root) -> list[str]:
    return [a.get("value") for a in root.iter(f"{QEMU_NS}arg")]


def test_domain_boots_kernel_directly_from_the_overlay_with_logged_console():
    root = ET.fromstring(lv.render_domain_xml(params()))
    assert root.findtext("os/kernel") == "/img/vmlinuz"
    assert root.find("os/initrd") is None  # the root drive is NVMe, built into the kernel
    assert root.find("os/type").get("machine") == "q35"
    assert root.findtext("memory") == "384" and root.find("memory").get("unit") == "MiB"
    assert root.findtext("vcpu") == "2"
    assert root.find("devices/disk") is None  # libvirt 9 has no NVMe bus: qemu args carry it
    args = qemu_args(root)
    assert args[0] == "-drive" and args[2] == "-device" and len(args) == 4
    drive = dict(opt.split("=", 1) for opt in args[1].split(","))
    assert drive == {
        "file": "/lab/vms/node-1.qcow2", "format": "qcow2", "if": "none", "id": "labroot",
        "discard": "unmap",
    }  # fmt: skip
    # JSON, so qemu adds it after libvirt's devices instead of taking their PCI slot
    assert json.loads(args[3]) == {"driver": "nvme", "drive": "labroot", "serial": "labroot"}
    nic = root.find("devices/interface")
    assert nic.get("type") == "network" and nic.find("source").get("network") == "labctl-demo"
    assert nic.find("model").get("type") == "virtio"
    assert root.find("devices/serial/log").get("file") == "/lab/logs/node-1.console.log"
    assert root.find("devices/rng").get("model") == "virtio"
    assert root.find("devices/memballoon").get("model") == "none"


def test_domain_has_no_usb_controller():
    # libvirt adds a USB (xhci) controller unless told not to; nothing in a lab uses it
    root = ET.fromstring(lv.render_domain_xml(params()))
    usb = [c for c in root.findall("devices/controller") if c.get("type") == "usb"]
    assert [c.get("model") for c in usb] == ["none"]


def test_cmdline_spares_tcg_guests_costly_kernel_work():
    words = shlex.split(lv.kernel_cmdline(spec()))
    assert {"mitigations=off", "cryptomgr.notests", "no_timer_check", "tsc=reliable"} <= set(words)


def test_root_drive_path_commas_are_doubled_for_qemu():
    root = ET.fromstring(lv.render_domain_xml(params(overlay="/labs/a,b/vms/n.qcow2")))
    assert qemu_args(root)[1].startswith("file=/labs/a,,b/vms/n.qcow2,format=qcow2,")


def test_root_drive_path_with_a_line_break_is_refused():
    with pytest.raises(LabError, match="line break"):
        lv.render_domain_xml(params(overlay="/labs/a\nb/n.qcow2"))


CAPS = """<capabilities><host>
  <secmodel><model>none</model><doi>0</doi></secmodel>
  <secmodel><model>dac</model><doi>0</doi>
    <baselabel type='kvm'>+64055:+107</baselabel>
    <baselabel type='qemu'>+64055:+64055</baselabel>
  </secmodel>
</host></capabilities>"""


def test_qemu_user_comes_from_the_dac_base_label_of_the_virt_type():
    assert lv.dac_owner(CAPS, "qemu") == (64055, 64055)
    assert lv.dac_owner(CAPS, "kvm") == (64055, 107)
    assert lv.dac_owner("<capabilities><host/></capabilities>", "qemu") is None


def test_cmdline_survives_xml_escaping_intact():
    cmdline = lv.kernel_cmdline(spec())
    root = ET.fromstring(lv.render_domain_xml(params(cmdline=cmdline + " x=<&'>")))
    assert root.findtext("os/cmdline") == cmdline + " x=<&'>"


def test_unknown_virt_type_is_refused():
    with pytest.raises(LabError, match="virt type"):
        lv.render_domain_xml(params("xen"))


def test_network_is_isolated_bridge_with_gateway_address():
    root = ET.fromstring(lv.render_network_xml(NET))
    assert root.findtext("name") == "labctl-demo"
    assert root.find("forward") is None  # no NAT, no route out
    assert root.find("bridge").get("name") == "lc-demo"
    assert root.find("dns").get("enable") == "no"  # no dnsmasq process
    ip = root.find("ip")
    assert (ip.get("address"), ip.get("netmask")) == ("10.77.0.1", "255.255.255.0")
    assert ip.find("dhcp") is None


@pytest.mark.parametrize("bridge", ["", "a-very-long-bridge-name", "br 0"])
def test_network_rejects_bad_bridge_names(bridge):
    net = NetworkSpec("demo", NET.cidr, NET.gateway, bridge)
    with pytest.raises(LabError, match="bridge"):
        lv.render_network_xml(net)


def test_network_rejects_gateway_outside_the_network():
    net = NetworkSpec("demo", NET.cidr, "10.99.0.1", "lc-demo")
    with pytest.raises(LabError, match="outside"):
        lv.render_network_xml(net)


def test_mac_is_stable_locally_administered_and_distinct_per_host():
    a = lv.mac_address("demo", "node-1")
    assert a == lv.mac_address("demo", "node-1")
    assert a.startswith("52:54:00:") and len(a.split(":")) == 6
    assert a != lv.mac_address("demo", "node-2") != lv.mac_address("other", "node-1")


def test_uri_selection():
    assert lv.is_local_uri("qemu:///system")
    assert not lv.is_local_uri("qemu+ssh://hv2/system")
    assert lv.host_uri({"libvirt_uri": "qemu+ssh://hv2/system"}, "qemu:///system") == "qemu+ssh://hv2/system"
    assert lv.host_uri({}, "qemu:///system") == "qemu:///system"


def test_virt_type_override(monkeypatch):
    monkeypatch.delenv(lv.VIRT_TYPE_ENV, raising=False)
    assert lv.host_virt_type_override({}) is None
    assert lv.host_virt_type_override({"libvirt_virt_type": "qemu"}) == "qemu"
    monkeypatch.setenv(lv.VIRT_TYPE_ENV, "kvm")
    assert lv.host_virt_type_override({}) == "kvm"
    with pytest.raises(LabError):
        lv.host_virt_type_override({"libvirt_virt_type": "hvf"})


def test_kvm_check_needs_cpu_flags_and_a_device(tmp_path):
    vmx = "processor : 0\nflags : fpu vme vmx sse2\n"
    assert lv.cpu_has_virtualization(vmx)
    assert lv.cpu_has_virtualization("flags : fpu svm\n")
    assert not lv.cpu_has_virtualization("flags : fpu vme sse2 hypervisor\n")
    assert lv.local_kvm_usable(str(tmp_path / "no-kvm"), cpuinfo=vmx) is False
    assert lv.local_kvm_usable("/dev/null", cpuinfo="flags : fpu\n") is False


def test_traversal_check_fixes_our_dirs_and_names_foreign_ones(tmp_path):
    outer = tmp_path / "outer"
    ours = outer / "home" / "labs" / "x"
    ours.mkdir(parents=True)
    for d in (outer, outer / "home", outer / "home" / "labs", ours):
        d.chmod(0o700)
    try:
        with pytest.raises(LabError, match=f"chmod o\\+x {outer}"):
            lv.ensure_traversable(ours, stop_at=outer / "home")
        assert (ours.stat().st_mode & 0o001) and ((outer / "home").stat().st_mode & 0o001)
        assert not outer.stat().st_mode & 0o001  # not ours: reported, never changed
    finally:
        outer.chmod(0o755)


def test_missing_daemons_are_started_by_root_without_systemd_else_explained():
    assert lv.daemons_refusal([], systemd=False, root=False) is None
    assert lv.daemons_refusal(["virtlogd"], systemd=False, root=True) is None  # we start it
    msg = lv.daemons_refusal(["virtlogd", "libvirtd"], systemd=True, root=True)
    assert msg == "virtlogd, libvirtd not running: run `systemctl start virtlogd.socket libvirtd.socket`"
    msg = lv.daemons_refusal(["virtlogd"], systemd=False, root=False)
    assert msg == "virtlogd not running: as root run virtlogd -d"


def test_virtlogd_failure_from_libvirt_says_what_to_run():
    class FakeError(lv.libvirt.libvirtError):
        def __init__(self, msg):
            Exception.__init__(self, msg)

    err = lv._libvirt_error("host a: starting VM", FakeError(
        "Failed to connect socket to '/run/libvirt/virtlogd-sock': No such file or directory"))
    assert "run `virtlogd -d`" in str(err) and "host a" in str(err)
