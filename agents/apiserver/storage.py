"""Object storage over the etcd v3 gRPC API (grpc.aio).

The contract with etcd, as Kubernetes uses it:
- an object's resourceVersion is its key's mod_revision; a list's is the store revision;
- create = Txn(ModRevision(key) == 0) → AlreadyExists otherwise;
- update / delete = Txn(ModRevision(key) == expected) → Conflict otherwise;
- compacted revisions surface as `Compacted` (→ 410 Expired).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from agents.etcdapi import kv_pb2, rpc_pb2

_KV = "/etcdserverpb.KV/"
_WATCH = "/etcdserverpb.Watch/Watch"
_METADATA = (("client-api-version", "3.4"),)
# gRPC refuses answers over 4 MiB by default: a LIST of 5,000 events is more. Kubernetes'
# etcd client takes answers of any size (MaxCallRecvMsgSize = MaxInt32); so do we.
CHANNEL_OPTIONS = (("grpc.max_receive_message_length", 2**31 - 1),)


class StorageError(Exception):
    pass


class Compacted(StorageError):
    """The asked revision was compacted away."""


class FutureRevision(StorageError):
    """The asked revision is newer than the store."""


class Unavailable(StorageError):
    pass


@dataclass(frozen=True)
class Item:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int


@dataclass(frozen=True)
class WatchEvent:
    type: str  # "PUT" or "DELETE"
    key: str
    value: bytes  # new value (PUT) or b"" (DELETE)
    prev_value: bytes | None  # the value before, if there was one
    revision: int  # mod revision of this change
    created: bool  # PUT that created the key


def prefix_end(prefix: bytes) -> bytes:
    """The etcd range_end covering every key that starts with prefix."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


def _item(kv) -> Item:
    return Item(kv.key.decode(), kv.value, kv.mod_revision, kv.create_revision)


def _translate(exc: grpc.aio.AioRpcError) -> StorageError:
    text = exc.details() or ""
    if "compacted" in text:
        return Compacted(text)
    if "future revision" in text:
        return FutureRevision(text)
    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(f"etcd unavailable: {text}")
    return StorageError(f"etcd error {exc.code().name}: {text}")


def endpoint_targets(servers: list[str]) -> list[str]:
    """One gRPC target (host:port) per --etcd-servers URL, in the order given."""
    return [s.split("://", 1)[-1].rstrip("/") for s in servers]


class _Endpoint:
    """A channel to one etcd member with the KV and Watch methods bound to it.

    One channel per member (not one multi-address channel) so that TLS checks each
    member's certificate against that member's own name or address.
    """

    def __init__(self, target: str, creds: grpc.ChannelCredentials | None):
        self.target = target
        self.channel = (grpc.aio.secure_channel(target, creds, options=CHANNEL_OPTIONS)
                        if creds is not None
                        else grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS))
        ser = lambda m: m.SerializeToString()  # noqa: E731
        unary = self.channel.unary_unary
        self.methods = {
            "Range": unary(_KV + "Range", request_serializer=ser,
                           response_deserializer=rpc_pb2.RangeResponse.FromString),
            "Txn": unary(_KV + "Txn", request_serializer=ser,
                         response_deserializer=rpc_pb2.TxnResponse.FromString),
            "Compact": unary(_KV + "Compact", request_serializer=ser,
                             response_deserializer=rpc_pb2.CompactionResponse.FromString),
            "Put": unary(_KV + "Put", request_serializer=ser,
                         response_deserializer=rpc_pb2.PutResponse.FromString),
        }
        self.watch = self.channel.stream_stream(
            _WATCH, request_serializer=ser,
            response_deserializer=rpc_pb2.WatchResponse.FromString)


