"""TLS with client-certificate authentication (the lab PKI) for clients and peers."""

from __future__ import annotations

import grpc
import pytest

from agents.etcd.localcluster import LocalCluster, Tls
from agents.etcdapi import rpc_pb2, rpc_pb2_grpc
from labctl.pki import ensure_pki
from tests.conftest import need_tool

pytestmark = [pytest.mark.component, pytest.mark.timeout(120)]


@pytest.fixture(params=["ours", "etcd"])
def tls_cluster(request, tmp_path):
    need_tool("etcdctl")
    if request.param == "etcd":
        need_tool("etcd")
    names = ["m0", "m1", "m2"]
    pki = ensure_pki(tmp_path / "pki", lab_name="etcdtls", etcd_hosts={n: "127.0.0.1" for n in names},
                     control_plane_hosts={}, nodes={})
    tls = Tls(
        ca=str(pki.ca_cert),
        members={n: (str(pki.cert(f"etcd/{n}-server")), str(pki.key(f"etcd/{n}-server"))) for n in names},
        client=(str(pki.cert("etcd/apiserver-etcd-client")), str(pki.key("etcd/apiserver-etcd-client"))),
    )
    c = LocalCluster(3, impl=request.param, tls=tls)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def test_tls_clients_and_peers(tls_cluster: LocalCluster) -> None:
    c = tls_cluster
    assert c.etcdctl("put", "/tls/k", "v").stdout == "OK\n"
    for m in c.members:  # replicated over TLS peer links
        assert c.etcdctl("get", "/tls/k", endpoints=m.endpoint).stdout == "/tls/k\nv\n"
    assert c.members[0].client_url.startswith("https://")
    rows = c.etcdctl("member", "list").stdout.splitlines()
    assert all("https://127.0.0.1:" in r for r in rows) and len(rows) == 3
    # without a client certificate the member refuses the connection
    res = c.etcdctl("--cacert", c.tls.ca, "get", "/tls/k", "--command-timeout=3s", check=False)
    assert res.returncode != 0
    # a Python client with the lab's client certificate
    with open(c.tls.ca, "rb") as f:
        ca = f.read()
    with open(c.tls.client[0], "rb") as f:
        cert = f.read()
    with open(c.tls.client[1], "rb") as f:
        key = f.read()
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    with grpc.secure_channel(c.members[1].endpoint, creds) as ch:
        resp = rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"/tls/k"), timeout=5)
    assert resp.kvs[0].value == b"v"
