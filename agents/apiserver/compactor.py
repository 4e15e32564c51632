"""Periodic etcd compaction, as kube-apiserver does (--etcd-compaction-interval): each
tick compacts to the revision seen at the previous tick, so history older than one
interval goes away and etcd's database stops growing. Several API servers may run
this side by side: compacting an already-compacted revision is simply ignored."""

from __future__ import annotations

import asyncio
import logging
import re

from .storage import Compacted, StorageError

log = logging.getLogger("apiserver.compactor")


def parse_duration(text: str) -> float:
    """Go-style durations as kube-apiserver takes them: "5m0s", "300s", "1m", "0"."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r} (use e.g. 5m0s, 300s or 0)")
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


async def compact_forever(storage, interval: float) -> None:
    previous = 0
    while True:
        await asyncio.sleep(interval)
        try:
            current = await storage.revision()
            if previous:
                await storage.compact(previous)
                log.info("compacted etcd to revision %d", previous)
            previous = current
        except Compacted:
            previous = await storage.revision()  # another API server got there first
        except StorageError as exc:
            log.warning("compaction failed: %s", exc)
