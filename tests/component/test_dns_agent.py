"""The cluster DNS agent against a real etcd + our API server, on 127.0.0.1:<free port>,
queried over UDP and TCP with dnspython (no dig): A, SRV, headless, NXDOMAIN, REFUSED,
changes followed, and the kube-dns Service/Endpoints registration (on start and stop)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import dns.message
import dns.query
import dns.rcode
import pytest

from agents.apiserver import testing
from agents.kube.client import KubeClient
from tests.conftest import need

pytestmark = pytest.mark.component

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MY_IP = "127.0.0.2"


def kubeconfig_for(work: str, url: str) -> str:
    path = os.path.join(work, "kubeconfig")
    with open(path, "w") as fh:
        json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "t",
                   "clusters": [{"name": "t", "cluster": {"server": url}}],
                   "users": [{"name": "t", "user": {}}],
                   "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}, fh)
    return path


def api_call(kubeconfig, body):
    async def main():
        async with KubeClient.from_kubeconfig(kubeconfig) as api:
            return await body(api)
    return asyncio.run(main())


def wait_until(predicate, timeout: float, what: str):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
            last = exc
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    need(os.path.exists(testing.ETCD), "needs /usr/bin/etcd (Debian etcd-server)")
    work = str(tmp_path_factory.mktemp("dns"))
    with testing.run_etcd(work, testing.etcd_command_from_env()) as etcd, \
            testing.run_apiserver(work, etcd.endpoint) as api:
        yield {"work": work, "kubeconfig": kubeconfig_for(work, api.url)}


@contextlib.contextmanager
def dns_agent(cluster, port: int):
    log_path = os.path.join(cluster["work"], f"dns-{port}.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agents.dns", "--kubeconfig", cluster["kubeconfig"],
             "--listen", f"127.0.0.1:{port}", "--domain", "cluster.local",
             "--register-endpoint-ip", MY_IP], cwd=ROOT, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: proc.poll() is not None or query(port, "cluster.local", "SOA"),
                   20, "the DNS agent to answer")
        if proc.poll() is not None:
            with open(log_path) as fh:
                pytest.fail(f"dns agent exited {proc.returncode}: {fh.read()[-3000:]}")
        yield proc
    finally:
        testing.stop(proc)


def query(port: int, name: str, rdtype: str = "A", tcp: bool = False):
    q = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(q, "127.0.0.1", port=port, timeout=2)


def addresses(response) -> list[str]:
    return sorted(rd.address for rrset in response.answer for rd in rrset
                  if hasattr(rd, "address"))


@pytest.fixture(scope="module")
def agent(cluster):
    port = testing.free_port()
    with dns_agent(cluster, port) as proc:
        yield {"port": port, "proc": proc}


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_kubernetes_service_resolves_to_its_cluster_ip(agent, tcp):
    r = query(agent["port"], "kubernetes.default.svc.cluster.local", tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR
    assert addresses(r) == ["10.96.0.1"]


def test_new_services_and_headless_endpoints_are_served_and_followed(agent, cluster):
    port = agent["port"]

    async def create(api):
        await api.create("services", {"metadata": {"name": "web", "namespace": "default"},
                                      "spec": {"ports": [{"name": "http", "port": 80}]}},
                         "default")
        await api.create("services", {"metadata": {"name": "db", "namespace": "default"},
                                      "spec": {"clusterIP": "None",
                                               "ports": [{"name": "pg", "port": 5432}]}},
                         "default")
        await api.create("endpoints", {"metadata": {"name": "db", "namespace": "default"},
                                       "subsets": [{"addresses": [{"ip": "10.244.1.5"}],
                                                    "ports": [{"name": "pg",
                                                               "port": 5432}]}]}, "default")
        return (await api.get("services", "web", "default"))["spec"]["clusterIP"]
    web_ip = api_call(cluster["kubeconfig"], create)
    try:
        started = time.monotonic()
        wait_until(lambda: addresses(query(port, "web.default.svc.cluster.local")) == [web_ip],
                   5, "the new service's name")
        print(f"\nnew service resolvable after {time.monotonic() - started:.3f}s")
        srv = query(port, "_http._tcp.web.default.svc.cluster.local", "SRV", tcp=True)
        assert [(rd.port, str(rd.target)) for rrset in srv.answer for rd in rrset] == [
            (80, "web.default.svc.cluster.local.")]
        wait_until(lambda: addresses(query(port, "db.default.svc.cluster.local"))
                   == ["10.244.1.5"], 5, "the headless service's endpoint")

        async def grow(api):
            ep = await api.get("endpoints", "db", "default")
            ep["subsets"][0]["addresses"].append({"ip": "10.244.2.6"})
            await api.update("endpoints", ep)
        api_call(cluster["kubeconfig"], grow)
        wait_until(lambda: addresses(query(port, "db.default.svc.cluster.local"))
                   == ["10.244.1.5", "10.244.2.6"], 5, "the second endpoint")
        srv = query(port, "_pg._tcp.db.default.svc.cluster.local", "SRV")
        assert len(srv.answer[0]) == 2

        async def delete(api):
            await api.delete("services", "web", "default")
        api_call(cluster["kubeconfig"], delete)
        wait_until(lambda: query(port, "web.default.svc.cluster.local").rcode()
                   == dns.rcode.NXDOMAIN, 5, "the deleted service to disappear")
    finally:
        async def cleanup(api):
            for res, name in (("services", "web"), ("services", "db"), ("endpoints", "db")):
                with contextlib.suppress(Exception):
                    await api.delete(res, name, "default")
        api_call(cluster["kubeconfig"], cleanup)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_unknown_names_nxdomain_and_outside_names_refused(agent, tcp):
    port = agent["port"]
    r = query(port, "nothing.default.svc.cluster.local", tcp=tcp)
    assert r.rcode() == dns.rcode.NXDOMAIN and r.authority
    r = query(port, "example.org", tcp=tcp)
    assert r.rcode() == dns.rcode.REFUSED and not r.answer


def test_kube_dns_service_and_our_endpoint_are_kept(agent, cluster):
    async def read(api):
        return (await api.get("services", "kube-dns", "kube-system"),
                await api.get("endpoints", "kube-dns", "kube-system"))
    svc, _ = wait_until(lambda: api_call(cluster["kubeconfig"], read), 5, "kube-dns")
    assert svc["spec"]["clusterIP"] == "10.96.0.10"
    assert svc["metadata"]["labels"]["kubernetes.io/cluster-service"] == "true"
    assert not svc["spec"].get("selector")

    def listed():
        _, ep = api_call(cluster["kubeconfig"], read)
        return [(a["ip"], p["port"], p["protocol"]) for s in ep.get("subsets") or []
                for a in s.get("addresses") or [] for p in s["ports"]]
    wanted = sorted([(MY_IP, agent["port"], "UDP"), (MY_IP, agent["port"], "TCP")])
    wait_until(lambda: sorted(listed()) == wanted, 5, "our address in kube-dns")

    # someone removes us: we come back
    async def wipe(api):
        ep = await api.get("endpoints", "kube-dns", "kube-system")
        ep["subsets"] = []
        await api.update("endpoints", ep)
    api_call(cluster["kubeconfig"], wipe)
    wait_until(lambda: sorted(listed()) == wanted, 5, "our address listed again")


def test_a_second_server_registers_beside_and_leaves_on_sigterm(agent, cluster):
    async def read(api):
        ep = await api.get("endpoints", "kube-dns", "kube-system")
        return sorted((a["ip"], s["ports"][0]["port"]) for s in ep.get("subsets") or []
                      for a in s.get("addresses") or [])
    port = testing.free_port()
    with dns_agent(cluster, port) as proc:
        wait_until(lambda: api_call(cluster["kubeconfig"], read) == sorted(
            [(MY_IP, agent["port"]), (MY_IP, port)]), 5, "both servers listed")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        # removed before the process exited: no waiting here
        assert api_call(cluster["kubeconfig"], read) == [(MY_IP, agent["port"])]
