"""The consensus core: Raft as a pure state machine (see node.py)."""

from .config import RaftConfig
from .errors import ConfChangeInProgress, InvalidRequest, NotLeader, RaftError, TransferInProgress
from .log import LogCorruption
from .node import RaftNode, bootstrap_state
from .progress import ProgressState
from .quorum import VoteResult
from .ready import Ready
from .types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    NodeId,
    PersistentState,
    ReadState,
    Role,
    Snapshot,
    SnapshotChunk,
    SnapshotMeta,
    SoftState,
)

__all__ = [
    "ConfChange", "ConfChangeInProgress", "ConfChangeType", "ConfState", "Entry", "EntryKind",
    "HardState", "InvalidRequest", "LogCorruption", "Message", "MessageType", "NodeId",
    "NotLeader", "PersistentState", "ProgressState", "RaftConfig", "RaftError", "RaftNode",
    "ReadState", "Ready", "Role", "Snapshot", "SnapshotChunk", "SnapshotMeta", "SoftState",
    "TransferInProgress", "VoteResult", "bootstrap_state",
]
