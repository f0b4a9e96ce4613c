"""The replicated key-value state machine (etcd v3 semantics, pure code).

Clients build :class:`Put` / :class:`Delete` commands and propose
``encode_command(cmd)`` through Raft; every replica hands each committed
entry to :meth:`KVStore.apply` in log order and gets the same result.
Nothing here does IO or reads a clock, so replicas cannot diverge through it.
"""

from __future__ import annotations

from .commands import (
    MAX_KEY_BYTES,
    MAX_REQUEST_ID_BYTES,
    MAX_VALUE_BYTES,
    Command,
    CommandError,
    Delete,
    KVError,
    Put,
    decode_command,
    encode_command,
)
from .store import (
    Applied,
    ApplyResult,
    KeyValue,
    KVStore,
    NotFound,
    Rejected,
    RevisionMismatch,
    SnapshotError,
)
from .watch import Compacted, EventHistory, EventType, WatchEvent

__all__ = [
    "Compacted",
    "EventHistory",
    "EventType",
    "WatchEvent",
    "MAX_KEY_BYTES",
    "MAX_VALUE_BYTES",
    "MAX_REQUEST_ID_BYTES",
    "KVError",
    "CommandError",
    "SnapshotError",
    "Put",
    "Delete",
    "Command",
    "encode_command",
    "decode_command",
    "KVStore",
    "KeyValue",
    "Applied",
    "RevisionMismatch",
    "NotFound",
    "Rejected",
    "ApplyResult",
]
