import asyncio
import json

import pytest

from agents.apiserver import watchcache
from agents.apiserver.errors import ApiError
from agents.apiserver.handlers import parse_target
from agents.apiserver.selectors import parse_field_selector, parse_label_selector
from agents.apiserver.watchcache import CachedEvent, SlowWatcher, Subscription
from agents.apiserver.watchstream import convert_event

pytestmark = pytest.mark.unit


def obj(name, **labels):
    return {"metadata": {"name": name, "labels": labels}}


def ev(type_, new, prev, rev=5):
    return CachedEvent(type_, "/registry/pods/ns/x", new, prev, rev)


def test_events_move_in_and_out_of_a_label_selection():
    sel = parse_label_selector("app=web")
    assert convert_event(ev("PUT", obj("x", app="web"), None), sel, ()) [0] == "ADDED"
    assert convert_event(ev("PUT", obj("x", app="web"), obj("x", app="web")), sel, ())[0] == "MODIFIED"
    assert convert_event(ev("PUT", obj("x", app="db"), obj("x", app="web")), sel, ())[0] == "DELETED"
    assert convert_event(ev("PUT", obj("x", app="web"), obj("x", app="db")), sel, ())[0] == "ADDED"
    assert convert_event(ev("PUT", obj("x", app="db"), obj("x")), sel, ()) is None
    assert convert_event(ev("DELETE", None, obj("x", app="web")), sel, ())[0] == "DELETED"
    assert convert_event(ev("DELETE", None, obj("x", app="db")), sel, ()) is None


def test_field_selected_watch_of_one_name():
    fields = parse_field_selector("metadata.name=x", "Pod")
    assert convert_event(ev("PUT", obj("x"), None), (), fields)[0] == "ADDED"
    assert convert_event(ev("PUT", obj("y"), None), (), fields) is None


def test_subscription_filters_by_revision_and_prefix():
    async def run():
        sub = Subscription(5, "/registry/pods/ns/", False)
        sub.offer([CachedEvent("PUT", "/registry/pods/ns/a", {}, None, 5),
                   CachedEvent("PUT", "/registry/pods/other/b", {}, None, 6),
                   CachedEvent("PUT", "/registry/pods/ns/c", {}, None, 7)])
        batch = await sub.next()
        assert [e.key for e in batch] == ["/registry/pods/ns/c"]
    asyncio.run(run())


def test_slow_watcher_is_cut_off(monkeypatch):
    monkeypatch.setattr(watchcache, "MAX_BACKLOG", 2)

    async def run():
        sub = Subscription(0, "/", False)
        for rev in (1, 2, 3):
            sub.offer([CachedEvent("PUT", "/k", {}, None, rev)])
        await sub.next()
        await sub.next()
        with pytest.raises(SlowWatcher):
            await sub.next()
    asyncio.run(run())


def test_paths_parse_into_targets():
    t = parse_target("", "v1", "namespaces/default/pods/p/status")
    assert (t.rt.plural, t.namespace, t.name, t.subresource) == ("pods", "default", "p", "status")
    t = parse_target("", "v1", "namespaces/team")
    assert (t.rt.plural, t.namespace, t.name) == ("namespaces", None, "team")
    t = parse_target("", "v1", "namespaces/team/status")
    assert (t.rt.plural, t.name, t.subresource) == ("namespaces", "team", "status")
    t = parse_target("apps", "v1", "deployments")
    assert (t.rt.plural, t.namespace, t.name) == ("deployments", None, None)
    for bad in ("widgets", "namespaces/x/nodes", "namespaces/x/pods/p/frob"):
        with pytest.raises(ApiError):
            parse_target("", "v1", bad)


def test_watch_lines_are_encoded_once_per_event():
    e = watchcache.to_cached(type("E", (), {
        "type": "PUT", "key": "/k", "value": b'{"metadata":{"name":"a"}}',
        "prev_value": b'{"metadata":{"name":"a","labels":{"x":"1"}}}', "revision": 9})())
    first = e.line("MODIFIED", e.obj)
    assert first is e.line("MODIFIED", e.obj)
    assert first == b'{"type":"MODIFIED","object":{"metadata":{"name":"a","resourceVersion":"9"}}}\n'
    assert b'"labels"' in e.line("DELETED", e.prev)


def raw_event(type_, value, prev_value, revision=9):
    return watchcache.to_cached(type("E", (), {
        "type": type_, "key": "/k", "value": value, "prev_value": prev_value,
        "revision": revision})())


@pytest.mark.parametrize("type_,value,prev,want", [
    ("PUT", b'{"metadata":{"name":"a"},"spec":{"x":1}}', None, "ADDED"),
    ("PUT", b'{"metadata":{"name":"a"},"spec":{"x":2}}', b'{"metadata":{"name":"a"}}',
     "MODIFIED"),
    ("DELETE", b"", b'{"metadata":{"name":"a"},"spec":{"x":3}}', "DELETED"),
    ("PUT", b'{"kind":"Legacy","metadata":{"name":"a"}}', None, "ADDED"),  # not stored form
])
def test_an_unfiltered_watcher_gets_the_line_a_decoded_event_would_give(type_, value,
                                                                         prev, want):
    spliced = raw_event(type_, value, prev)
    line = spliced.raw_line()
    assert line is spliced.raw_line()  # built once, shared by every watcher
    decoded = raw_event(type_, value, prev)
    kind, obj = convert_event(decoded, (), ())
    assert kind == want
    assert json.loads(line) == {"type": want, "object": obj}
    assert json.loads(line)["object"]["metadata"]["resourceVersion"] == "9"
    assert not spliced._decoded  # no JSON decoding on the way


def test_a_delete_without_its_previous_value_sends_nothing():
    assert raw_event("DELETE", b"", None).raw_line() is None
    assert ev("DELETE", None, None).raw_line() is None
    assert ev("PUT", obj("x"), None).raw_line().startswith(b'{"type":"ADDED"')
