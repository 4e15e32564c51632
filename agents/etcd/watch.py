"""Watchers: who wants which key range, and delivering applied events to them.

Everything runs on the member's event loop: events are matched and queued in the same
step that applies them, and a new watcher collects its past events and registers in one
step, so no event can fall between catch-up and live delivery.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from agents.etcdapi import kv_pb2, rpc_pb2

from .mvcc import Event, in_range

NOPUT = rpc_pb2.WatchCreateRequest.NOPUT
NODELETE = rpc_pb2.WatchCreateRequest.NODELETE


def event_pb(e: Event, with_prev: bool) -> kv_pb2.Event:
    pb = kv_pb2.Event(type=e.type, kv=e.kv.to_pb())
    if with_prev and e.prev_kv is not None:
        pb.prev_kv.CopyFrom(e.prev_kv.to_pb())
    return pb


@dataclass(eq=False)
class Watcher:
    watch_id: int
    key: bytes
    end: bytes
    prev_kv: bool
    no_put: bool
    no_delete: bool
    out: asyncio.Queue  # of (watch_id, revision, [kv_pb2.Event]) or a ready WatchResponse
    min_rev: int = 0  # a watch from a future revision ignores the events before it

    def wants(self, e: Event) -> bool:
        if e.type == kv_pb2.Event.PUT:
            if self.no_put:
                return False
        elif self.no_delete:
            return False
        return in_range(e.kv.key, self.key, self.end)


class WatchHub:
    def __init__(self) -> None:
        self.watchers: set[Watcher] = set()

    def add(self, w: Watcher) -> None:
        self.watchers.add(w)

    def remove(self, w: Watcher) -> None:
        self.watchers.discard(w)

    def notify(self, rev: int, events: list[Event]) -> None:
        if not self.watchers or not events:
            return
        for w in self.watchers:
            if rev < w.min_rev:
                continue
            mine = [e for e in events if w.wants(e)]
            if mine:
                w.out.put_nowait((w.watch_id, rev, [event_pb(e, w.prev_kv) for e in mine]))
