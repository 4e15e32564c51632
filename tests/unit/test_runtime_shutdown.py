"""Finding every container's cgroup and processes for the node-shutdown kill."""

import signal

import pytest

from agents.runtime.shutdown import container_cgroups, end_all, pids_in

pytestmark = pytest.mark.unit


def cgroup(root, *parts, procs=""):
    d = root.joinpath(*parts)
    d.mkdir(parents=True)
    (d / "cgroup.procs").write_text(procs)
    return d


def test_cgroups_are_found_in_v1_hierarchies_and_in_v2(tmp_path):
    v1 = cgroup(tmp_path / "v1", "memory", "lab-containers", "a", procs="11\n12\n")
    cgroup(tmp_path / "v1", "memory", "other", "x", procs="99\n")
    v2 = cgroup(tmp_path / "v2", "lab-containers", "b", procs="21\n")
    assert container_cgroups("/lab-containers", tmp_path / "v1") == [v1]
    assert container_cgroups("/lab-containers", tmp_path / "v2") == [v2]
    assert pids_in([v1, v2, tmp_path / "gone"]) == {11, 12, 21}


def test_nothing_to_end_sends_nothing(tmp_path):
    sent = []
    ended = end_all("/lab-containers", 5.0, root=tmp_path, kill=lambda *a: sent.append(a))
    assert ended == {"processes": 0, "killed": 0, "left": 0} and sent == []


def test_processes_that_leave_on_sigterm_get_no_sigkill(tmp_path):
    d = cgroup(tmp_path, "lab-containers", "a", procs="7\n8\n")
    sent = []

    def kill(pid, sig):
        sent.append((pid, sig))
        (d / "cgroup.procs").write_text("")  # the kernel moves exited processes out
    ended = end_all("/lab-containers", 5.0, root=tmp_path, kill=kill)
    assert sorted(sent) == [(7, signal.SIGTERM), (8, signal.SIGTERM)]
    assert ended == {"processes": 2, "killed": 0, "left": 0}
