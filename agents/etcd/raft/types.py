"""Raft data types: entries, messages, states, snapshots, configuration changes.

All records are frozen dataclasses with ``__slots__``: they are created on every
proposal and every message, so they stay small and cheap. Node ids are positive
integers; ``0`` means "nobody" (no vote, no known leader), as in etcd-io/raft.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

NONE = 0  # "no node": no vote cast, no leader known


class EntryType(IntEnum):
    EntryNormal = 0
    EntryConfChange = 1
    # Pythonic aliases
    NORMAL = 0
    CONF_CHANGE = 1


class MessageType(IntEnum):
    MsgHup = 0
    MsgBeat = 1
    MsgProp = 2
    MsgApp = 3
    MsgAppResp = 4
    MsgVote = 5
    MsgVoteResp = 6
    MsgSnap = 7
    MsgHeartbeat = 8
    MsgHeartbeatResp = 9
    MsgUnreachable = 10
    MsgSnapStatus = 11
    MsgCheckQuorum = 12
    MsgTransferLeader = 13
    MsgTimeoutNow = 14
    MsgReadIndex = 15
    MsgReadIndexResp = 16
    MsgPreVote = 17
    MsgPreVoteResp = 18


# Messages only ever generated inside a node (never valid from the network).
LOCAL_MESSAGES = frozenset(
    {
        MessageType.MsgHup,
        MessageType.MsgBeat,
        MessageType.MsgUnreachable,
        MessageType.MsgSnapStatus,
        MessageType.MsgCheckQuorum,
    }
)
RESPONSE_MESSAGES = frozenset(
    {
        MessageType.MsgAppResp,
        MessageType.MsgVoteResp,
        MessageType.MsgHeartbeatResp,
        MessageType.MsgUnreachable,
        MessageType.MsgReadIndexResp,
        MessageType.MsgPreVoteResp,
    }
)


class StateType(IntEnum):
    StateFollower = 0
    StateCandidate = 1
    StateLeader = 2
    StatePreCandidate = 3
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3


class ConfChangeType(IntEnum):
    ConfChangeAddNode = 0
    ConfChangeRemoveNode = 1
    ConfChangeUpdateNode = 2
    ConfChangeAddLearnerNode = 3
    ADD_NODE = 0
    REMOVE_NODE = 1
    UPDATE_NODE = 2
    ADD_LEARNER_NODE = 3


@dataclass(frozen=True, slots=True)
class Entry:
    term: int = 0
    index: int = 0
    type: EntryType = EntryType.EntryNormal
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    term: int = 0
    vote: int = NONE
    commit: int = 0


@dataclass(frozen=True, slots=True)
class SoftState:
    lead: int = NONE
    raft_state: StateType = StateType.StateFollower


@dataclass(frozen=True, slots=True)
class ConfState:
    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    metadata: SnapshotMeta = field(default_factory=SnapshotMeta)
    data: bytes = b""

    @property
    def index(self) -> int:
        return self.metadata.index

    @property
    def term(self) -> int:
        return self.metadata.term

    def is_empty(self) -> bool:
        return self.metadata.index == 0


EMPTY_SNAPSHOT = Snapshot()


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    to: int = NONE
    from_: int = NONE
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""


@dataclass(frozen=True, slots=True)
class ReadState:
    """A read request (``request_ctx``) is linearizable once ``index`` is applied."""

    index: int
    request_ctx: bytes


_CONF_CHANGE = struct.Struct("<BQ")


@dataclass(frozen=True, slots=True)
class ConfChange:
    type: ConfChangeType
    node_id: int
    context: bytes = b""

    def encode(self) -> bytes:
        return _CONF_CHANGE.pack(int(self.type), self.node_id) + self.context

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        if len(data) < _CONF_CHANGE.size:
            raise ValueError(f"conf change entry too short: {len(data)} bytes")
        kind, node_id = _CONF_CHANGE.unpack_from(data)
        return cls(ConfChangeType(kind), node_id, bytes(data[_CONF_CHANGE.size :]))


class ProposalDropped(Exception):
    """The proposal was not accepted (no leader, leadership transfer, node removed)."""


class NotLeader(ProposalDropped):
    """This node cannot take the request; ``leader`` is the known leader (0 if none)."""

    def __init__(self, leader: int, message: str = "") -> None:
        self.leader = leader
        super().__init__(message or f"not the leader (known leader: {leader or 'none'})")


class CompactedError(Exception):
    """The requested index is older than the storage's snapshot."""


class UnavailableError(Exception):
    """The requested index is newer than the storage's last entry."""


class SnapshotTemporarilyUnavailable(Exception):
    """The storage cannot produce a snapshot right now; the leader retries later."""
