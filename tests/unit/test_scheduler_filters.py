"""Filters as pure functions: table-driven cases of pod × node → fits or the reason."""

import pytest

from agents.scheduler import filters
from agents.scheduler.nodeinfo import NodeInfo, PodInfo, effective_taints, pod_requests
from agents.scheduler.testing import CONTROL_PLANE_TAINT, node, pod

pytestmark = pytest.mark.unit


def verdict(check, p, n, bound=()):
    return check(PodInfo.of(p), NodeInfo.of(n, list(bound)))


def reasons(check, p, n, bound=()):
    v = verdict(check, p, n, bound)
    return None if v is None else list(v.reasons)


# -- resources -------------------------------------------------------------------------

@pytest.mark.parametrize("case, p, n, bound, expected", [
    ("fits on empty node", pod("p", cpu="1", memory="1Gi"), node("n"), [], None),
    ("exact fit", pod("p", cpu="1"), node("n", cpu="4"), [pod("b", cpu="3", node_name="n")],
     None),
    ("cpu short by 1m", pod("p", cpu="1001m"), node("n", cpu="4"),
     [pod("b", cpu="3", node_name="n")], ["Insufficient cpu"]),
    ("memory short", pod("p", memory="5Gi"), node("n", memory="8Gi"),
     [pod("b", memory="4Gi", node_name="n")], ["Insufficient memory"]),
    ("both short, cpu first", pod("p", cpu="5", memory="9Gi"), node("n"), [],
     ["Insufficient cpu", "Insufficient memory"]),
    ("pod count full", pod("p"), node("n", pods="2"),
     [pod("a", node_name="n"), pod("b", node_name="n")], ["Too many pods"]),
    ("terminal pods hold nothing", pod("p", cpu="4"), node("n", cpu="4"),
     [pod("done", cpu="4", node_name="n", phase="Succeeded"),
      pod("failed", cpu="4", node_name="n", phase="Failed")], None),
    ("no requests always fit cpu", pod("p"), node("n", cpu="1"),
     [pod("b", cpu="1", node_name="n")], None),
    ("extended resource missing", pod("p", extra={"containers": [{
        "name": "c", "resources": {"limits": {"example.com/gpu": "1"}}}]}), node("n"), [],
     ["Insufficient example.com/gpu"]),
])
def test_node_resources_fit(case, p, n, bound, expected):
    assert reasons(filters.node_resources_fit, p, n, bound) == expected, case


def test_resource_misfit_is_resolvable_by_preemption():
    v = verdict(filters.node_resources_fit, pod("p", cpu="8"), node("n"))
    assert v.resolvable


