"""The client side of a watch: which event a filtered watcher sees for a change, and the
newline-delimited JSON it is written as."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from aiohttp import web

from . import tables
from .errors import ApiError
from .resources import ResourceType
from .selectors import fields_match, labels_match
from .watchcache import CachedEvent


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


def convert_event(ev: CachedEvent, labels, fields) -> tuple[str, dict] | None:
    """The watch event a filtered client sees for a change, if any: an object moving
    into the selection is ADDED, out of it DELETED."""
    def matches(obj):
        return obj is not None and labels_match(labels, obj["metadata"].get("labels")) and \
            fields_match(fields, obj)
    if ev.type == "DELETE":
        return ("DELETED", ev.prev) if matches(ev.prev) else None
    now_in, was_in = matches(ev.obj), matches(ev.prev)
    if now_in and was_in:
        return "MODIFIED", ev.obj
    if now_in:
        return "ADDED", ev.obj
    if was_in:
        return "DELETED", ev.obj
    return None


class WatchWriter:
    """Writes one client's watch events (JSON lines, or one-row Tables) in batches."""

    def __init__(self, response: web.StreamResponse, rt: ResourceType, include: str | None):
        self.response = response
        self.rt = rt
        self.include = include
        self.sent_columns = False
        self.buffer: list[bytes] = []

    async def raw(self, line: bytes) -> None:
        """A line shared by every unfiltered watcher (CachedEvent.raw_line)."""
        self.buffer.append(line)
        if len(self.buffer) >= 64:
            await self.flush()

    async def event(self, type_: str, obj: dict, shared: CachedEvent | None = None) -> None:
        if shared is not None and not self.include:
            self.buffer.append(shared.line(type_, obj))
        elif self.include:
            table = tables.table(self.rt.kind, [obj], datetime.now(UTC),
                                 obj["metadata"].get("resourceVersion", ""), self.include)
            if self.sent_columns:
                table["columnDefinitions"] = []
            self.sent_columns = True
            self.buffer.append((dumps({"type": type_, "object": table}) + "\n").encode())
        else:
            self.buffer.append((dumps({"type": type_, "object": obj}) + "\n").encode())
        if len(self.buffer) >= 64:
            await self.flush()

    async def bookmark(self, revision: int) -> None:
        self.buffer.append((dumps({"type": "BOOKMARK", "object": {
            "kind": self.rt.kind, "apiVersion": self.rt.api_version,
            "metadata": {"resourceVersion": str(revision)}}}) + "\n").encode())
        await self.flush()

    async def error(self, err: ApiError) -> None:
        self.buffer.append((dumps({"type": "ERROR", "object": err.status()}) + "\n").encode())
        await self.flush()

    async def flush(self) -> None:
        if self.buffer:
            data = b"".join(self.buffer)
            self.buffer.clear()
            await self.response.write(data)
