"""Events about pods, written the way the kubelet writes them (source component
"kubelet", host = node). Writing is best effort: a failed write is logged, never raised.
A repeat of the same (pod, reason, message) bumps `count` on the existing Event.

Events are written by one background writer, in order, one at a time: a burst of pod
starts must not put dozens of event writes in front of the pods' status updates (the
kubelet rate-limits its event writes for the same reason)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from agents.kube.errors import ApiError

from .nodestatus import now_rfc3339

log = logging.getLogger(__name__)

NORMAL, WARNING = "Normal", "Warning"


def event_object(pod: dict, reason: str, message: str, kind: str, node: str,
                 field_path: str = "", now: str | None = None) -> dict:
    meta = pod.get("metadata") or {}
    now = now or now_rfc3339()
    involved = {"kind": "Pod", "apiVersion": "v1", "namespace": meta.get("namespace"),
                "name": meta.get("name"), "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion")}
    if field_path:
        involved["fieldPath"] = field_path
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta.get('name')}.{uuid.uuid4().hex[:16]}",
                         "namespace": meta.get("namespace")},
            "involvedObject": involved, "reason": reason, "message": message, "type": kind,
            "source": {"component": "kubelet", "host": node},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": "kubelet", "reportingInstance": node}


class EventRecorder:
    def __init__(self, api, node: str):
        self.api, self.node = api, node
        self._seen: dict[tuple, dict] = {}     # (uid, reason, message) → the Event written
        self._pending: asyncio.Queue | None = None
        self._writer: asyncio.Task | None = None
        self.recorded: list[tuple[str, str, str]] = []   # (pod key, reason, message)

    def emit(self, pod: dict, reason: str, message: str, kind: str = NORMAL,
             container: str = "") -> None:
        meta = pod.get("metadata") or {}
        self.recorded.append((f"{meta.get('namespace')}/{meta.get('name')}", reason, message))
        field_path = f"spec.containers{{{container}}}" if container else ""
        if self._pending is None:
            self._pending = asyncio.Queue()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="kubelet-events")
        self._pending.put_nowait((pod, reason, message, kind, field_path))

    async def _write_all(self) -> None:
        while True:
            item = await self._pending.get()
            try:
                await self._write(*item)
            finally:
                self._pending.task_done()

    async def _write(self, pod, reason, message, kind, field_path) -> None:
        key = ((pod.get("metadata") or {}).get("uid"), reason, message)
        try:
            old = self._seen.get(key)
            if old is not None:
                patch = {"count": int(old.get("count") or 1) + 1,
                         "lastTimestamp": now_rfc3339()}
                self._seen[key] = await self.api.patch(
                    "events", old["metadata"]["name"], patch, old["metadata"]["namespace"])
                return
            event = event_object(pod, reason, message, kind, self.node, field_path)
            self._seen[key] = await self.api.create("events", event)
        except ApiError as exc:
            self._seen.pop(key, None)
            log.info("event %s for %s not written: %s", reason,
                     (pod.get("metadata") or {}).get("name"), exc)
        except Exception as exc:  # noqa: BLE001 - events are best effort
            log.info("event %s not written: %s", reason, exc)

    def forget(self, uid: str) -> None:
        for key in [k for k in self._seen if k[0] == uid]:
            del self._seen[key]

    async def drain(self, timeout: float = 5.0) -> None:
        """Write what is queued (up to `timeout`), then stop the writer."""
        if self._pending is not None and self._writer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pending.join(), timeout)
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
