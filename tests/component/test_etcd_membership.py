"""Membership changes through etcdctl: add a member, start it, promote/remove."""

from __future__ import annotations

import time

import pytest

from agents.etcd.localcluster import LocalCluster, Member, free_ports
from tests.conftest import need_tool

pytestmark = [pytest.mark.component, pytest.mark.timeout(120)]


@pytest.fixture(params=["ours", "etcd"])
def cluster(request):
    need_tool("etcdctl")
    if request.param == "etcd":
        need_tool("etcd")
    c = LocalCluster(3, impl=request.param)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def _poll(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_add_start_and_remove_a_member(cluster: LocalCluster) -> None:
    c = cluster
    c.etcdctl("put", "/mem/k", "v")
    client, peer, metrics = free_ports(3)
    new = Member("m3", client, peer, metrics, f"{c.dir}/m3.data", f"{c.dir}/m3.log")
    added = []

    def add() -> bool:  # etcd refuses while its members have been connected < 5 s
        res = c.etcdctl("member", "add", "m3", f"--peer-urls={new.peer_url}", check=False)
        assert res.returncode == 0 or "unhealthy cluster" in res.stderr, res.stderr
        added.append(res.stdout)
        return res.returncode == 0

    _poll(add, 20, "member add to be accepted")
    out = added[-1]
    assert "Member" in out and "added to cluster" in out
    assert 'ETCD_INITIAL_CLUSTER_STATE="existing"' in out
    new_id = out.split()[1]
    listed = c.etcdctl("member", "list").stdout
    assert f"{new_id}, unstarted, , {new.peer_url}, , false" in listed
    c.members.append(new)
    c.start_member(new, state="existing")
    _poll(lambda: c.etcdctl("get", "/mem/k", "--consistency=s", endpoints=new.endpoint, check=False).stdout
          == "/mem/k\nv\n", 30, "the new member to catch up")
    _poll(lambda: f"{new_id}, started, m3, {new.peer_url}, {new.client_url}, false"
          in c.etcdctl("member", "list").stdout, 20, "the new member to publish its name and client URL")
    assert c.etcdctl("put", "/mem/k2", "v2", endpoints=new.endpoint).stdout == "OK\n"
    others = ",".join(m.endpoint for m in c.members[:3])
    out = c.etcdctl("member", "remove", new_id, endpoints=others).stdout
    # etcdctl prints the ID with %16x: a 15-digit ID gets a leading space
    assert f"Member {new_id} removed from cluster" in " ".join(out.split())
    assert new_id not in c.etcdctl("member", "list", endpoints=others).stdout
    assert c.etcdctl("put", "/mem/k3", "v3", endpoints=others).stdout == "OK\n"
