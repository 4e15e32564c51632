"""The registry's write path on an in-memory store: a binding is one compare-and-swap
write, and a write that starts from the watch cache's (possibly stale) copy still ends
with etcd's truth."""

import asyncio
import json

import pytest

from agents.apiserver.errors import ApiError
from agents.apiserver.registry import Registry, _same, encode
from agents.apiserver.resources import by_kind
from agents.apiserver.storage import Item

pytestmark = pytest.mark.unit

PODS = by_kind("v1", "Pod")
NS = by_kind("v1", "Namespace")


class MemoryStore:
    """The EtcdStorage calls the registry makes, on a dict, counting reads and writes."""

    def __init__(self):
        self.items: dict[str, Item] = {}
        self.rev = 1
        self.calls: list[str] = []

    async def get(self, key):
        self.calls.append("get")
        return self.items.get(key)

    async def revision(self):
        return self.rev

    def _put(self, key, value):
        self.rev += 1
        old = self.items.get(key)
        self.items[key] = Item(key, value, self.rev, old.create_revision if old else self.rev)
        return self.rev

    async def create(self, key, value):
        self.calls.append("create")
        return None if key in self.items else self._put(key, value)

    async def update(self, key, value, expected):
        self.calls.append("update")
        cur = self.items.get(key)
        if cur is None or cur.mod_revision != expected:
            return False, self.rev, cur
        return True, self._put(key, value), None

    async def delete(self, key, expected):
        self.calls.append("delete")
        cur = self.items.get(key)
        if cur is None or cur.mod_revision != expected:
            return False, self.rev, cur
        self.rev += 1
        del self.items[key]
        return True, self.rev, None


class StaleCache:
    """A watch cache whose latest copy of every key is whatever the test pinned."""

    def __init__(self):
        self.pinned: dict[str, Item] = {}

    def latest(self, key):
        return self.pinned.get(key)


def setup(cached=False):
    store = MemoryStore()
    registry = Registry(store)
    cache = StaleCache()
    if cached:
        registry.watch_caches = {"pods": cache}

    async def make_pod(name="p", **spec):
        if registry.namespaces is None and NS.key(None, "default") not in store.items:
            await registry.create(NS, None, {"metadata": {"name": "default"}})
        return await registry.create(PODS, "default", {"metadata": {"name": name}, "spec": {
            "containers": [{"name": "c", "image": "i"}], **spec}})
    return store, registry, cache, make_pod


def stored(store, name="p"):
    return json.loads(store.items[PODS.key("default", name)].value)


def test_a_binding_is_one_read_and_one_compare_and_swap_write():
    store, registry, _, make_pod = setup()

    async def run():
        pod = await make_pod()
        store.calls.clear()
        await registry.bind(PODS, "default", "p", "n1", pod["metadata"]["uid"])
    asyncio.run(run())
    assert store.calls == ["get", "update"]
    pod = stored(store)
    assert pod["spec"]["nodeName"] == "n1"
    assert [(c["type"], c["status"]) for c in pod["status"]["conditions"]] == [
        ("PodScheduled", "True")]
    assert not pod["metadata"].get("managedFields")  # like assignPod: no entry


def test_a_binding_refuses_a_bound_pod_and_a_wrong_uid():
    store, registry, _, make_pod = setup()

    async def run():
        await make_pod()
        with pytest.raises(ApiError) as wrong_uid:
            await registry.bind(PODS, "default", "p", "n1", "not-its-uid")
        await registry.bind(PODS, "default", "p", "n1")
        with pytest.raises(ApiError) as bound:
            await registry.bind(PODS, "default", "p", "n2")
        return wrong_uid.value, bound.value
    wrong_uid, bound = asyncio.run(run())
    assert wrong_uid.code == 409 and "Precondition failed" in wrong_uid.message
    assert bound.code == 409 and 'already assigned to node "n1"' in bound.message
    assert stored(store)["spec"]["nodeName"] == "n1"


def test_a_write_from_the_cache_needs_no_etcd_read():
    store, registry, cache, make_pod = setup(cached=True)
    key = PODS.key("default", "p")

    async def run():
        await make_pod()
        cache.pinned[key] = store.items[key]
        store.calls.clear()
        await registry.bind(PODS, "default", "p", "n1")
    asyncio.run(run())
    assert store.calls == ["update"]
    assert stored(store)["spec"]["nodeName"] == "n1"


