"""The container runtime on this machine, as root, with runc: real containers.

The image is made from this machine's own binaries (sh, coreutils and their shared
libraries copied into a tree), so the test needs no image build and no network. Each
test gets its own runtime root, image store, log root and cgroup parent, and removes
every sandbox, network namespace, mount and cgroup it made, even when it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from agents.runtime import (
    ContainerConfig,
    DnsConfig,
    LoopbackNetwork,
    Mount,
    NotFound,
    PodSandboxConfig,
    Runtime,
)
from agents.runtime.crilog import parse_line
from agents.runtime.shutdown import end_all
from agents.runtime.state import write_json
from tests.conftest import need_root, need_tool

pytestmark = pytest.mark.component

BINARIES = ("sh", "sleep", "cat", "echo", "readlink", "dd", "hostname", "true", "ls", "test")


def shared_libraries(binary: str) -> set[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    libs = set()
    for line in out.splitlines():
        for word in line.split():
            if word.startswith("/"):
                libs.add(word)
    return libs


def make_host_image(store: Path, ref_name: str = "lab/hosttools") -> None:
    """An image of this machine's binaries (+ their libraries), entrypoint-less, cmd sh."""
    image = store / ref_name / "latest"
    rootfs = image / "rootfs"
    for d in ("bin", "proc", "dev", "sys", "tmp", "etc"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    files: set[str] = set()
    for name in BINARIES:
        path = shutil.which(name)
        assert path, f"{name} missing on this machine"
        real = os.path.realpath(path)
        shutil.copy2(real, rootfs / "bin" / name)
        files |= shared_libraries(real)
    for lib in files:
        target = rootfs / lib.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(lib), target)
    write_json(image / "image.json", {
        "name": ref_name, "tag": "latest", "id": "sha256:test", "size": 1,
        "config": {"cmd": ["sh"], "env": ["PATH=/bin", "FROM_IMAGE=yes"], "working_dir": "/"},
    })  # fmt: skip


