"""A Raft consensus core in the style of etcd-io/raft: a pure state machine.

No I/O, no threads, no clock. The application drives it with ``tick()``,
``step(message)`` and ``propose(data)``, and collects ``Ready`` batches (entries and
hard state to persist, messages to send, committed entries to apply), acknowledging
each with ``advance()``. See ``rawnode`` for the loop and ``raft`` for the rules.
"""

from .codec import DecodeError, decode_message, encode_message
from .raft import Config
from .rawnode import RawNode, Ready
from .storage import MemoryStorage, Storage
from .types import (
    NONE,
    CompactedError,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    NotLeader,
    ProposalDropped,
    ReadState,
    Snapshot,
    SnapshotMeta,
    SnapshotTemporarilyUnavailable,
    SoftState,
    StateType,
    UnavailableError,
)

__all__ = [
    "NONE",
    "CompactedError",
    "Config",
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "DecodeError",
    "Entry",
    "EntryType",
    "HardState",
    "MemoryStorage",
    "Message",
    "MessageType",
    "NotLeader",
    "ProposalDropped",
    "RawNode",
    "ReadState",
    "Ready",
    "Snapshot",
    "SnapshotMeta",
    "SnapshotTemporarilyUnavailable",
    "SoftState",
    "StateType",
    "Storage",
    "UnavailableError",
    "decode_message",
    "encode_message",
]