def test_a_stale_cached_copy_costs_a_retry_not_a_wrong_answer():
    store, registry, cache, make_pod = setup(cached=True)
    key = PODS.key("default", "p")

    async def run():
        await make_pod()
        cache.pinned[key] = store.items[key]  # then the pod changes behind the cache
        await registry.patch(PODS, "default", "p", _label("v2"), manager="m")
        store.calls.clear()
        await registry.patch(PODS, "default", "p", _label("v3"), manager="m")
    asyncio.run(run())
    assert store.calls == ["update", "update"]  # the failed CAS returned etcd's copy
    assert stored(store)["metadata"]["labels"] == {"v": "v3"}


def test_a_stale_cache_never_decides_an_error_or_a_no_op():
    store, registry, cache, make_pod = setup(cached=True)
    key = PODS.key("default", "p")

    async def run():
        old = await make_pod()
        await registry.bind(PODS, "default", "p", "n1")
        cache.pinned[key] = store.items[key]  # the cache saw the bound pod, then
        _, gone = await registry.delete(PODS, "default", "p", {"gracePeriodSeconds": 0})
        assert gone
        new = await make_pod()  # a new pod of the same name, not bound
        assert new["metadata"]["uid"] != old["metadata"]["uid"]
        await registry.bind(PODS, "default", "p", "n2")  # stale copy says "bound to n1"
        assert stored(store)["spec"]["nodeName"] == "n2"
        # a no-op judged on a stale copy: the cache shows the label already set …
        await registry.patch(PODS, "default", "p", _label("x"), manager="m")
        cache.pinned[key] = store.items[key]
        await registry.patch(PODS, "default", "p", _label("y"), manager="m")
        # … but etcd has "y": setting "x" again is a real change
        await registry.patch(PODS, "default", "p", _label("x"), manager="m")
        assert stored(store)["metadata"]["labels"] == {"v": "x"}
        # an update carrying etcd's resourceVersion is not a conflict with a stale copy
        current = json.loads(store.items[key].value)
        current["metadata"]["resourceVersion"] = str(store.items[key].mod_revision)
        current["metadata"]["labels"] = {"v": "z"}
        await registry.update(PODS, "default", "p", current)
        assert stored(store)["metadata"]["labels"] == {"v": "z"}
    asyncio.run(run())


def _label(value):
    def mutate(pod):
        pod["metadata"]["labels"] = {"v": value}
        return pod
    return mutate


def test_same_ignores_resource_version_and_managed_fields_times_only():
    a = {"metadata": {"name": "x", "resourceVersion": "1", "managedFields": [
        {"manager": "m", "time": "t1", "fieldsV1": {}}]}, "spec": {"a": 1}}
    b = {"metadata": {"name": "x", "resourceVersion": "2", "managedFields": [
        {"manager": "m", "time": "t2", "fieldsV1": {}}]}, "spec": {"a": 1}}
    assert _same(a, b)
    assert not _same(a, {**b, "spec": {"a": 2}})
    assert not _same(a, {**b, "metadata": {**b["metadata"], "labels": {"x": "y"}}})
    assert not _same(a, {**b, "metadata": {**b["metadata"], "managedFields": [
        {"manager": "other", "time": "t2", "fieldsV1": {}}]}})
    assert not _same(a, {**b, "status": {}})
    assert encode(a) != encode(b)  # sanity: they do differ as stored


def test_a_put_of_a_lease_deleted_behind_a_cached_copy_creates_it():
    store = MemoryStore()
    registry = Registry(store)
    cache = StaleCache()
    registry.watch_caches = {"leases": cache}
    leases = by_kind("coordination.k8s.io/v1", "Lease")
    key = leases.key("default", "n1")

    async def run():
        await registry.create(NS, None, {"metadata": {"name": "default"}})
        lease = {"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}}
        await registry.create(leases, "default", json.loads(json.dumps(lease)))
        cache.pinned[key] = store.items[key]  # the cache saw it; then it is deleted
        _, gone = await registry.delete(leases, "default", "n1")
        assert gone
        renewed = await registry.update(leases, "default", "n1", {
            "metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}})
        return renewed
    renewed = asyncio.run(run())
    assert renewed["spec"]["leaseDurationSeconds"] == 40
    assert json.loads(store.items[key].value)["spec"]["leaseDurationSeconds"] == 40
