"""OCI spec generation for the container runtime (pure)."""

from __future__ import annotations

import pytest

from agents.runtime.model import ContainerConfig, ImageConfig, Mount, RuntimeError_
from agents.runtime.spec import (
    SandboxFiles,
    container_argv,
    cpu_resources,
    hosts_file,
    oci_spec,
    resolv_conf,
)

pytestmark = pytest.mark.unit

IMAGE = ImageConfig(entrypoint=("/entry",), cmd=("serve", "--port", "80"),
                    env=("PATH=/opt/bin:/bin", "LANG=C.UTF-8"), working_dir="/srv")
SANDBOX = SandboxFiles(hostname="web-1", netns_path="/run/netns/lab-abc",
                       hostname_file="/sb/hostname", hosts_file="/sb/hosts",
                       resolv_conf="/sb/resolv.conf")


def spec_of(**kw) -> dict:
    config = ContainerConfig(name="c", image="lab/python", **kw)
    return oci_spec(config, IMAGE, SANDBOX, "/lab-containers/abc")


def mount_at(spec: dict, destination: str) -> dict:
    found = [m for m in spec["mounts"] if m["destination"] == destination]
    assert len(found) == 1, f"{len(found)} mounts at {destination}"
    return found[0]


def test_argv_follows_kubernetes_command_and_args_rules():
    def argv(**kw):
        return container_argv(ContainerConfig(name="c", image="i", **kw), IMAGE)

    assert argv() == ["/entry", "serve", "--port", "80"]
    assert argv(args=["x"]) == ["/entry", "x"]
    assert argv(command=["sh"]) == ["sh"]  # the image's cmd is dropped
    assert argv(command=["sh", "-c"], args=["echo hi"]) == ["sh", "-c", "echo hi"]
    assert argv(command=["sh"], args=None) == ["sh"]  # the kubelet may pass None
    with pytest.raises(RuntimeError_, match="no command to run"):
        container_argv(ContainerConfig(name="c", image="i"), ImageConfig())


def test_own_pid_ipc_uts_mount_namespaces_and_the_sandbox_netns_joined():
    namespaces = spec_of()["linux"]["namespaces"]
    assert {"type": "network", "path": "/run/netns/lab-abc"} in namespaces
    assert sorted(n["type"] for n in namespaces if "path" not in n) == ["ipc", "mount", "pid", "uts"]


def test_host_network_has_no_network_namespace_and_binds_sys():
    host = SandboxFiles("node-1", "", "/sb/hostname", "/sb/hosts", "/sb/resolv.conf")
    spec = oci_spec(ContainerConfig(name="c", image="i", command=["true"]), IMAGE, host, "/x")
    assert "network" not in [n["type"] for n in spec["linux"]["namespaces"]]
    assert mount_at(spec, "/sys")["type"] == "bind"


def test_proc_dev_sys_and_the_sandbox_files_are_mounted():
    spec = spec_of()
    assert mount_at(spec, "/proc")["type"] == "proc"
    assert mount_at(spec, "/dev")["type"] == "tmpfs"
    assert mount_at(spec, "/dev/pts")["type"] == "devpts"
    assert mount_at(spec, "/sys")["type"] == "sysfs" and "ro" in mount_at(spec, "/sys")["options"]
    assert mount_at(spec, "/etc/resolv.conf")["source"] == "/sb/resolv.conf"
    assert mount_at(spec, "/etc/hosts")["source"] == "/sb/hosts"
    assert mount_at(spec, "/etc/hostname")["source"] == "/sb/hostname"
    assert spec["hostname"] == "web-1"


def test_volume_mounts_are_binds_read_only_when_asked():
    spec = spec_of(mounts=[Mount("/var/lib/k/vol", "/data", True), Mount("/tmp/x", "/scratch")])
    data = mount_at(spec, "/data")
    assert data["source"] == "/var/lib/k/vol" and "ro" in data["options"] and "rbind" in data["options"]
    assert "rw" in mount_at(spec, "/scratch")["options"]
    with pytest.raises(RuntimeError_, match="must be absolute"):
        spec_of(mounts=[Mount("/x", "data")])


def test_env_is_image_then_container_with_hostname_and_path():
    env = spec_of(env={"LANG": "de_DE", "GREETING": "hi"})["process"]["env"]
    assert "PATH=/opt/bin:/bin" in env  # the image's PATH replaces the default
    assert "LANG=de_DE" in env and "LANG=C.UTF-8" not in env
    assert "GREETING=hi" in env and "HOSTNAME=web-1" in env
    with pytest.raises(RuntimeError_, match="invalid environment name"):
        spec_of(env=[("A=B", "x")])


def test_cwd_from_container_else_image():
    assert spec_of()["process"]["cwd"] == "/srv"
    assert spec_of(working_dir="/app")["process"]["cwd"] == "/app"
    with pytest.raises(RuntimeError_, match="must be absolute"):
        spec_of(working_dir="app")


def test_cpu_quota_from_millicores_and_memory_limit():
    resources = spec_of(cpu_millis=250, memory_limit_bytes=64 << 20)["linux"]["resources"]
    assert resources["cpu"] == {"quota": 25_000, "period": 100_000, "shares": 256}
    assert resources["memory"] == {"limit": 64 << 20}
    unlimited = spec_of()["linux"]["resources"]
    assert "cpu" not in unlimited and "memory" not in unlimited
    assert cpu_resources(2000)["quota"] == 200_000
    assert cpu_resources(1)["quota"] == 1_000  # the kernel's minimum


def test_cgroups_path_and_rootfs():
    spec = spec_of()
    assert spec["linux"]["cgroupsPath"] == "/lab-containers/abc"
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    assert spec["process"]["terminal"] is False
    tty = spec_of(tty=True)["process"]
    assert tty["terminal"] is False and "TERM=xterm" in tty["env"]  # no attach: logs only


def test_resolv_conf_and_hosts_files():
    text = resolv_conf(["10.96.0.10"], ["default.svc.cluster.local", "svc.cluster.local"], ["ndots:5"])
    assert text == ("nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\n"
                    "options ndots:5\n")
    assert resolv_conf([], [], []) == ""
    assert "10.244.1.5\tweb-1\n" in hosts_file("web-1", "10.244.1.5")
    assert "web-1" not in hosts_file("web-1", "")


def test_a_cgroup_v2_node_gives_the_container_its_own_cgroup_namespace():
    config = ContainerConfig(name="c", image="lab/python")
    without = oci_spec(config, IMAGE, SANDBOX, "lab/c1")
    with_ns = oci_spec(config, IMAGE, SANDBOX, "lab/c1", cgroup_namespace=True)
    assert {"type": "cgroup"} not in without["linux"]["namespaces"]
    assert {"type": "cgroup"} in with_ns["linux"]["namespaces"]


def test_unified_only_is_read_from_the_cgroup_root(tmp_path):
    from agents.runtime import cgroups

    assert not cgroups.unified_only(tmp_path)
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    assert cgroups.unified_only(tmp_path)
