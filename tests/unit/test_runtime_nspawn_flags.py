"""nspawn flags for the container runtime inside nspawn hosts: /var/lib/lab bound from
the lab machine (overlay upper layers cannot sit on the host's overlay root), and each
host in its own cgroup of every v1 controller hierarchy (runc's pod cgroups stay in
the host's subtree)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.providers.nspawn import LAB_DATA_IN_HOST, nspawn_command
from labctl.providers.nspawn_cgroup import controller_hierarchies, inherit_cpuset

pytestmark = pytest.mark.unit

CGROUP = """\
9:name=systemd:/
5:cpu,cpuacct:/
4:memory:/process_api/ba3d
3:cpuset:/
1:pids:/
0::/
"""
MOUNTS = """\
29 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
32 25 0:28 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
35 25 0:31 / /sys/fs/cgroup/systemd rw,relatime shared:14 - cgroup cgroup rw,xattr,name=systemd
36 25 0:32 / /sys/fs/cgroup/unified rw,relatime shared:15 - cgroup2 cgroup2 rw
"""


def test_lab_data_is_bound_to_var_lib_lab(tmp_path):
    cmd = nspawn_command(tmp_path / "merged", "lab-1", "br0", (), tmp_path / "lab-data")
    assert f"--bind={tmp_path}/lab-data:{LAB_DATA_IN_HOST}" in cmd
    assert LAB_DATA_IN_HOST == "/var/lib/lab"
    assert not [a for a in nspawn_command(tmp_path, "m", "b") if a.startswith("--bind")]


def test_every_v1_controller_hierarchy_is_found_at_our_own_cgroup():
    assert controller_hierarchies(CGROUP, MOUNTS) == [
        Path("/sys/fs/cgroup/cpu,cpuacct"),
        Path("/sys/fs/cgroup/memory/process_api/ba3d"),
        Path("/sys/fs/cgroup/cpuset"),
        Path("/sys/fs/cgroup/pids"),
    ]
    assert controller_hierarchies("0::/\n", MOUNTS) == []  # cgroup v2 only: nothing more


def test_a_new_cpuset_cgroup_inherits_cpus_and_mems(tmp_path):
    (tmp_path / "cpuset.cpus").write_text("0-1\n")
    (tmp_path / "cpuset.mems").write_text("0\n")
    child = tmp_path / "labctl-m"
    child.mkdir()
    (child / "cpuset.cpus").write_text("\n")
    (child / "cpuset.mems").write_text("\n")
    inherit_cpuset(child)
    assert (child / "cpuset.cpus").read_text() == "0-1\n"
    assert (child / "cpuset.mems").read_text() == "0\n"
    other = tmp_path / "memory-like"
    other.mkdir()
    inherit_cpuset(other)  # not a cpuset cgroup: nothing to do
    assert list(other.iterdir()) == []
