"""kube-proxy's sync loop against the fake API and a backend that records transactions:
a change is applied as a diff, nothing is written when nothing changed, a failed apply
makes the next sync rebuild from scratch, and the metrics and health follow."""

from __future__ import annotations

import asyncio

import pytest

from agents.kube.testing import FakeApi
from agents.kube_proxy.main import parse_args
from agents.kube_proxy.model import NodeInfo
from agents.kube_proxy.nft import NftBackend
from agents.kube_proxy.proxier import Proxier, metrics_text
from agents.kube_proxy.runner import BackendError

pytestmark = pytest.mark.unit


class RecordingBackend(NftBackend):
    def __init__(self):
        super().__init__()
        self.applied: list[str] = []
        self.fail = 0

    async def apply(self, text: str) -> None:
        if self.fail:
            self.fail -= 1
            raise BackendError("nft exited 1: boom")
        self.applied.append(text)


SERVICE = {"metadata": {"name": "web", "namespace": "default"},
           "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}}


def endpoints(*ips):
    return {"metadata": {"name": "web", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": ip} for ip in ips], "ports": [{"port": 80}]}]}


async def started(api, backend):
    proxier = Proxier(api, NodeInfo("n"), backend, sync_period=30, retry_delay=0.01)
    task = asyncio.create_task(proxier.run())
    for _ in range(200):
        if backend.applied:
            break
        await asyncio.sleep(0.005)
    return proxier, task


async def settle(backend, count):
    for _ in range(400):
        if len(backend.applied) >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"only {len(backend.applied)} transactions: {backend.applied}")


def test_first_sync_is_full_then_changes_are_diffs():
    async def body():
        api, backend = FakeApi(), RecordingBackend()
        api.seed("services", SERVICE)
        api.seed("endpoints", endpoints("10.244.1.2", "10.244.1.3"))
        proxier, task = await started(api, backend)
        try:
            assert backend.applied[0].startswith("add table ip lab-proxy\ndelete table")
            assert proxier.healthy()
            await api.update("endpoints", {**endpoints("10.244.1.2"), "metadata": {
                **endpoints()["metadata"], "resourceVersion": None}})
            await settle(backend, 2)
            assert "delete table" not in backend.applied[1]
            assert "ep-default/web/tcp/80__10.244.1.3/80" in backend.applied[1]
            # a change that does not alter the rules is synced but writes nothing
            syncs = proxier.metrics.syncs
            await api.patch("services", "web", {"metadata": {"labels": {"a": "b"}}},
                            "default")
            for _ in range(400):
                if proxier.metrics.syncs > syncs:
                    break
                await asyncio.sleep(0.005)
            assert proxier.metrics.syncs > syncs
            assert len(backend.applied) == 2
            text = metrics_text(proxier)
            assert "labproxy_service_ports 1" in text
            assert "labproxy_change_to_rules_seconds_count" in text
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    asyncio.run(body())


def test_failed_apply_is_retried_as_a_full_rebuild_and_counted():
    async def body():
        api, backend = FakeApi(), RecordingBackend()
        api.seed("services", SERVICE)
        backend.fail = 1
        proxier, task = await started(api, backend)
        try:
            assert proxier.metrics.errors == 1
            assert backend.applied[0].startswith("add table ip lab-proxy\ndelete table")
            assert "labproxy_sync_errors_total 1" in metrics_text(proxier)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    asyncio.run(body())


def test_unhealthy_before_the_first_sync_and_when_syncs_stop():
    proxier = Proxier(FakeApi(), NodeInfo("n"), RecordingBackend(), sync_period=30)
    assert not proxier.healthy()
    proxier.metrics.syncs, proxier.metrics.last_success = 1, 100.0
    assert proxier.healthy(now=130.0)
    assert not proxier.healthy(now=100.0 + 61)


def test_flags():
    args = parse_args(["--kubeconfig", "k", "--node-name", "w1", "--mode", "iptables",
                       "--nodeport-addresses", "10.0.0.5/24"])
    assert (args.mode, args.node_name, args.nodeport_addresses) == (
        "iptables", "w1", ["10.0.0.0/24"])
    with pytest.raises(SystemExit):
        parse_args(["--kubeconfig", "k", "--nodeport-addresses", "nonsense"])
    with pytest.raises(SystemExit):
        parse_args([])
    assert parse_args(["--cleanup"]).cleanup
