"""Scores as pure functions of a pod and node infos."""

import pytest

from agents.scheduler import scores
from agents.scheduler.nodeinfo import NodeInfo, PodInfo
from agents.scheduler.testing import node, pod

pytestmark = pytest.mark.unit


def info(n, *bound):
    return NodeInfo.of(n, list(bound))


@pytest.mark.parametrize("case, p, n, bound, expected", [
    ("empty node, half of each asked", pod("p", cpu="2", memory="4Gi"), node("n"), [], 50),
    ("cpu 1/4, memory 1/8 used after", pod("p", cpu="1", memory="1Gi"), node("n"), [],
     (75 + 87) // 2),
    ("bound pods count", pod("p", cpu="1", memory="1Gi"), node("n"),
     [pod("b", cpu="1", memory="3Gi", node_name="n")], (50 + 50) // 2),
    ("over capacity scores 0 for that resource", pod("p", cpu="8", memory="4Gi"), node("n"),
     [], (0 + 50) // 2),
    ("no requests count as 100m / 200Mi", pod("p"), node("n", cpu="1", memory="400Mi"), [],
     (90 + 50) // 2),
])
def test_least_allocated(case, p, n, bound, expected):
    assert scores.least_allocated(PodInfo.of(p), info(n, *bound)) == expected, case


def test_least_allocated_prefers_the_emptier_node():
    p = PodInfo.of(pod("p", cpu="500m", memory="512Mi"))
    busy = info(node("busy"), pod("b", cpu="3", memory="6Gi", node_name="busy"))
    idle = info(node("idle"))
    assert scores.least_allocated(p, idle) > scores.least_allocated(p, busy)


@pytest.mark.parametrize("case, p, n, bound, expected", [
    ("equal shares are perfectly balanced", pod("p", cpu="2", memory="4Gi"), node("n"), [],
     100),
    ("cpu 1/2 vs memory 0 → std 0.25", pod("p", cpu="2", memory="1"), node("n"), [], 75),
    ("shares capped at 1", pod("p", cpu="8", memory="1"), node("n"), [], 50),
])
def test_balanced_allocation(case, p, n, bound, expected):
    assert scores.balanced_allocation(PodInfo.of(p), info(n, *bound)) == expected, case


def test_balanced_allocation_prefers_the_node_the_pod_would_even_out():
    # A memory-heavy pod evens out a node whose cpu is already busy.
    p = PodInfo.of(pod("p", cpu="100m", memory="4Gi"))
    cpu_busy = info(node("cpu-busy"), pod("b", cpu="2", memory="0", node_name="cpu-busy"))
    mem_busy = info(node("mem-busy"), pod("b", cpu="0", memory="4Gi", node_name="mem-busy"))
    assert scores.balanced_allocation(p, cpu_busy) > scores.balanced_allocation(p, mem_busy)


def test_spread_prefers_nodes_with_fewer_pods_of_the_same_owner():
    nodes = [info(node("a"), pod("w1", owner="web", node_name="a"),
                  pod("w2", owner="web", node_name="a")),
             info(node("b"), pod("w3", owner="web", node_name="b"),
                  pod("d1", owner="db", node_name="b")),
             info(node("c"), pod("d2", owner="db", node_name="c"))]
    got = scores.spread(PodInfo.of(pod("new", owner="web")), nodes)
    assert got == {"a": 0, "b": 50, "c": 100}


def test_spread_is_neutral_without_owner_or_without_siblings():
    nodes = [info(node("a"), pod("x", owner="other", node_name="a")), info(node("b"))]
    assert scores.spread(PodInfo.of(pod("p")), nodes) == {"a": 100, "b": 100}
    assert scores.spread(PodInfo.of(pod("p", owner="web")), nodes) == {"a": 100, "b": 100}


def test_weighted_total_counts_spreading_twice():
    n = info(node("n"))
    p = PodInfo.of(pod("p", cpu="2", memory="4Gi", owner="web"))
    assert scores.score_nodes(p, [n]) == {"n": 50 + 100 + 2 * 100}
