"""The API server's etcd storage over several TLS members: each member's certificate is
checked against its own address, and requests fail over when a member dies."""

from __future__ import annotations

import asyncio

import pytest

from agents.apiserver.storage import EtcdStorage
from agents.etcd.localcluster import LocalCluster, Tls
from labctl.pki import ensure_pki
from tests.conftest import need_tool

pytestmark = [pytest.mark.component, pytest.mark.timeout(180)]


@pytest.fixture
def tls_etcd(tmp_path):
    need_tool("etcd")
    names = ["m0", "m1", "m2"]
    pki = ensure_pki(tmp_path / "pki", lab_name="apietcd",
                     etcd_hosts={n: "127.0.0.1" for n in names}, control_plane_hosts={}, nodes={})
    client = (str(pki.cert("etcd/apiserver-etcd-client")), str(pki.key("etcd/apiserver-etcd-client")))
    tls = Tls(ca=str(pki.ca_cert),
              members={n: (str(pki.cert(f"etcd/{n}-server")), str(pki.key(f"etcd/{n}-server")))
                       for n in names},
              client=client)
    cluster = LocalCluster(3, impl="etcd", tls=tls)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_storage_uses_every_tls_member_and_fails_over(tls_etcd):
    c = tls_etcd
    servers = [m.client_url for m in c.members]
    assert all(s.startswith("https://") for s in servers)

    async def scenario():
        storage = EtcdStorage(servers, ca=c.tls.ca, cert=c.tls.client[0], key=c.tls.client[1],
                              timeout=5.0)
        try:
            created = await storage.create("/registry/configmaps/default/a", b"one")
            assert created is not None
            c.kill(c.members[0])  # the member requests went to
            item = await storage.get("/registry/configmaps/default/a")
            assert item is not None and item.value == b"one"
            written, revision, _ = await storage.update(
                "/registry/configmaps/default/a", b"two", item.mod_revision)
            assert written and revision > item.mod_revision
            # watches follow: one started on the dead member moves to a live one
            storage._active = 0
            events = []
            async for batch in storage.watch("/registry/configmaps/", item.mod_revision + 1):
                if isinstance(batch, list):
                    events.extend(batch)
                    break
            assert [e.value for e in events] == [b"two"]
        finally:
            await storage.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
