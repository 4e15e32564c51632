"""Informers against the in-memory FakeApi: list, watch, relist on 410, indexes, handlers."""

import asyncio

import pytest

from agents.kube.errors import Gone
from agents.kube.informer import Informer, Store, by_owner_uid, pods_by_node
from agents.kube.testing import FakeApi

pytestmark = pytest.mark.unit


def pod(name, node=None, ns="default", labels=None):
    spec = {"nodeName": node} if node else {}
    return {"metadata": {"name": name, "namespace": ns, "labels": labels or {}}, "spec": spec}


async def until(predicate, timeout=2.0):
    """Poll (yielding to the loop) until predicate() holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


class Recorder:
    def __init__(self, informer):
        self.events = []
        informer.add_handler(
            on_add=lambda o: self.events.append(("add", o["metadata"]["name"])),
            on_update=lambda old, new: self.events.append(("update", new["metadata"]["name"])),
            on_delete=lambda o: self.events.append(("delete", o["metadata"]["name"])))


def test_store_indexes_follow_updates_and_deletes():
    store = Store({"node": pods_by_node})
    store.upsert(pod("a", "n1"))
    store.upsert(pod("b", "n1"))
    store.upsert(pod("c"))
    assert [p["metadata"]["name"] for p in store.by_index("node", "n1")] == ["a", "b"]
    store.upsert(pod("a", "n2"))  # moved
    assert store.index_keys("node", "n1") == ["default/b"]
    assert store.index_keys("node", "n2") == ["default/a"]
    store.delete("default/b")
    assert store.by_index("node", "n1") == []
    assert store.get_by_name("default", "c") is not None and len(store) == 2
    with pytest.raises(KeyError, match="no index named 'zone'"):
        store.by_index("zone", "x")


def test_owner_index():
    store = Store({"owner": by_owner_uid})
    store.upsert({"metadata": {"name": "p", "namespace": "d",
                               "ownerReferences": [{"uid": "rs-1"}]}})
    assert store.index_keys("owner", "rs-1") == ["d/p"]


def test_lists_then_watches_into_the_cache_and_notifies():
    async def main():
        api = FakeApi()
        api.seed("pods", pod("a", "n1"), pod("b"))
        inf = Informer(api, "pods", indexers={"node": pods_by_node}, page_size=1)
        rec = Recorder(inf)
        task = asyncio.create_task(inf.run())
        await inf.wait_for_sync()
        assert inf.has_synced()
        assert sorted(inf.store.list_keys()) == ["default/a", "default/b"]
        await until(lambda: api.watch_count('pods'))
        created = await api.create("pods", pod("c", "n1"))
        await api.patch("pods", "b", {"spec": {"nodeName": "n2"}})
        await api.delete("pods", "a")
        await until(lambda: inf.resource_version == str(api.revision))
        task.cancel()
        return inf, rec, created
    inf, rec, created = asyncio.run(main())
    assert rec.events == [("add", "a"), ("add", "b"), ("add", "c"), ("update", "b"),
                          ("delete", "a")]
    assert sorted(inf.store.list_keys()) == ["default/b", "default/c"]
    assert [p["metadata"]["name"] for p in inf.store.by_index("node", "n1")] == ["c"]
    assert inf.store.get("default/c")["metadata"]["uid"] == created["metadata"]["uid"]


def test_relists_when_the_watch_is_gone_and_notifies_only_differences():
    async def main():
        api = FakeApi()
        api.seed("pods", pod("a"), pod("b"))
        inf = Informer(api, "pods")
        rec = Recorder(inf)
        task = asyncio.create_task(inf.run())
        await inf.wait_for_sync()
        await until(lambda: api.watch_count('pods'))
        # While the informer misses events, b goes and c comes, then the server
        # expires the watch: the informer must catch up through a fresh list.
        api.deliver_events = False
        await api.delete("pods", "b")
        await api.create("pods", pod("c"))
        api.compact()
        api.deliver_events = True
        api.expire_watches()
        await until(lambda: inf.lists == 2)
        await until(lambda: "default/c" in inf.store)
        task.cancel()
        return inf, rec
    inf, rec = asyncio.run(main())
    assert sorted(inf.store.list_keys()) == ["default/a", "default/c"]
    assert rec.events[2:] == [("delete", "b"), ("update", "a"), ("add", "c")]


def test_a_watch_from_a_compacted_version_raises_gone_and_the_informer_relists():
    async def main():
        api = FakeApi()
        api.seed("pods", pod("a"))
        inf = Informer(api, "pods")
        await inf.list_and_replace()
        await api.create("pods", pod("b"))
        api.compact()
        with pytest.raises(Gone):
            await inf.watch_once()
        task = asyncio.create_task(inf.run())
        await until(lambda: "default/b" in inf.store)
        task.cancel()
        return inf
    inf = asyncio.run(main())
    assert inf.lists == 2


def test_bookmarks_and_server_timeouts_resume_from_the_last_version_without_listing():
    async def main():
        api = FakeApi(record_reads=True)
        api.seed("pods", pod("a"))
        inf = Informer(api, "pods")
        task = asyncio.create_task(inf.run())
        await inf.wait_for_sync()
        await until(lambda: api.watch_count('pods'))
        await api.create("pods", pod("b"))
        await until(lambda: "default/b" in inf.store)
        api.end_watches()           # like a server-side timeoutSeconds
        await until(lambda: sum(a.verb == "watch" for a in api.actions) == 2)
        await api.create("pods", pod("c"))
        await until(lambda: "default/c" in inf.store)
        inf.apply("BOOKMARK", {"metadata": {"resourceVersion": "999"}})
        task.cancel()
        return inf, api
    inf, api = asyncio.run(main())
    assert inf.lists == 1
    assert inf.resource_version == "999"
    assert [a.verb for a in api.actions].count("list") == 1


def test_selectors_limit_what_is_cached():
    async def main():
        api = FakeApi()
        api.seed("pods", pod("a", "n1", labels={"app": "web"}), pod("b", "n2"),
                 pod("c", "n1", ns="other"))
        inf = Informer(api, "pods", "default", field_selector="spec.nodeName=n1")
        await inf.list_and_replace()
        web = Informer(api, "pods", label_selector="app=web")
        await web.list_and_replace()
        return inf, web
    inf, web = asyncio.run(main())
    assert inf.store.list_keys() == ["default/a"]
    assert web.store.list_keys() == ["default/a"]


def test_late_handlers_get_the_cached_objects_replayed_as_adds():
    async def main():
        api = FakeApi()
        api.seed("nodes", {"metadata": {"name": "n1"}}, {"metadata": {"name": "n2"}})
        inf = Informer(api, "nodes")
        await inf.list_and_replace()
        return Recorder(inf)
    assert sorted(asyncio.run(main()).events) == [("add", "n1"), ("add", "n2")]