def test_effective_requests_take_init_containers_and_overhead_into_account():
    p = {"spec": {
        "containers": [{"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                       {"resources": {"requests": {"cpu": "200m"}}}],
        "initContainers": [{"resources": {"requests": {"cpu": "500m", "memory": "32Mi"}}}],
        "overhead": {"cpu": "10m"}}}
    assert pod_requests(p) == {"cpu": 510, "memory": 64 * 2**20}


def test_a_limit_without_request_counts_as_the_request():
    p = {"spec": {"containers": [{"resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}]}}
    assert pod_requests(p) == {"cpu": 2000, "memory": 2**30}


# -- node selector and required node affinity -----------------------------------------

def term(*exprs):
    return {"matchExpressions": [dict(zip(("key", "operator", "values"), e, strict=False))
                                 for e in exprs]}


ZONE_A = node("a", labels={"zone": "a", "disk": "ssd", "gen": "5"})


@pytest.mark.parametrize("case, p, fits", [
    ("no constraints", pod("p"), True),
    ("nodeSelector matches", pod("p", node_selector={"zone": "a"}), True),
    ("nodeSelector all labels", pod("p", node_selector={"zone": "a", "disk": "hdd"}), False),
    ("nodeSelector missing label", pod("p", node_selector={"gpu": "yes"}), False),
    ("In", pod("p", affinity=[term(("zone", "In", ["a", "b"]))]), True),
    ("In miss", pod("p", affinity=[term(("zone", "In", ["b"]))]), False),
    ("NotIn", pod("p", affinity=[term(("zone", "NotIn", ["b"]))]), True),
    ("NotIn hit", pod("p", affinity=[term(("zone", "NotIn", ["a"]))]), False),
    ("NotIn absent label", pod("p", affinity=[term(("rack", "NotIn", ["1"]))]), True),
    ("Exists", pod("p", affinity=[term(("disk", "Exists"))]), True),
    ("Exists miss", pod("p", affinity=[term(("gpu", "Exists"))]), False),
    ("DoesNotExist", pod("p", affinity=[term(("gpu", "DoesNotExist"))]), True),
    ("DoesNotExist miss", pod("p", affinity=[term(("disk", "DoesNotExist"))]), False),
    ("Gt", pod("p", affinity=[term(("gen", "Gt", ["4"]))]), True),
    ("Gt equal", pod("p", affinity=[term(("gen", "Gt", ["5"]))]), False),
    ("Lt", pod("p", affinity=[term(("gen", "Lt", ["6"]))]), True),
    ("Lt not a number", pod("p", affinity=[term(("zone", "Lt", ["6"]))]), False),
    ("expressions in a term are ANDed",
     pod("p", affinity=[term(("zone", "In", ["a"]), ("disk", "In", ["hdd"]))]), False),
    ("terms are ORed",
     pod("p", affinity=[term(("zone", "In", ["b"])), term(("disk", "In", ["ssd"]))]), True),
    ("empty term matches nothing", pod("p", affinity=[{}]), False),
    ("no terms match nothing", pod("p", affinity=[]), False),
    ("matchFields metadata.name",
     pod("p", affinity=[{"matchFields": [{"key": "metadata.name", "operator": "In",
                                          "values": ["a"]}]}]), True),
    ("selector and affinity both needed",
     pod("p", node_selector={"zone": "b"}, affinity=[term(("disk", "Exists"))]), False),
])
def test_node_affinity(case, p, fits):
    got = reasons(filters.node_affinity, p, ZONE_A)
    assert got == (None if fits else ["node(s) didn't match Pod's node affinity/selector"]), case


# -- taints and tolerations ------------------------------------------------------------

T_EQ = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
T_EXEC = {"key": "dedicated", "value": "db", "effect": "NoExecute"}
T_PREFER = {"key": "dedicated", "value": "db", "effect": "PreferNoSchedule"}


@pytest.mark.parametrize("case, toleration, taint, ok", [
    ("Equal same key value effect",
     {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}, T_EQ,
     True),
    ("Equal is the default operator", {"key": "dedicated", "value": "db"}, T_EQ, True),
    ("Equal other value", {"key": "dedicated", "value": "web"}, T_EQ, False),
    ("Exists any value", {"key": "dedicated", "operator": "Exists"}, T_EQ, True),
    ("Exists other key", {"key": "other", "operator": "Exists"}, T_EQ, False),
    ("Exists with no key tolerates everything", {"operator": "Exists"}, T_EXEC, True),
    ("effect must match when given",
     {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, T_EQ, False),
    ("empty effect matches all effects", {"key": "dedicated", "value": "db"}, T_EXEC, True),
    ("empty key with Equal matches nothing", {"value": "db"}, T_EQ, False),
])
def test_toleration_matching(case, toleration, taint, ok):
    assert filters.tolerates(toleration, taint) is ok, case


@pytest.mark.parametrize("case, taints, tolerations, expected", [
    ("no taints", [], [], None),
    ("control plane refuses ordinary pods", [CONTROL_PLANE_TAINT], [],
     ["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"]),
    ("control plane toleration", [CONTROL_PLANE_TAINT],
     [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
       "effect": "NoSchedule"}], None),
    ("value shown in reason", [T_EQ], [], ["node(s) had untolerated taint {dedicated: db}"]),
    ("NoExecute also refuses", [T_EXEC], [], ["node(s) had untolerated taint {dedicated: db}"]),
    ("PreferNoSchedule does not refuse", [T_PREFER], [], None),
    ("one of two tolerated", [T_EQ, {"key": "x", "effect": "NoSchedule"}],
     [{"key": "dedicated", "operator": "Exists"}],
     ["node(s) had untolerated taint {x: }"]),
])
def test_taint_toleration(case, taints, tolerations, expected):
    got = reasons(filters.taint_toleration, pod("p", tolerations=tolerations),
                  node("n", taints=taints))
    assert got == expected, case


@pytest.mark.parametrize("case, ready, expected", [
    ("Ready", "True", None),
    ("NotReady", "False",
     ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]),
    ("no Ready condition yet", None,
     ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]),
    ("lost contact", "Unknown",
     ["node(s) had untolerated taint {node.kubernetes.io/unreachable: }"]),
])
def test_not_ready_nodes_are_refused_as_kubernetes_taints_them(case, ready, expected):
    assert reasons(filters.taint_toleration, pod("p"), node("n", ready=ready)) == expected, case


def test_not_ready_taint_is_not_doubled_when_already_present():
    n = node("n", ready="False",
             taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])
    assert len(effective_taints(n)) == 1


def test_a_pod_tolerating_not_ready_may_go_to_a_not_ready_node():
    p = pod("p", tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}])
    assert reasons(filters.taint_toleration, p, node("n", ready="False")) is None


# -- unschedulable, node name, ports ---------------------------------------------------

def test_cordoned_node_is_refused_unless_tolerated():
    cordoned = node("n", unschedulable=True)
    assert reasons(filters.node_unschedulable, pod("p"), cordoned) == \
        ["node(s) were unschedulable"]
    tolerant = pod("p", tolerations=[{"key": "node.kubernetes.io/unschedulable",
                                      "operator": "Exists", "effect": "NoSchedule"}])
    assert reasons(filters.node_unschedulable, tolerant, cordoned) is None
    assert reasons(filters.node_unschedulable, pod("p"), node("n")) is None


def test_requested_node_name():
    assert reasons(filters.node_name, pod("p", node_name="other"), node("n")) == \
        ["node(s) didn't match the requested node name"]
    assert reasons(filters.node_name, pod("p", node_name="n"), node("n")) is None


@pytest.mark.parametrize("case, want, used, clash", [
    ("same port", {"hostPort": 80, "containerPort": 80}, {"hostPort": 80, "containerPort": 8},
     True),
    ("other port", {"hostPort": 81}, {"hostPort": 80}, False),
    ("other protocol", {"hostPort": 53, "protocol": "UDP"}, {"hostPort": 53}, False),
    ("different host IPs", {"hostPort": 80, "hostIP": "10.0.0.1"},
     {"hostPort": 80, "hostIP": "10.0.0.2"}, False),
    ("wildcard clashes with specific", {"hostPort": 80},
     {"hostPort": 80, "hostIP": "10.0.0.2"}, True),
])
def test_host_ports(case, want, used, clash):
    got = reasons(filters.node_ports, pod("p", ports=[want]), node("n"),
                  [pod("b", ports=[used], node_name="n")])
    assert got == (["node(s) didn't have free ports for the requested pod ports"]
                   if clash else None), case


def test_removing_a_pod_frees_its_port_only_when_no_other_pod_uses_it():
    info = NodeInfo.of(node("n"))
    a, b = pod("a", ports=[{"hostPort": 80}]), pod("b", ports=[{"hostPort": 80}])
    info.add_pod(a)
    info.add_pod(b)
    info.remove_pod(a)
    assert filters.node_ports(PodInfo.of(pod("p", ports=[{"hostPort": 80}])), info)
    info.remove_pod(b)
    assert filters.node_ports(PodInfo.of(pod("p", ports=[{"hostPort": 80}])), info) is None


def test_node_info_counts_a_pod_once_and_forgets_it_on_removal():
    info = NodeInfo.of(node("n"))
    p = pod("a", cpu="1", memory="1Gi", owner="web")
    info.add_pod(p)
    info.add_pod(p)
    assert (info.pod_count, info.requested["cpu"], info.owner_counts) == (1, 1000, {"rs-web": 1})
    info.remove_pod(p)
    assert (info.pod_count, info.requested["cpu"], info.owner_counts["rs-web"]) == (0, 0, 0)


def test_first_failing_filter_decides_the_reason():
    cordoned_and_full = node("n", cpu="1", unschedulable=True, taints=[CONTROL_PLANE_TAINT])
    got = filters.run_filters(PodInfo.of(pod("p", cpu="2")), NodeInfo.of(cordoned_and_full))
    assert got.reasons == ("node(s) were unschedulable",)
    assert not got.resolvable
