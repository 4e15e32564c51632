"""Endpoints controller, sample-controller style: Service selector → ready pod addresses
and resolved ports."""

import asyncio

import pytest

from agents.controller_manager.base import EventRecorder
from agents.controller_manager.endpoints import EndpointsController, endpoint_subsets
from agents.kube.informer import Informer, by_namespace
from agents.kube.testing import FakeApi

pytestmark = pytest.mark.unit


def service(selector=None, ports=None, **spec):
    return {"metadata": {"name": "web", "namespace": "default", "labels": {"tier": "fe"}},
            "spec": {"selector": {"app": "web"} if selector is None else selector,
                     "ports": ports or [{"name": "http", "port": 80, "targetPort": "http",
                                         "protocol": "TCP"}], **spec}}


def pod(name, ip, ready=True, labels=None, port=8080, phase="Running", **meta):
    return {"metadata": {"name": name, "namespace": "default", "uid": f"{name}-uid",
                         "labels": labels or {"app": "web"}, **meta},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": port, "protocol": "TCP"}]}]},
            "status": {"phase": phase, "podIP": ip,
                       "conditions": [{"type": "Ready",
                                       "status": "True" if ready else "False"}]}}


def sync_once(api, key="default/web"):
    async def body():
        infs = [Informer(api, "services", indexers={"namespace": by_namespace}),
                Informer(api, "endpoints"),
                Informer(api, "pods", indexers={"namespace": by_namespace})]
        for inf in infs:
            await inf.list_and_replace()
        ctrl = EndpointsController(api, *infs, EventRecorder(api, "t"))
        api.clear_actions()
        await ctrl.sync(key)
    asyncio.run(body())


def test_ready_and_not_ready_addresses_with_named_target_port():
    api = FakeApi()
    api.seed("services", service())
    api.seed("pods", pod("b", "10.0.0.2"), pod("a", "10.0.0.9", ready=False),
             pod("other", "10.0.0.3", labels={"app": "db"}),
             pod("noip", ""), pod("done", "10.0.0.4", phase="Succeeded"),
             pod("going", "10.0.0.5", deletionTimestamp="2026-01-01T00:00:00Z"))
    sync_once(api)
    [ep] = api.objects("endpoints")
    assert ep["metadata"]["labels"] == {"tier": "fe"}
    [subset] = ep["subsets"]
    assert [a["ip"] for a in subset["addresses"]] == ["10.0.0.2"]
    assert subset["addresses"][0]["targetRef"] == {"kind": "Pod", "namespace": "default",
                                                   "name": "b", "uid": "b-uid"}
    assert subset["addresses"][0]["nodeName"] == "n1"
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.0.0.9"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]


def test_pods_with_different_ports_land_in_different_subsets():
    subsets = endpoint_subsets(service(), [pod("a", "10.0.0.1", port=8080),
                                           pod("b", "10.0.0.2", port=9090)])
    assert [s["ports"][0]["port"] for s in subsets] == [8080, 9090]


def test_numeric_target_port_and_publish_not_ready():
    svc = service(ports=[{"port": 80, "targetPort": 8000}], publishNotReadyAddresses=True)
    [subset] = endpoint_subsets(svc, [pod("a", "10.0.0.1", ready=False)])
    assert subset["ports"] == [{"port": 8000, "protocol": "TCP"}]
    assert [a["ip"] for a in subset["addresses"]] == ["10.0.0.1"]


def test_unchanged_endpoints_are_not_rewritten():
    api = FakeApi()
    api.seed("services", service())
    api.seed("pods", pod("a", "10.0.0.1"))
    sync_once(api)
    sync_once(api)
    assert api.mutations() == []


def test_endpoints_follow_a_pod_that_stops_being_ready():
    api = FakeApi()
    api.seed("services", service())
    api.seed("pods", pod("a", "10.0.0.1"))
    sync_once(api)
    api.seed("pods", pod("a", "10.0.0.1", ready=False))
    sync_once(api)
    [subset] = api.objects("endpoints")[0]["subsets"]
    assert "addresses" not in subset and subset["notReadyAddresses"][0]["ip"] == "10.0.0.1"


def test_service_without_selector_is_left_alone_and_deleted_service_loses_endpoints():
    api = FakeApi()
    api.seed("services", service(selector={}))
    api.seed("endpoints", {"metadata": {"name": "web", "namespace": "default"},
                           "subsets": [{"addresses": [{"ip": "192.0.2.1"}]}]})
    sync_once(api)
    assert api.mutations() == []
    sync_once(api, "default/gone")
    api.seed("endpoints", {"metadata": {"name": "gone", "namespace": "default"}})
    sync_once(api, "default/gone")
    assert [(a.verb, a.name) for a in api.mutations()] == [("delete", "gone")]
