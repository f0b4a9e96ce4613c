"""Value types of the consensus core: entries, messages, states.

Everything here is an immutable, slotted dataclass or an enum, so that a
message handed to the transport or an entry handed to storage can never be
changed afterwards by the core. Node ids are short strings (``"n1"``).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field

NodeId = str


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class EntryKind(enum.Enum):
    NORMAL = 0
    CONF_CHANGE = 1


class MessageType(enum.Enum):
    PRE_VOTE = 1
    PRE_VOTE_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    APPEND = 5
    APPEND_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9
    SNAPSHOT_RESP = 10
    TIMEOUT_NOW = 11
    READ_INDEX = 12
    READ_INDEX_RESP = 13


class ConfChangeType(enum.Enum):
    ADD_LEARNER = "add_learner"
    ADD_VOTER = "add_voter"  # adds a new voter, or promotes a learner
    REMOVE = "remove"
    # Quorum-loss recovery: the voters become exactly those in the context,
    # without a quorum of the old configuration (see RaftNode.force_new_configuration).
    FORCE = "force"


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. ``data`` is opaque to the core except for CONF_CHANGE."""

    term: int
    index: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class ConfChange:
    """A single-server membership change; ``context`` is for the application
    (the runtime carries the new member's addresses there)."""

    type: ConfChangeType
    node_id: NodeId
    context: str = ""

    def encode(self) -> bytes:
        return json.dumps(
            {"type": self.type.value, "node": self.node_id, "context": self.context},
            sort_keys=True,
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        raw = json.loads(data)
        return cls(ConfChangeType(raw["type"]), raw["node"], raw.get("context", ""))

    @classmethod
    def force(cls, node_id: NodeId, voters: frozenset[NodeId], epoch: int) -> ConfChange:
        """The forced configuration of quorum-loss recovery, made by ``node_id``."""
        return cls(ConfChangeType.FORCE, node_id, json.dumps({"voters": sorted(voters), "epoch": epoch}))

    def forced(self) -> tuple[frozenset[NodeId], int]:
        """(voters, epoch) of a FORCE change."""
        raw = json.loads(self.context)
        return frozenset(raw["voters"]), int(raw["epoch"])


@dataclass(frozen=True, slots=True)
class ConfState:
    """The membership: who votes, who only replicates."""

    voters: frozenset[NodeId] = frozenset()
    learners: frozenset[NodeId] = frozenset()

    def members(self) -> frozenset[NodeId]:
        return self.voters | self.learners

    def apply(self, cc: ConfChange) -> ConfState:
        """The configuration after ``cc``; never both voter and learner."""
        voters, learners = set(self.voters), set(self.learners)
        if cc.type is ConfChangeType.ADD_VOTER:
            learners.discard(cc.node_id)
            voters.add(cc.node_id)
        elif cc.type is ConfChangeType.ADD_LEARNER:
            if cc.node_id not in voters:  # demotion is not supported
                learners.add(cc.node_id)
        elif cc.type is ConfChangeType.FORCE:
            return ConfState(cc.forced()[0], frozenset())
        else:
            voters.discard(cc.node_id)
            learners.discard(cc.node_id)
        return ConfState(frozenset(voters), frozenset(learners))


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before any message that depends on it is sent."""

    term: int = 0
    vote: NodeId | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int = 0
    term: int = 0
    conf: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """State-machine image at ``meta.index``; ``data`` is opaque to the core."""

    meta: SnapshotMeta = field(default_factory=SnapshotMeta)
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """A piece of a snapshot in flight (InstallSnapshot, Raft §7)."""

    meta: SnapshotMeta
    offset: int
    data: bytes
    done: bool


@dataclass(frozen=True, slots=True)
class Message:
    """A message between peers. Field meaning depends on ``type``:

    - APPEND: ``index``/``log_term`` locate the entry before ``entries``.
    - APPEND_RESP: ``index`` is the last index matched (or, on reject, the
      rejected index) and ``reject_hint``/``log_term`` the follower's
      conflict hint for fast backtracking.
    - (PRE_)VOTE: ``index``/``log_term`` are the candidate's last entry;
      ``context`` is ``b"transfer"`` for a leadership-transfer campaign.
    - SNAPSHOT / SNAPSHOT_RESP: ``snapshot`` carries a chunk; the response's
      ``index`` is the next byte offset wanted (``reject`` restarts).
    - READ_INDEX(_RESP) and HEARTBEAT(_RESP): ``context`` ties the answer
      to a read request; ``index`` is the read index in the response.
    """

    type: MessageType
    frm: NodeId
    to: NodeId
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    snapshot: SnapshotChunk | None = None


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once ``applied >= index``."""

    index: int
    request_ctx: bytes


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state, reported only when it changes."""

    leader: NodeId | None
    role: Role


@dataclass(frozen=True, slots=True)
class PersistentState:
    """What a node reads back from storage at start (see RaftNode.restore)."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: tuple[Entry, ...] = ()


def is_local_vote_message(t: MessageType) -> bool:
    return t in (MessageType.PRE_VOTE, MessageType.VOTE)
