"""Per-container cgroups for nspawn: finding the hierarchies, the launch wrapper."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from labctl.providers.nspawn_cgroup import in_cgroups, remove_cgroup, systemd_hierarchies

pytestmark = pytest.mark.unit

HYBRID_CGROUP = """\
9:name=systemd:/
4:memory:/process_api/ba3d
1:cpu:/
0::/
"""
HYBRID_MOUNTS = """\
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
35 25 0:31 / /sys/fs/cgroup/systemd rw,relatime shared:14 - cgroup cgroup rw,xattr,name=systemd
36 25 0:32 / /sys/fs/cgroup/unified rw,relatime shared:15 - cgroup2 cgroup2 rw
"""


def test_hybrid_layout_uses_the_named_v1_and_the_cgroup2_hierarchy():
    assert systemd_hierarchies(HYBRID_CGROUP, HYBRID_MOUNTS) == [
        Path("/sys/fs/cgroup/systemd"),
        Path("/sys/fs/cgroup/unified"),
    ]


def test_our_own_cgroup_path_is_kept_and_mount_roots_are_honoured():
    cgroup = "0::/user.slice/session-3.scope\n"
    unified = "40 1 0:40 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert systemd_hierarchies(cgroup, unified) == [
        Path("/sys/fs/cgroup/user.slice/session-3.scope")
    ]
    # inside a cgroup namespace the mount's root is our own cgroup
    rooted = "40 1 0:40 /lab /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert systemd_hierarchies("0::/lab/x\n", rooted) == [Path("/sys/fs/cgroup/x")]


def test_no_systemd_hierarchy_mounted_means_nothing_to_do():
    assert systemd_hierarchies(HYBRID_CGROUP, "") == []
    assert in_cgroups([], ["systemd-nspawn", "-q"]) == ["systemd-nspawn", "-q"]


def test_wrapper_moves_itself_then_execs_the_command(tmp_path):
    groups = [tmp_path / "a b", tmp_path / "c"]
    for group in groups:
        group.mkdir()
    cmd = in_cgroups(groups, ["sh", "-c", 'echo "pid $$ args $0 $1"', "x", "y"])
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    pid = result.stdout.split()[1]
    assert result.stdout == f"pid {pid} args x y\n"  # same PID: exec, not a child
    assert (groups[0] / "cgroup.procs").read_text() == f"{pid}\n"
    assert (groups[1] / "cgroup.procs").read_text() == f"{pid}\n"


def test_remove_cgroup_removes_the_directory_tree_bottom_up(tmp_path):
    tree = tmp_path / "labctl-m"
    (tree / "payload/system.slice/ssh.service").mkdir(parents=True)
    (tree / "supervisor").mkdir()
    assert remove_cgroup(tree)
    assert not tree.exists()
    assert remove_cgroup(tree)  # idempotent


def test_remove_cgroup_gives_up_at_the_deadline(tmp_path):
    tree = tmp_path / "labctl-m"
    (tree / "busy").mkdir(parents=True)
    (tree / "busy" / "cgroup.procs").write_text("123\n")  # a regular dir: rmdir fails
    assert remove_cgroup(tree, timeout=0.1) is False
    assert tree.is_dir()
