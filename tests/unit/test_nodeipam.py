"""Node IPAM: the subnet plan and first-free allocation as pure functions, then the
controller in the sample-controller style (seed a FakeApi, run `sync(name)`, compare
what it wrote)."""

import asyncio

import pytest

from agents.controller_manager.base import EventRecorder
from agents.controller_manager.main import parse_args
from agents.controller_manager.nodeipam import CidrPlan, NodeIpamController, first_free
from agents.kube.errors import ServerError
from agents.kube.informer import Informer
from agents.kube.testing import Action, FakeApi

pytestmark = pytest.mark.unit

# -- the pure core ------------------------------------------------------------------------


def test_plan_cuts_the_cluster_cidr_into_node_subnets():
    plan = CidrPlan.parse("10.244.0.0/16", 24)
    assert plan.size == 256
    assert [plan.subnet(i) for i in (0, 1, 255)] == ["10.244.0.0/24", "10.244.1.0/24",
                                                      "10.244.255.0/24"]
    assert plan.index_of("10.244.7.0/24") == 7


@pytest.mark.parametrize("cidr", ["10.245.0.0/24", "10.244.0.0/25", "10.244.0.1/24",
                                  "garbage", "fd00::/120"])
def test_cidrs_that_are_not_subnets_of_the_plan_have_no_index(cidr):
    assert CidrPlan.parse("10.244.0.0/16", 24).index_of(cidr) is None


def test_first_free_takes_the_lowest_unused_subnet():
    plan = CidrPlan.parse("10.244.0.0/16", 24)
    assert first_free(plan, set()) == "10.244.0.0/24"
    assert first_free(plan, {"10.244.0.0/24", "10.244.2.0/24"}) == "10.244.1.0/24"
    # Something outside the plan (a hand-set podCIDR) blocks nothing inside it.
    assert first_free(plan, {"192.168.0.0/24"}) == "10.244.0.0/24"


def test_a_full_range_has_nothing_free():
    plan = CidrPlan.parse("10.244.0.0/30", 31)
    assert first_free(plan, {"10.244.0.0/31", "10.244.0.2/31"}) is None


def test_ipv6_plans_work_too():
    plan = CidrPlan.parse("fd00:10::/56", 64)
    assert first_free(plan, {"fd00:10::/64"}) == "fd00:10:0:1::/64"


@pytest.mark.parametrize("cidr,mask,says", [
    ("10.244.0.0/16", 8, "must lie between"),
    ("10.244.0.0/16", 33, "must lie between"),
    ("10.244.0.1/16", 24, "not a network address"),
    ("nonsense", 24, "not a network address"),
    ("10.0.0.0/8", 28, r"at most 2\^16"),
])
def test_bad_flags_are_refused_with_what_is_wrong(cidr, mask, says):
    with pytest.raises(ValueError, match=says):
        CidrPlan.parse(cidr, mask)


# -- the controller -----------------------------------------------------------------------


def node(name, cidr=None):
    spec = {"podCIDR": cidr, "podCIDRs": [cidr]} if cidr else {}
    return {"metadata": {"name": name}, "spec": spec}


class Harness:
    def __init__(self, api, cluster="10.244.0.0/16", mask=24):
        self.api = api
        self.nodes = Informer(api, "nodes")
        self.ctrl = NodeIpamController(api, self.nodes, CidrPlan.parse(cluster, mask),
                                       EventRecorder(api, "t"))

    async def sync(self, *names):
        await self.nodes.list_and_replace()
        self.api.clear_actions()
        for name in names:
            await self.ctrl.sync(name)
        await self.ctrl.events.flush()


def patches(api):
    return {a.name: a.object["spec"]["podCIDR"] for a in api.mutations()
            if a.verb == "patch"}


def cidrs(api):
    return {n["metadata"]["name"]: n["spec"].get("podCIDR") for n in api.objects("nodes")}


def test_a_new_node_gets_a_subnet_in_both_fields():
    async def body():
        api = FakeApi()
        api.seed("nodes", node("n1"))
        h = Harness(api)
        await h.sync("n1")
        assert api.mutations() == [Action("patch", "nodes", None, "n1")]
        assert api.mutations()[0].object == {"spec": {"podCIDR": "10.244.0.0/24",
                                                      "podCIDRs": ["10.244.0.0/24"]}}
    asyncio.run(body())


def test_a_node_that_has_a_subnet_is_left_alone():
    async def body():
        api = FakeApi()
        api.seed("nodes", node("n1", "10.244.9.0/24"))
        h = Harness(api)
        await h.sync("n1")
        assert api.mutations() == []
    asyncio.run(body())