def remove_cgroup_parent(parent: str) -> None:
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        path = hierarchy / parent.lstrip("/")
        if not path.is_dir():
            path = Path("/sys/fs/cgroup") / parent.lstrip("/")  # cgroup v2 only
        for where, dirs, _ in os.walk(path, topdown=False):
            for d in dirs:
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(where, d))
        with contextlib.suppress(OSError):
            os.rmdir(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    need_root()
    need_tool("runc")
    need_tool("ip")
    store = tmp_path_factory.mktemp("images")
    make_host_image(store)
    return store


@pytest.fixture
def rt(store, tmp_path):
    parent = f"/lab-test-{uuid.uuid4().hex[:8]}"
    runtime = Runtime(root=tmp_path / "rt", image_store=store, network=LoopbackNetwork(),
                      log_root=tmp_path / "logs", cgroup_parent=parent)
    try:
        yield runtime
    finally:
        for sandbox in runtime.list_pod_sandboxes():
            runtime.remove_pod_sandbox(sandbox.id)
        for container in runtime.list_containers():
            runtime.remove_container(container.id)
        remove_cgroup_parent(parent)
        mounts = Path("/proc/self/mountinfo").read_text()
        assert str(tmp_path) + "/" not in mounts, "a container rootfs is still mounted"


def sandbox(rt, name="pod", **kw):
    config = PodSandboxConfig(uid=uuid.uuid4().hex, namespace="test", name=name, hostname=name,
                              dns=DnsConfig(("10.96.0.10",), ("test.svc.cluster.local",), ("ndots:5",)),
                              **kw)  # fmt: skip
    return rt.run_pod_sandbox(config)


def run(rt, sid, *argv, **kw):
    cid = rt.create_container(sid, ContainerConfig(name=kw.pop("name", "c"), image="lab/hosttools",
                                                   command=list(argv), **kw))
    rt.start_container(cid)
    return cid


def wait_exited(rt, cid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while (status := rt.container_status(cid)).state != "exited":
        assert time.monotonic() < deadline, f"container still {status.state} after {timeout} s"
        time.sleep(0.02)
    return status


def log_lines(status) -> list[tuple[str, bytes]]:
    with open(status.log_path, "rb") as f:
        return [(e.stream, e.content) for e in map(parse_line, f)]


def test_a_container_runs_exits_with_its_code_and_logs_in_cri_format(rt):
    sid = sandbox(rt, "web-1")
    t0 = time.monotonic()
    cid = rt.create_container(sid, ContainerConfig(
        name="main", image="lab/hosttools", command=["sh", "-c"],
        args=["echo out; echo err >&2; hostname; cat /etc/resolv.conf; echo $FROM_IMAGE $GREETING; exit 3"],
        env={"GREETING": "hi"}))  # fmt: skip
    assert rt.container_status(cid).state == "created"
    rt.start_container(cid)
    print(f"create+start {time.monotonic() - t0:.3f} s")
    status = wait_exited(rt, cid)
    assert (status.exit_code, status.reason) == (3, "Error")
    assert status.started_at <= status.finished_at and status.name == "main"
    assert status.log_path.endswith("/test_web-1_" + rt.pod_sandbox_status(sid).uid + "/main/0.log")
    lines = log_lines(status)
    assert ("stdout", b"out") in lines and ("stderr", b"err") in lines
    assert ("stdout", b"web-1") in lines  # the pod's hostname (own UTS namespace)
    assert ("stdout", b"nameserver 10.96.0.10") in lines
    assert ("stdout", b"search test.svc.cluster.local") in lines
    assert ("stdout", b"yes hi") in lines
    ok = run(rt, sid, "true", name="ok")
    assert wait_exited(rt, ok).reason == "Completed"


def test_own_pid_namespace_and_writable_layer_not_shared(rt):
    sid = sandbox(rt)
    a = run(rt, sid, "sh", "-c", "echo $$; echo a > /tmp/mine; cat /tmp/mine", name="a")
    b = run(rt, sid, "sh", "-c", "test -e /tmp/mine && echo seen || echo absent", name="b")
    assert log_lines(wait_exited(rt, a)) == [("stdout", b"1"), ("stdout", b"a")]
    assert log_lines(wait_exited(rt, b)) == [("stdout", b"absent")]


def test_memory_limit_oom_kill_is_reported_as_oomkilled(rt):
    sid = sandbox(rt)
    cid = run(rt, sid, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1",
              memory_limit_bytes=16 << 20)
    status = wait_exited(rt, cid)
    assert (status.exit_code, status.reason) == (137, "OOMKilled")


def test_cpu_limit_is_applied_to_the_cgroup(rt):
    sid = sandbox(rt)
    cid = run(rt, sid, "sleep", "30", cpu_millis=250)
    path = rt.cgroup_parent.lstrip("/") + "/" + cid
    quotas = [Path("/sys/fs/cgroup/cpu") / path / "cpu.cfs_quota_us", Path("/sys/fs/cgroup") / path / "cpu.max"]
    found = [q.read_text().split()[0] for q in quotas if q.exists()]
    assert found == ["25000"], f"cpu quota files: {found}"
    rt.stop_container(cid, 0)


def test_stop_uses_sigterm_then_sigkill_after_the_grace_period(rt):
    sid = sandbox(rt)
    polite = run(rt, sid, "sh", "-c",
                 "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.1; done",
                 name="polite")
    stubborn = run(rt, sid, "sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done",
                   name="stubborn")
    for cid in (polite, stubborn):  # the traps are set once "ready" is logged
        wait_logged(rt, cid, b"ready")
    t0 = time.monotonic()
    rt.stop_container(polite, 5)
    assert time.monotonic() - t0 < 3
    status = rt.container_status(polite)
    assert (status.state, status.exit_code) == ("exited", 0)
    assert ("stdout", b"bye") in log_lines(status)
    t0 = time.monotonic()
    rt.stop_container(stubborn, 1)
    elapsed = time.monotonic() - t0
    status = rt.container_status(stubborn)
    assert 1 <= elapsed < 5, elapsed
    assert (status.exit_code, status.reason) == (137, "Error")
    rt.stop_container(stubborn, 1)  # idempotent


def test_node_shutdown_ends_every_container_sigkilling_those_ignoring_sigterm(rt):
    sid = sandbox(rt)
    polite = run(rt, sid, "sh", "-c",
                 "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.1; done",
                 name="polite")
    deaf = run(rt, sid, "sleep", "1000", name="deaf")  # its namespace's init: no handler
    wait_logged(rt, polite, b"ready")
    wait_running(rt, deaf)
    ended = end_all(rt.cgroup_parent, grace=1.0)
    assert ended["processes"] >= 2 and ended["killed"] == 1 and ended["left"] == 0, ended
    assert (wait_exited(rt, polite).exit_code, wait_exited(rt, deaf).exit_code) == (0, 137)
    assert ("stdout", b"bye") in log_lines(rt.container_status(polite))


def wait_logged(rt, cid, content, timeout=5.0):
    deadline = time.monotonic() + timeout
    while ("stdout", content) not in log_lines(rt.container_status(cid)):
        assert time.monotonic() < deadline, f"{content!r} not logged within {timeout} s"
        time.sleep(0.02)


def wait_running(rt, cid, timeout=5.0):
    deadline = time.monotonic() + timeout
    while rt.container_status(cid).state != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_exec_sync_and_exec_argv(rt):
    sid = sandbox(rt)
    cid = run(rt, sid, "sleep", "30")
    code, out, err = rt.exec_sync(cid, ["sh", "-c", "echo in; echo oops >&2; exit 4"], 5)
    assert (code, out, err) == (4, b"in\n", b"oops\n")
    argv = rt.exec_argv(cid, ["cat", "/etc/hostname"], tty=False)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    assert done.stdout == "pod\n"
    from agents.runtime import ExecTimeout

    with pytest.raises(ExecTimeout):
        rt.exec_sync(cid, ["sleep", "5"], 0.3)
    rt.stop_container(cid, 0)


def test_two_containers_of_a_sandbox_share_its_network_namespace(rt):
    sid = sandbox(rt)
    other = sandbox(rt, "other")
    a = run(rt, sid, "readlink", "/proc/self/ns/net", name="a")
    b = run(rt, sid, "readlink", "/proc/self/ns/net", name="b")
    c = run(rt, other, "readlink", "/proc/self/ns/net", name="c")
    ns = [log_lines(wait_exited(rt, x))[0][1] for x in (a, b, c)]
    expected = f"net:[{os.stat(rt.pod_sandbox_status(sid).netns_path).st_ino}]".encode()
    assert ns[0] == ns[1] == expected
    assert ns[2] != ns[0]


def test_volume_mounts(rt, tmp_path):
    sid = sandbox(rt)
    (tmp_path / "vol").mkdir()
    (tmp_path / "vol/in").write_text("from host\n")
    cid = run(rt, sid, "sh", "-c", "cat /data/in; echo out > /data/out; echo x > /ro/x || echo ro",
              mounts=[Mount(str(tmp_path / "vol"), "/data"), Mount(str(tmp_path / "vol"), "/ro", True)])
    lines = log_lines(wait_exited(rt, cid))
    assert ("stdout", b"from host") in lines and ("stdout", b"ro") in lines
    assert (tmp_path / "vol/out").read_text() == "out\n"


def test_a_new_runtime_object_adopts_running_containers(rt, store):
    sid = sandbox(rt)
    cid = run(rt, sid, "sh", "-c", "echo started; sleep 30")
    wait_running(rt, cid)
    pid = rt.container_status(cid).pid
    again = Runtime(root=rt.root, image_store=store, network=rt.network, log_root=rt.log_root,
                    cgroup_parent=rt.cgroup_parent)
    assert [s.id for s in again.list_pod_sandboxes()] == [sid]
    assert again.pod_sandbox_status(sid).state == "ready"
    status = again.container_status(cid)
    assert (status.state, status.pid) == ("running", pid)
    again.stop_container(cid, 0)
    assert rt.container_status(cid).state == "exited"  # the shim recorded it for everyone


def test_missing_image_and_unknown_ids(rt):
    sid = sandbox(rt)
    assert rt.version().startswith("lab-runtime://0.1 (runc 1.")
    assert rt.image_status("lab/nothing") is None
    assert rt.image_status("lab/hosttools").ref == "lab/hosttools:latest"
    with pytest.raises(NotFound, match="not in the node's image store"):
        rt.create_container(sid, ContainerConfig(name="x", image="lab/nothing"))
    with pytest.raises(NotFound):
        rt.container_status("0123abcd")
    with pytest.raises(NotFound):
        rt.pod_sandbox_status("../etc")


def test_stop_and_remove_sandbox_kills_containers_and_frees_the_netns(rt):
    sid = sandbox(rt)
    cid = run(rt, sid, "sleep", "30")
    wait_running(rt, cid)
    path = rt.pod_sandbox_status(sid).netns_path
    rt.stop_pod_sandbox(sid)
    assert rt.container_status(cid).state == "exited"
    assert rt.pod_sandbox_status(sid).state == "notready"
    assert not os.path.exists(path)
    assert [c[0] for c in rt.network.calls].count("teardown") == 1
    rt.remove_pod_sandbox(sid)
    assert rt.list_pod_sandboxes() == [] and rt.list_containers() == []
    rt.remove_pod_sandbox(sid)  # idempotent


def test_a_sandbox_whose_netns_vanished_is_not_ready(rt):
    sid = sandbox(rt)
    status = rt.pod_sandbox_status(sid)
    subprocess.run(["ip", "netns", "delete", os.path.basename(status.netns_path)], check=True)
    assert rt.pod_sandbox_status(sid).state == "notready"  # as after a reboot: make a new one
    rt.remove_pod_sandbox(sid)
    assert rt.list_pod_sandboxes() == []


def test_a_host_network_sandbox_shares_the_node_s_network_namespace(rt):
    sid = sandbox(rt, host_network=True)
    assert rt.pod_sandbox_status(sid).netns_path == ""
    cid = run(rt, sid, "readlink", "/proc/self/ns/net")
    assert log_lines(wait_exited(rt, cid)) == [("stdout", os.readlink("/proc/self/ns/net").encode())]
    assert [c[0] for c in rt.network.calls] == []  # no pod network for it
