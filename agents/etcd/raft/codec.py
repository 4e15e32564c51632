"""Compact binary encoding of Raft messages for the peer transport.

Layout (little-endian): a fixed header, then the context bytes, the entries, and
an optional snapshot. Each entry is (term u64, index u64, type u8, len u32, data).
A snapshot is (index u64, term u64, n_voters u32, voters u64*, n_learners u32,
learners u64*, len u64, data).
"""

from __future__ import annotations

import struct

from .types import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)

VERSION = 1
# version, type, flags(bit0 reject, bit1 snapshot), to, from, term, log_term, index,
# commit, reject_hint, n_entries, context length
_HEADER = struct.Struct("<BBBQQQQQQQII")
_ENTRY = struct.Struct("<QQBI")
_SNAP_HEAD = struct.Struct("<QQI")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

_MESSAGE_TYPES = list(MessageType)
_ENTRY_TYPES = {int(t): t for t in EntryType}


class DecodeError(ValueError):
    pass


def encode_message(m: Message) -> bytes:
    flags = (1 if m.reject else 0) | (2 if m.snapshot is not None else 0)
    parts = [
        _HEADER.pack(
            VERSION,
            m.type,
            flags,
            m.to,
            m.from_,
            m.term,
            m.log_term,
            m.index,
            m.commit,
            m.reject_hint,
            len(m.entries),
            len(m.context),
        ),
        m.context,
    ]
    pack_entry = _ENTRY.pack
    for e in m.entries:
        parts.append(pack_entry(e.term, e.index, e.type, len(e.data)))
        parts.append(e.data)
    if m.snapshot is not None:
        s = m.snapshot
        cs = s.metadata.conf_state
        parts.append(_SNAP_HEAD.pack(s.metadata.index, s.metadata.term, len(cs.voters)))
        parts.extend(_U64.pack(v) for v in cs.voters)
        parts.append(_U32.pack(len(cs.learners)))
        parts.extend(_U64.pack(v) for v in cs.learners)
        parts.append(_U64.pack(len(s.data)))
        parts.append(s.data)
    return b"".join(parts)


def decode_message(b: bytes | bytearray | memoryview) -> Message:
    b = bytes(b)
    try:
        (ver, mtype, flags, to, frm, term, log_term, index, commit, hint, n_ents, ctx_len) = (
            _HEADER.unpack_from(b, 0)
        )
        if ver != VERSION:
            raise DecodeError(f"unsupported raft message encoding version {ver}")
        pos = _HEADER.size
        context = b[pos : pos + ctx_len]
        pos += ctx_len
        ents = []
        unpack_entry = _ENTRY.unpack_from
        esize = _ENTRY.size
        etypes = _ENTRY_TYPES
        for _ in range(n_ents):
            et, ei, ety, ln = unpack_entry(b, pos)
            pos += esize
            ents.append(Entry(et, ei, etypes[ety], b[pos : pos + ln]))
            pos += ln
        snap = None
        if flags & 2:
            si, st, nv = _SNAP_HEAD.unpack_from(b, pos)
            pos += _SNAP_HEAD.size
            voters = struct.unpack_from(f"<{nv}Q", b, pos)
            pos += 8 * nv
            (nl,) = _U32.unpack_from(b, pos)
            pos += 4
            learners = struct.unpack_from(f"<{nl}Q", b, pos)
            pos += 8 * nl
            (dl,) = _U64.unpack_from(b, pos)
            pos += 8
            data = b[pos : pos + dl]
            pos += dl
            snap = Snapshot(SnapshotMeta(si, st, ConfState(tuple(voters), tuple(learners))), data)
        if pos != len(b):
            raise DecodeError(f"raft message has {len(b) - pos} trailing or missing bytes")
        return Message(
            _MESSAGE_TYPES[mtype],
            to=to,
            from_=frm,
            term=term,
            log_term=log_term,
            index=index,
            entries=tuple(ents),
            commit=commit,
            snapshot=snap,
            reject=bool(flags & 1),
            reject_hint=hint,
            context=context,
        )
    except (struct.error, IndexError, KeyError) as e:
        raise DecodeError(f"malformed raft message ({len(b)} bytes): {e}") from e
