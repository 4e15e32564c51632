"""Wire encoding of Raft messages; MemoryStorage and the log's edge cases."""

from __future__ import annotations

import time

import pytest

from agents.etcd.raft import (
    CompactedError,
    ConfChange,
    ConfChangeType,
    ConfState,
    DecodeError,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
    UnavailableError,
    decode_message,
    encode_message,
)
from agents.etcd.raft.log import RaftLog

pytestmark = pytest.mark.unit
MT = MessageType


def sample_messages():
    ents = tuple(Entry(3, 10 + i, EntryType.EntryNormal, b"v%d" % i) for i in range(5))
    snap = Snapshot(SnapshotMeta(42, 7, ConfState((1, 2, 3), (9,))), b"\x00state\xff" * 10)
    return [
        Message(MT.MsgHeartbeat, to=2, from_=1, term=5, commit=9, context=b"ctx"),
        Message(MT.MsgApp, to=3, from_=1, term=3, log_term=2, index=9, entries=ents, commit=8),
        Message(
            MT.MsgAppResp, to=1, from_=3, term=3, index=9, reject=True, reject_hint=4, log_term=2
        ),
        Message(MT.MsgSnap, to=2, from_=1, term=8, snapshot=snap),
        Message(MT.MsgSnap, to=2, from_=1, term=8, snapshot=Snapshot()),
        Message(
            MT.MsgVote,
            to=2,
            from_=1,
            term=2**40,
            index=2**63,
            log_term=1,
            context=b"CampaignTransfer",
        ),
        Message(MT.MsgProp, from_=1, entries=(Entry(0, 0, EntryType.EntryConfChange, b""),)),
    ]


@pytest.mark.parametrize("m", sample_messages(), ids=lambda m: m.type.name)
def test_messages_round_trip(m):
    assert decode_message(encode_message(m)) == m


def test_truncated_or_padded_input_is_a_clear_error():
    b = encode_message(sample_messages()[1])
    with pytest.raises(DecodeError, match="malformed|trailing"):
        decode_message(b[:-3])
    with pytest.raises(DecodeError, match="trailing"):
        decode_message(b + b"x")
    with pytest.raises(DecodeError, match="version"):
        decode_message(b"\x09" + b[1:])
    with pytest.raises(DecodeError, match="malformed"):
        decode_message(b[:1] + b"\xee" + b[2:])  # unknown message type


def test_codec_is_fast_enough_for_the_transport():
    m = Message(
        MT.MsgApp,
        to=2,
        from_=1,
        term=3,
        log_term=3,
        index=100,
        entries=tuple(Entry(3, 101 + i, EntryType.EntryNormal, b"x" * 256) for i in range(100)),
        commit=99,
    )
    t0 = time.process_time()
    for _ in range(100):
        decode_message(encode_message(m))
    per_entry_us = (time.process_time() - t0) / (100 * 100) * 1e6
    assert per_entry_us < 20, f"{per_entry_us:.1f} µs per entry"


def test_conf_change_encoding():
    cc = ConfChange(ConfChangeType.ConfChangeAddLearnerNode, 7, b"http://10.0.0.7:2380")
    assert ConfChange.decode(cc.encode()) == cc
    with pytest.raises(ValueError, match="too short"):
        ConfChange.decode(b"\x00")


def filled(n=10, term=1):
    st = MemoryStorage()
    st.append([Entry(term, i) for i in range(1, n + 1)])
    return st


def test_memory_storage_append_replaces_a_conflicting_suffix():
    st = filled(5)
    st.append([Entry(2, 4), Entry(2, 5), Entry(2, 6)])
    assert [(e.index, e.term) for e in st.entries(1, 7)] == [
        (1, 1),
        (2, 1),
        (3, 1),
        (4, 2),
        (5, 2),
        (6, 2),
    ]
    with pytest.raises(UnavailableError, match="missing"):
        st.append([Entry(2, 9)])


def test_memory_storage_compaction_and_snapshot():
    st = filled(10)
    snap = st.create_snapshot(6, ConfState((1, 2, 3)), b"data")
    st.compact(6)
    assert (st.first_index(), st.last_index()) == (7, 10)
    assert st.term(6) == 1
    with pytest.raises(CompactedError):
        st.term(5)
    with pytest.raises(CompactedError):
        st.entries(6, 8)
    with pytest.raises(UnavailableError):
        st.entries(7, 12)
    assert st.initial_state() == (HardState(), ConfState((1, 2, 3)))
    assert snap.metadata.index == 6 and st.snapshot() == snap
    with pytest.raises(CompactedError, match="not newer"):
        st.create_snapshot(5, None, b"")
    # entries below the snapshot are ignored on append
    st.append([Entry(1, 5), Entry(1, 6), Entry(1, 7)])
    assert st.last_index() == 7


def test_memory_storage_apply_snapshot_replaces_the_log():
    st = filled(3)
    st.apply_snapshot(Snapshot(SnapshotMeta(20, 4, ConfState((1,))), b"s"))
    assert (st.first_index(), st.last_index(), st.term(20)) == (21, 20, 4)
    with pytest.raises(CompactedError):
        st.apply_snapshot(Snapshot(SnapshotMeta(10, 4), b""))


def test_size_limited_entries_return_at_least_one():
    st = MemoryStorage()
    st.append([Entry(1, i, EntryType.EntryNormal, b"x" * 100) for i in range(1, 11)])
    assert len(st.entries(1, 11, max_size=1)) == 1
    assert len(st.entries(1, 11, max_size=400)) == 3


def test_raft_log_unstable_and_stable_views():
    st = filled(5)
    log = RaftLog(st)
    assert log.last_index() == 5 and log.committed == 0
    log.append([Entry(2, 6), Entry(2, 7)])
    assert [e.index for e in log.unstable_entries()] == [6, 7]
    assert log.maybe_append(5, 1, 6, (Entry(2, 6), Entry(3, 7), Entry(3, 8))) == 8
    assert [(e.index, e.term) for e in log.unstable_entries()] == [(6, 2), (7, 3), (8, 3)]
    assert log.committed == 6
    assert log.maybe_append(8, 9, 8, ()) is None  # prev term mismatch
    assert log.find_conflict_by_term(8, 2) == (6, 2)
    assert log.is_up_to_date(8, 3) and not log.is_up_to_date(7, 3) and log.is_up_to_date(1, 4)
    st.append(log.unstable_entries())
    log.stable_to(8, 3)
    assert log.unstable_entries() == [] and log.term(7) == 3
    assert [e.index for e in log.next_committed_ents()] == [1, 2, 3, 4, 5, 6]