def test_allocations_are_recovered_from_existing_nodes():
    """A new leader starts with an empty controller: what is taken comes from the Nodes."""
    async def body():
        api = FakeApi()
        api.seed("nodes", node("old-1", "10.244.0.0/24"), node("old-2", "10.244.2.0/24"),
                 node("new-1"), node("new-2"))
        h = Harness(api)
        await h.sync("new-1", "new-2")
        assert patches(api) == {"new-1": "10.244.1.0/24", "new-2": "10.244.3.0/24"}
    asyncio.run(body())


def test_nodes_synced_before_the_cache_sees_the_writes_never_share_a_subnet():
    async def body():
        api = FakeApi()
        api.seed("nodes", *(node(f"n{i}") for i in range(5)))
        h = Harness(api)
        await h.nodes.list_and_replace()
        # All five syncs run against the same stale cache (no informer running).
        await asyncio.gather(*(h.ctrl.sync(f"n{i}") for i in range(5)))
        assigned = list(cidrs(api).values())
        assert len(set(assigned)) == 5 and None not in assigned
    asyncio.run(body())


def test_a_deleted_node_frees_its_subnet():
    async def body():
        api = FakeApi()
        api.seed("nodes", node("gone", "10.244.0.0/24"), node("n2", "10.244.1.0/24"))
        h = Harness(api)
        await h.nodes.list_and_replace()
        await api.delete("nodes", "gone")
        api.seed("nodes", node("fresh"))
        await h.sync("gone", "fresh")
        assert patches(api) == {"fresh": "10.244.0.0/24"}
    asyncio.run(body())


def test_a_failed_write_retries_with_the_same_subnet():
    async def body():
        api = FakeApi()
        api.seed("nodes", node("n1"), node("n2"))
        h = Harness(api)
        await h.nodes.list_and_replace()
        api.fail_next("patch", "nodes", ServerError(500, {"message": "etcd timeout"}))
        with pytest.raises(ServerError):
            await h.ctrl.sync("n1")
        await h.ctrl.sync("n2")   # must not take the subnet n1 was promised
        await h.ctrl.sync("n1")
        assert cidrs(api) == {"n1": "10.244.0.0/24", "n2": "10.244.1.0/24"}
    asyncio.run(body())


def test_a_full_range_records_one_event_and_retries_when_a_node_goes():
    async def body():
        api = FakeApi()
        api.seed("nodes", node("a", "10.244.0.0/31"), node("b", "10.244.0.2/31"),
                 node("waiting"))
        h = Harness(api, "10.244.0.0/30", 31)
        await h.sync("waiting", "waiting")
        events = [a.object for a in api.mutations() if a.resource == "events"]
        assert [(e["reason"], e["type"]) for e in events] == [("CIDRNotAvailable", "Warning")]
        assert not patches(api)
        # Deleting a node (through the informer's handler) re-queues the waiting one.
        await api.delete("nodes", "a")
        await h.nodes.list_and_replace()
        assert len(h.ctrl.queue) > 0
        api.clear_actions()
        await h.ctrl.sync("waiting")
        assert patches(api) == {"waiting": "10.244.0.0/31"}
    asyncio.run(body())


def test_running_controller_allocates_nodes_as_they_register():
    async def body():
        api = FakeApi()
        api.seed("nodes", node("cp-1", "10.244.0.0/24"))
        h = Harness(api)
        tasks = [asyncio.create_task(h.nodes.run())]
        await h.nodes.wait_for_sync()
        tasks.append(asyncio.create_task(h.ctrl.run(2)))
        try:
            for i in range(1, 4):
                await api.create("nodes", node(f"w-{i}"))
            async with asyncio.timeout(5):
                while None in cidrs(api).values():
                    await asyncio.sleep(0.01)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert sorted(cidrs(api).values()) == [f"10.244.{i}.0/24" for i in range(4)]
    asyncio.run(body())


# -- the controller manager's flags -------------------------------------------------------


def test_allocate_node_cidrs_flags_build_the_plan():
    args = parse_args(["--kubeconfig", "k", "--allocate-node-cidrs", "--cluster-cidr",
                       "10.244.0.0/16", "--node-cidr-mask-size", "24"])
    assert args.cidr_plan == CidrPlan.parse("10.244.0.0/16", 24)
    assert parse_args(["--kubeconfig", "k"]).cidr_plan is None


@pytest.mark.parametrize("extra,says", [
    ([], "needs --cluster-cidr"),
    (["--cluster-cidr", "10.244.0.0/16", "--node-cidr-mask-size", "12"], "must lie between"),
])
def test_bad_ipam_flags_stop_the_controller_manager(extra, says, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--kubeconfig", "k", "--allocate-node-cidrs", *extra])
    assert exc.value.code == 2 and says in capsys.readouterr().err
