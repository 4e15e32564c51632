"""A whole scheduling decision: which node, or the FailedScheduling message."""

import pytest

from agents.scheduler.filters import Unfit
from agents.scheduler.framework import (
    feasible_nodes_to_find,
    fit_error_message,
    pick,
    schedule,
)
from agents.scheduler.nodeinfo import NodeInfo, node_infos
from agents.scheduler.testing import CONTROL_PLANE_TAINT, node, pod

pytestmark = pytest.mark.unit


def test_the_message_in_kubernetes_form_for_mixed_reasons():
    nodes = node_infos([node("cp", taints=[CONTROL_PLANE_TAINT]), node("w1", cpu="2"),
                        node("w2", cpu="2")], [])
    result = schedule(pod("big", cpu="3"), nodes)
    assert result.node is None
    assert result.message == (
        "0/3 nodes are available: 1 node(s) had untolerated taint "
        "{node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. "
        "preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
        "2 No preemption victims found for incoming pod.")


@pytest.mark.parametrize("case, nodes, p, expected", [
    ("cordoned and not ready",
     [node("a", unschedulable=True), node("b", ready="False")], pod("p"),
     "0/2 nodes are available: 1 node(s) had untolerated taint "
     "{node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable. preemption: 0/2 nodes "
     "are available: 2 Preemption is not helpful for scheduling."),
    ("one node short of cpu and memory counts each reason",
     [node("a", cpu="1", memory="1Gi")], pod("p", cpu="2", memory="2Gi"),
     "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. preemption: 0/1 "
     "nodes are available: 1 No preemption victims found for incoming pod."),
    ("selector",
     [node("a"), node("b")], pod("p", node_selector={"disk": "ssd"}),
     "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. "
     "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."),
    ("preemptionPolicy Never",
     [node("a", cpu="1")], pod("p", cpu="2", extra={"preemptionPolicy": "Never"}),
     "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to "
     "preemptionPolicy=Never."),
    ("no nodes at all", [], pod("p"), "no nodes available to schedule pods"),
])
def test_failed_scheduling_messages(case, nodes, p, expected):
    result = schedule(p, node_infos(nodes, []))
    assert (result.node, result.message) == (None, expected), case


def test_counts_are_sorted_as_strings_like_go_does():
    unfit = {f"n{i}": Unfit(("Insufficient cpu",), True) for i in range(10)}
    unfit["x"] = Unfit(("node(s) were unschedulable",))
    message = fit_error_message(11, unfit)
    # "1 node(s)..." sorts before "10 Insufficient cpu" as strings.
    assert message.startswith("0/11 nodes are available: 1 node(s) were unschedulable, "
                              "10 Insufficient cpu. ")


def test_picks_the_only_feasible_node_and_records_why_the_others_failed():
    nodes = node_infos([node("a", cpu="1"), node("b", cpu="8"),
                        node("c", unschedulable=True)], [])
    result = schedule(pod("p", cpu="2"), nodes)
    assert result.node == "b"
    assert {k: v.reasons for k, v in result.unfit.items()} == {
        "a": ("Insufficient cpu",), "c": ("node(s) were unschedulable",)}


def test_prefers_the_least_loaded_node():
    pods = [pod("b1", cpu="3", memory="6Gi", node_name="a")]
    result = schedule(pod("p", cpu="500m", memory="1Gi"),
                      node_infos([node("a"), node("b")], pods))
    assert result.node == "b"
    assert result.scores["b"] > result.scores["a"]


def test_ties_go_to_the_node_with_fewest_pods_then_the_smallest_name():
    assert pick({"n2": 10, "n1": 10, "n0": 5}) == "n1"
    assert pick({"n2": 10, "n1": 10, "n0": 5}, {"n1": 4, "n2": 3, "n0": 0}) == "n2"
    assert pick({"n2": 10, "n1": 10}, {"n1": 3, "n2": 3}) == "n1"
    nodes = node_infos([node("z"), node("m"), node("a")], [])
    assert schedule(pod("p", cpu="1"), nodes).node == "a"


def test_replicas_spread_across_equal_nodes():
    infos = node_infos([node(f"n{i}") for i in range(3)], [])
    by_name = {i.name: i for i in infos}
    placed = []
    for i in range(6):
        p = pod(f"web-{i}", cpu="100m", memory="128Mi", owner="web")
        chosen = schedule(p, infos).node
        by_name[chosen].add_pod({**p, "spec": {**p["spec"], "nodeName": chosen}})
        placed.append(chosen)
    assert sorted(placed) == ["n0", "n0", "n1", "n1", "n2", "n2"]


def test_fills_nodes_until_full_then_reports_insufficient():
    infos = node_infos([node("a", cpu="2"), node("b", cpu="2")], [])
    by_name = {i.name: i for i in infos}
    placed = []
    for i in range(5):
        result = schedule(pod(f"p{i}", cpu="1"), infos)
        if result.node is None:
            placed.append(result.message.split(".")[0])
            continue
        by_name[result.node].add_pod(pod(f"p{i}", cpu="1", node_name=result.node))
        placed.append(result.node)
    assert sorted(placed[:4]) == ["a", "a", "b", "b"]
    assert placed[4] == "0/2 nodes are available: 2 Insufficient cpu"


def test_scheduling_does_not_modify_its_inputs():
    n = node("a")
    p = pod("p", cpu="1")
    before = (repr(n), repr(p))
    infos = [NodeInfo.of(n)]
    schedule(p, infos)
    assert (repr(n), repr(p)) == before
    assert infos[0].pod_count == 0


@pytest.mark.parametrize("total, expected", [(0, 0), (3, 3), (100, 100), (150, 100),
                                             (500, 230), (1000, 420), (5000, 500)])
def test_feasible_nodes_to_find_follows_kube_scheduler(total, expected):
    assert feasible_nodes_to_find(total) == expected


def test_sampling_stops_after_enough_feasible_nodes_and_rotates_the_start():
    infos = node_infos([node(f"n{i:03}") for i in range(500)], [])
    first = schedule(pod("p", cpu="1"), infos, sample=True, start=0)
    assert len(first.scores) == 230 and first.next_start == 230
    second = schedule(pod("q", cpu="1"), infos, sample=True, start=first.next_start)
    assert set(second.scores) == {f"n{i:03}" for i in range(230, 460)}
    assert second.next_start == 460
    wrapped = schedule(pod("r", cpu="1"), infos, sample=True, start=460)
    assert len(wrapped.scores) == 230 and wrapped.next_start == 190


def test_sampling_still_reports_every_node_when_none_fits():
    infos = node_infos([node(f"n{i}", cpu="1") for i in range(300)], [])
    result = schedule(pod("p", cpu="2"), infos, sample=True, start=17)
    assert result.node is None and len(result.unfit) == 300
    assert result.message.startswith("0/300 nodes are available: 300 Insufficient cpu.")


def test_a_burst_of_request_less_pods_splits_evenly_once_scores_saturate():
    # 2 CPUs per node: after 20 default-request (100m) pods each, CPU scores are 0 on both
    infos = node_infos([node("w1", cpu="2", memory="64Gi"), node("w2", cpu="2", memory="64Gi")], [])
    by_name = {i.name: i for i in infos}
    for i in range(50):
        p = pod(f"p{i}")
        by_name[schedule(p, infos).node].add_pod(p)
    assert (by_name["w1"].pod_count, by_name["w2"].pod_count) == (25, 25)