class EtcdStorage:
    def __init__(self, servers: list[str], ca: str | None = None, cert: str | None = None,
                 key: str | None = None, timeout: float = 10.0):
        tls = any(s.startswith("https://") for s in servers) or ca is not None
        creds = grpc.ssl_channel_credentials(
            root_certificates=_read(ca), private_key=_read(key),
            certificate_chain=_read(cert)) if tls else None
        self._endpoints = [_Endpoint(t, creds) for t in endpoint_targets(servers)]
        self._active = 0  # the member requests go to; moves on when it is unavailable
        self._timeout = timeout

    async def close(self) -> None:
        for endpoint in self._endpoints:
            await endpoint.channel.close()

    async def _call(self, method: str, request):
        """Call ``method`` on the active member, failing over to the next members when
        it is unavailable; the last member's error is raised when none answers."""
        for attempt in range(len(self._endpoints)):
            index = (self._active + attempt) % len(self._endpoints)
            try:
                resp = await self._endpoints[index].methods[method](
                    request, timeout=self._timeout, metadata=_METADATA)
            except grpc.aio.AioRpcError as exc:
                error = _translate(exc)
                if isinstance(error, Unavailable) and attempt + 1 < len(self._endpoints):
                    continue
                raise error from exc
            self._active = index
            return resp
        raise AssertionError("unreachable: at least one endpoint")  # pragma: no cover

    async def revision(self) -> int:
        resp = await self._call("Range", rpc_pb2.RangeRequest(
            key=b"/registry/", range_end=prefix_end(b"/registry/"), count_only=True))
        return resp.header.revision

    async def get(self, key: str) -> Item | None:
        resp = await self._call("Range", rpc_pb2.RangeRequest(key=key.encode()))
        return _item(resp.kvs[0]) if resp.kvs else None

    async def list(self, prefix: str, revision: int = 0, limit: int = 0,
                   start_key: str | None = None) -> tuple[list[Item], int, bool]:
        """Items under prefix at revision (0 = now) from start_key on; (items, revision, more)."""
        p = prefix.encode()
        resp = await self._call("Range", rpc_pb2.RangeRequest(
            key=start_key.encode() if start_key else p, range_end=prefix_end(p),
            revision=revision, limit=limit))
        return [_item(kv) for kv in resp.kvs], resp.header.revision, resp.more

    async def create(self, key: str, value: bytes) -> int | None:
        """Write key if absent; its new mod revision, or None if it exists."""
        k = key.encode()
        resp = await self._call("Txn", rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL,
                                     target=rpc_pb2.Compare.MOD, key=k, mod_revision=0)],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=value))]))
        return resp.header.revision if resp.succeeded else None

    async def update(self, key: str, value: bytes, expected_revision: int
                     ) -> tuple[bool, int, Item | None]:
        """CAS write; (written, new revision, current item when not written)."""
        k = key.encode()
        resp = await self._call("Txn", rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.MOD,
                                     key=k, mod_revision=expected_revision)],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=value))],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=k))]))
        if resp.succeeded:
            return True, resp.header.revision, None
        kvs = resp.responses[0].response_range.kvs
        return False, resp.header.revision, (_item(kvs[0]) if kvs else None)

    async def delete(self, key: str, expected_revision: int) -> tuple[bool, int, Item | None]:
        """CAS delete; (deleted, revision of the delete, current item when not deleted)."""
        k = key.encode()
        resp = await self._call("Txn", rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.MOD,
                                     key=k, mod_revision=expected_revision)],
            success=[rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=k))],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=k))]))
        if resp.succeeded:
            return True, resp.header.revision, None
        kvs = resp.responses[0].response_range.kvs
        return False, resp.header.revision, (_item(kvs[0]) if kvs else None)

    async def put(self, key: str, value: bytes) -> int:
        resp = await self._call("Put", rpc_pb2.PutRequest(key=key.encode(), value=value))
        return resp.header.revision

    async def compact(self, revision: int) -> None:
        await self._call("Compact", rpc_pb2.CompactionRequest(revision=revision))

    async def watch(self, prefix: str, start_revision: int,
                    progress: AsyncIterator[None] | None = None
                    ) -> AsyncIterator[list[WatchEvent] | int]:
        """Changes under prefix from start_revision on, as batches of events; an int is
        a progress notification (the store revision every earlier change is covered by).
        Raises Compacted if start_revision is gone."""
        p = prefix.encode()
        create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
            key=p, range_end=prefix_end(p), start_revision=start_revision, prev_kv=True))
        for attempt in range(len(self._endpoints)):
            call = self.watch_call()
            answered = False  # once the member answered, its failures are the caller's
            try:
                await call.write(create)
                async for resp in call:
                    answered = True
                    if resp.compact_revision:
                        raise Compacted(f"revision {start_revision} compacted (now "
                                        f"{resp.compact_revision})")
                    if resp.canceled:
                        raise StorageError(f"etcd canceled the watch: {resp.cancel_reason}")
                    if resp.created:
                        continue
                    if not resp.events:
                        yield resp.header.revision
                        continue
                    yield [_event(e) for e in resp.events]
                return
            except grpc.aio.AioRpcError as exc:
                error = _translate(exc)
                if (not answered and isinstance(error, Unavailable)
                        and attempt + 1 < len(self._endpoints)):
                    self.fail_over()
                    continue
                raise error from exc
            finally:
                call.cancel()

    def watch_call(self):
        """A raw watch stream (for the watch cache, which also asks for progress)."""
        return self._endpoints[self._active].watch(metadata=_METADATA + (("hasleader", "true"),))

    def fail_over(self) -> None:
        """The active member's watch broke: send the next watch to the next member."""
        self._active = (self._active + 1) % len(self._endpoints)


def _event(e) -> WatchEvent:
    kv = e.kv
    prev = e.prev_kv.value if e.HasField("prev_kv") else None
    if e.type == kv_pb2.Event.DELETE:
        return WatchEvent("DELETE", kv.key.decode(), b"", prev, kv.mod_revision, False)
    return WatchEvent("PUT", kv.key.decode(), kv.value, prev, kv.mod_revision,
                      kv.create_revision == kv.mod_revision)


def event_from_proto(e) -> WatchEvent:
    return _event(e)


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as fh:
        return fh.read()
