"""The podnet role: the route sync runs on every host, forwarding is on, and every
other node's pod CIDR is routed via that node's InternalIP, with the daemon's own
protocol number.

The Nodes are read through the API server with the daemon's own kubeconfig, by the
venv's python on the host (the image has no kubectl), in the same run that reads the
routing table, so both views are taken at one moment.
"""

import pytest

from labctl.verify.checks import (
    assert_readable_only_by_root,
    assert_service_running_and_enabled,
    assert_unit_restarts_on_failure,
    run_json,
)

# Run by the venv's python: argv = kubeconfig, route proto, health URL.
STATE = r"""
import asyncio, json, subprocess, sys, urllib.request
from agents.kube.client import KubeClient
async def nodes():
    async with KubeClient.from_kubeconfig(sys.argv[1]) as api:
        return (await api.list("nodes")).get("items", [])
report = {"error": None, "nodes": [], "routes": [], "healthz": None}
try:
    report["nodes"] = [{"name": n["metadata"]["name"], "spec": n.get("spec", {}),
                        "addresses": n.get("status", {}).get("addresses", [])}
                       for n in asyncio.run(nodes())]
except Exception as exc:
    report["error"] = f"{type(exc).__name__}: {exc}"
report["routes"] = json.loads(subprocess.run(
    ["ip", "-j", "-4", "route", "show", "table", "main", "proto", sys.argv[2]],
    capture_output=True, text=True).stdout or "[]")
try:
    with urllib.request.urlopen(sys.argv[3], timeout=5) as resp:
        report["healthz"] = resp.read().decode()
except Exception as exc:
    report["healthz"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(report))
"""

_states: dict[str, dict] = {}


@pytest.fixture
def state(host, hostvars):
    name = host.backend.get_hostname()
    if name not in _states:
        url = f"http://{hostvars['podnet_bind_address']}:{hostvars['podnet_port']}/healthz"
        rc, report = run_json(host, [hostvars["podnet_python"], "-c", STATE,
                                     hostvars["podnet_kubeconfig"],
                                     str(hostvars["podnet_route_proto"]), url])
        assert rc == 0, f"reading the pod network state failed: {report}"
        _states[name] = report
    return _states[name]


def test_unit_is_running_and_enabled(host, hostvars):
    assert_service_running_and_enabled(host, hostvars["podnet_service"])


def test_unit_restarts_on_failure(host, hostvars):
    assert_unit_restarts_on_failure(host, hostvars["podnet_service"])


def test_client_key_is_readable_only_by_root(host, hostvars):
    assert_readable_only_by_root(host, [f"{hostvars['podnet_config_dir']}/client.key"])


def test_ip_forwarding_is_on(host):
    value = host.file("/proc/sys/net/ipv4/ip_forward").content_string.strip()
    assert value == "1", f"net.ipv4.ip_forward is {value}: this host would not route pods"


def test_healthz_answers_ok(state):
    assert state["healthz"] == "ok", f"/healthz answered {state['healthz']!r}"


def test_nodes_can_be_listed_with_the_daemons_identity(state):
    assert state["error"] is None, f"listing Nodes with the daemon's kubeconfig: {state['error']}"


def _internal_ip(node):
    return next((a["address"] for a in node["addresses"] if a.get("type") == "InternalIP"
                 and ":" not in a["address"]), None)


def test_every_other_nodes_pod_cidr_is_routed_via_its_internal_ip(state, hostvars):
    me = hostvars["podnet_node_name"]
    routes = {r["dst"]: r.get("gateway") for r in state["routes"]}
    wanted = {}
    for node in state["nodes"]:
        cidr, ip = node["spec"].get("podCIDR"), _internal_ip(node)
        if node["name"] != me and cidr and ":" not in cidr and ip:
            wanted[cidr] = ip
    missing = {c: ip for c, ip in wanted.items() if routes.get(c) != ip}
    assert not missing, (f"routes missing or wrong (pod CIDR: gateway): {missing}; the "
                         f"daemon's routes: {routes}")


def test_no_route_is_left_for_nodes_that_are_gone(state):
    known = {n["spec"].get("podCIDR") for n in state["nodes"]}
    stale = [r["dst"] for r in state["routes"] if r["dst"] not in known]
    assert not stale, f"routes to pod CIDRs no Node has any more: {stale}"
