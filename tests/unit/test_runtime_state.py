"""Runtime records: CRI log lines, state files and statuses, image references, OOM
counters (pure parts of agents.runtime)."""

from __future__ import annotations

import pytest

from agents.runtime.cgroups import memory_files, oom_kill_count_from, read_only_controllers
from agents.runtime.crilog import LineSplitter, format_line, parse_line, rfc3339_nano
from agents.runtime.images import ImageStore, parse_ref
from agents.runtime.model import ContainerConfig, DnsConfig, Mount, PodSandboxConfig, RuntimeError_
from agents.runtime.state import container_status, exit_reason, read_json, write_json

pytestmark = pytest.mark.unit


def test_cri_log_line_format():
    line = format_line(1_700_000_000_123_456_789, "stdout", b"hello world", False)
    assert line == b"2023-11-14T22:13:20.123456789Z stdout F hello world\n"
    assert format_line(0, "stderr", b"", True) == b"1970-01-01T00:00:00.000000000Z stderr P \n"
    assert rfc3339_nano(5) == "1970-01-01T00:00:00.000000005Z"
    with pytest.raises(ValueError):
        format_line(0, "stdin", b"x", False)
    entry = parse_line(line)
    assert (entry.stream, entry.partial, entry.content) == ("stdout", False, b"hello world")
    assert parse_line(b"2023-11-14T22:13:20.1Z stderr P \n").content == b""
    with pytest.raises(ValueError):
        parse_line(b"garbage")


def test_line_splitter_full_partial_and_trailing_pieces():
    s = LineSplitter(max_line=4)
    assert s.feed(b"ab\ncd") == [(b"ab", False)]
    assert s.feed(b"e\n") == [(b"cde", False)]
    assert s.feed(b"0123456789\n") == [(b"0123", True), (b"4567", True), (b"89", False)]
    assert s.feed(b"tail") == []
    assert s.close() == [(b"tail", False)]
    assert s.close() == []
    assert LineSplitter(max_line=4).feed(b"1234\n") == [(b"1234", False)]


def test_json_files_are_written_atomically_and_bad_ones_read_as_none(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"a": 1})
    assert read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary left
    path.write_text("{half")
    assert read_json(path) is None
    assert read_json(tmp_path / "missing.json") is None


def record(**kw):
    config = ContainerConfig(name="web", image="lab/python", attempt=2,
                             mounts=[Mount("/a", "/b", True)], env={"A": "1"})
    base = {"id": "c1", "sandbox_id": "s1", "config": config.to_dict(),
            "image_ref": "lab/python:latest", "created_at": 10.0, "log_path": "/l/2.log",
            "pid": 42, "started_at": 0.0}
    base.update(kw)
    return base


def test_container_state_from_records():
    created = container_status(record(), None, shim_alive=True)
    assert (created.state, created.pid, created.name, created.attempt) == ("created", 0, "web", 2)
    running = container_status(record(started_at=11.0), None, shim_alive=True)
    assert (running.state, running.pid, running.started_at) == ("running", 42, 11.0)
    done = container_status(record(started_at=11.0), {"exit_code": 0, "finished_at": 12.5}, False)
    assert (done.state, done.exit_code, done.reason, done.finished_at) == ("exited", 0, "Completed", 12.5)
    oom = container_status(record(started_at=11.0), {"exit_code": 137, "oom_killed": True}, False)
    assert (oom.exit_code, oom.reason) == (137, "OOMKilled")
    lost = container_status(record(started_at=11.0), None, shim_alive=False)
    assert (lost.state, lost.reason) == ("exited", "Error") and "shim" in lost.message


def test_exit_reasons():
    assert exit_reason(0, False) == "Completed"
    assert exit_reason(1, False) == "Error"
    assert exit_reason(137, True) == "OOMKilled"
    assert exit_reason(0, True) == "Completed"  # a child was OOM-killed, the process coped


def test_configs_round_trip_through_json_dicts():
    config = ContainerConfig(name="w", image="i", command=["a"], env={"X": "1"},
                             mounts=[Mount("/h", "/c", True)], labels={"k": "v"})
    again = ContainerConfig.from_dict(config.to_dict())
    assert again.env_pairs() == [("X", "1")] and again.mounts == (Mount("/h", "/c", True),)
    assert again.command == ("a",) and again.labels == {"k": "v"}
    pod = PodSandboxConfig("u", "ns", "n", "h", dns=DnsConfig(("1.2.3.4",), ("a",), ()))
    assert PodSandboxConfig.from_dict(pod.to_dict()) == pod


def test_image_references():
    assert parse_ref("lab/busybox") == ("lab/busybox", "latest")
    assert parse_ref("lab/python:3.11") == ("lab/python", "3.11")
    for bad in ("Lab/Busybox", "lab/busybox@sha256:ab", "../etc", "lab//x", ""):
        with pytest.raises(RuntimeError_, match="invalid image reference"):
            parse_ref(bad)


def test_image_store_lists_complete_images_only(tmp_path):
    store = ImageStore(tmp_path)
    good = tmp_path / "lab/busybox/latest"
    (good / "rootfs/bin").mkdir(parents=True)
    write_json(good / "image.json", {"id": "sha256:1", "size": 5, "config": {"cmd": ["sh"]}})
    (good / "rootfs/bin/image.json").write_text("{}")  # inside the tree: never an image
    (tmp_path / "lab/half/latest").mkdir(parents=True)  # no image.json yet
    (tmp_path / "lab/norootfs/1").mkdir(parents=True)
    write_json(tmp_path / "lab/norootfs/1/image.json", {"id": "x"})  # no rootfs/
    info = store.status("lab/busybox")
    assert info is not None and info.id == "sha256:1" and info.config.cmd == ("sh",)
    assert info.config.working_dir == "/"
    assert store.status("lab/half") is None and store.status("lab/python") is None
    assert [i.ref for i in store.list()] == ["lab/busybox:latest"]


def test_oom_counters_and_read_only_controller_mounts(tmp_path):
    assert oom_kill_count_from("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n") == 3
    assert oom_kill_count_from("low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\n") == 1
    assert oom_kill_count_from("") == 0
    v2, v1 = memory_files("/lab-containers/c1", tmp_path)
    assert v2 == str(tmp_path / "lab-containers/c1/memory.events")
    assert v1 == str(tmp_path / "memory/lab-containers/c1/memory.oom_control")
    mountinfo = (
        "30 25 0:26 / /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime - cgroup cgroup ro,memory\n"
        "35 25 0:31 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,name=systemd\n"
        "36 25 0:32 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup rw\n"
    )
    assert read_only_controllers(mountinfo) == ["/sys/fs/cgroup/memory"]


def test_shim_arguments():
    from agents.runtime.shim import parse_args

    argv = ["--runc", "runc", "--runc-root", "/r", "--id", "c1", "--bundle", "/b",
            "--log-path", "/l", "--exit-file", "/e", "--cgroups-path", "/lab/c1", "--ready-fd", "5"]
    args = parse_args(argv)
    assert (args.runc_root, args.ready_fd, args.cgroups_path) == ("/r", 5, "/lab/c1")
    with pytest.raises(SystemExit, match="missing --ready-fd"):
        parse_args(argv[:-2])
    with pytest.raises(SystemExit, match="unknown argument"):
        parse_args(["--nope", "x"])
