"""The controller loop and the sample-controller test style, with a small example
controller: every ConfigMap labelled `copy=yes` gets a `<name>-copy` with the same data;
the copy goes when the original goes."""

import asyncio

import pytest

from agents.kube.controller import Controller, enqueue_handlers, process_next
from agents.kube.errors import ServerError
from agents.kube.informer import Informer
from agents.kube.resources import split_key
from agents.kube.testing import Action, FakeApi
from agents.kube.workqueue import ExponentialBackoff, WorkQueue

pytestmark = pytest.mark.unit


def cm(name, data=None, copy=True, ns="default"):
    labels = {"copy": "yes"} if copy else {}
    return {"metadata": {"name": name, "namespace": ns, "labels": labels}, "data": data or {}}


class CopyController:
    def __init__(self, api):
        self.api = api
        self.configmaps = Informer(api, "configmaps")

    async def sync(self, key):
        ns, name = split_key(key)
        if name.endswith("-copy"):
            return
        original = self.configmaps.store.get(key)
        copy = self.configmaps.store.get(f"{key}-copy")
        wanted = original is not None and original["metadata"]["labels"].get("copy") == "yes"
        if not wanted:
            if copy is not None:
                await self.api.delete("configmaps", f"{name}-copy", ns)
            return
        if copy is None:
            await self.api.create("configmaps", {
                "metadata": {"name": f"{name}-copy", "namespace": ns},
                "data": original["data"]}, ns)
        elif copy["data"] != original["data"]:
            await self.api.update("configmaps", {**copy, "data": original["data"]})


async def synced(api):
    ctl = CopyController(api)
    await ctl.configmaps.list_and_replace()
    api.clear_actions()
    return ctl


@pytest.mark.parametrize("case, seeded, key, expected", [
    ("creates the missing copy", [cm("a", {"k": "v"})], "default/a",
     [Action("create", "configmaps", "default", "a-copy")]),
    ("updates a stale copy", [cm("a", {"k": "v2"}), cm("a-copy", {"k": "v1"}, copy=False)],
     "default/a", [Action("update", "configmaps", "default", "a-copy")]),
    ("nothing to do when in step", [cm("a", {"k": "v"}), cm("a-copy", {"k": "v"}, copy=False)],
     "default/a", []),
    ("deletes the copy of a deleted original", [cm("a-copy", copy=False)], "default/a",
     [Action("delete", "configmaps", "default", "a-copy")]),
    ("ignores unlabelled configmaps", [cm("b", copy=False)], "default/b", []),
])
def test_sync_once_and_compare_actions(case, seeded, key, expected):
    async def main():
        api = FakeApi()
        api.seed("configmaps", *seeded)
        ctl = await synced(api)
        await ctl.sync(key)
        return api
    api = asyncio.run(main())
    assert api.actions == expected, case


def test_actions_carry_the_objects_sent():
    async def main():
        api = FakeApi()
        api.seed("configmaps", cm("a", {"k": "v"}))
        await (await synced(api)).sync("default/a")
        return api
    api = asyncio.run(main())
    assert api.actions[0].object["data"] == {"k": "v"}
    assert api.objects("configmaps")[1]["metadata"]["name"] == "a-copy"


def test_a_failing_sync_is_requeued_with_back_off_and_a_success_forgets_it():
    async def main():
        api = FakeApi()
        api.seed("configmaps", cm("a", {"k": "v"}))
        ctl = await synced(api)
        api.fail_next("create", "configmaps", ServerError(500, {"message": "etcd down"}),
                      times=2)
        queue = WorkQueue(backoff=ExponentialBackoff(base=0.001))
        queue.add("default/a")
        requeues = []
        for _ in range(3):
            assert await process_next(queue, ctl.sync)
            requeues.append(queue.num_requeues("default/a"))
        return api, requeues
    api, requeues = asyncio.run(main())
    assert requeues == [1, 2, 0]
    assert [a.verb for a in api.actions] == ["create", "create", "create"]
    assert [o["metadata"]["name"] for o in api.objects("configmaps")] == ["a", "a-copy"]


def test_a_key_failing_too_often_is_dropped():
    async def main():
        queue = WorkQueue(backoff=ExponentialBackoff(base=0.0001))
        queue.add("k")
        calls = []

        async def sync(key):
            calls.append(key)
            raise RuntimeError("always")
        for _ in range(3):
            await process_next(queue, sync, max_retries=2)
        return queue, calls
    queue, calls = asyncio.run(main())
    assert calls == ["k", "k", "k"]
    assert queue.num_requeues("k") == 0 and len(queue) == 0 and queue.core.next_due_in() is None


def test_handlers_only_enqueue_keys():
    queue = WorkQueue()
    handlers = enqueue_handlers(queue)
    handlers["on_add"](cm("a"))
    handlers["on_update"](cm("a"), cm("a", {"x": "1"}))
    handlers["on_delete"](cm("b"))
    assert len(queue) == 2


def test_controller_runs_informers_and_workers_until_converged():
    async def main():
        api = FakeApi()
        api.seed("configmaps", cm("a", {"k": "1"}), cm("b", {"k": "2"}), cm("c", copy=False))
        copier = CopyController(api)
        ctl = Controller("copier", copier.sync, [copier.configmaps], workers=2)
        ctl.watch(copier.configmaps)
        task = asyncio.create_task(ctl.run())

        def names():
            return sorted(o["metadata"]["name"] for o in api.objects("configmaps"))

        async def until(want):
            deadline = asyncio.get_running_loop().time() + 2
            while names() != want:
                assert asyncio.get_running_loop().time() < deadline, names()
                await asyncio.sleep(0.001)
        await until(["a", "a-copy", "b", "b-copy", "c"])
        await api.patch("configmaps", "c", {"metadata": {"labels": {"copy": "yes"}}})
        await api.delete("configmaps", "a")
        await until(["b", "b-copy", "c", "c-copy"])
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return ctl
    ctl = asyncio.run(main())
    assert ctl.queue.core.shutting_down
