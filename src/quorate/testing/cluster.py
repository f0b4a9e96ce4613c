"""A small synchronous in-process Raft cluster for tests.

Not the simulator (``quorate.sim``): there is no clock, no random fault and
no event loop here. Every call does exactly one thing, so a test reads as a
script: tick these nodes, deliver the queued messages, cut this link, crash
that node. Randomness is only the core's election jitter, drawn from a
``random.Random`` seeded per node from ``seed``, so a run replays exactly.

Ready handling follows the contract in ``quorate.raft.ready``: persist
(snapshot, entries, hard state) into the node's durable store, queue the
messages, install the snapshot and apply the committed entries, then
``advance``. The harness checks that contract as it goes (no empty Ready, no
gap in the stored log, committed entries are durable and applied in order)
and two safety properties on every Ready (one leader per term, a committed
entry never changes): a violation raises ``SafetyViolation`` at once.

The network is a FIFO queue. A message is dropped when it is sent, and again
when it is delivered, if a partition or a drop filter matches it at that
moment, or if its addressee is down.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from quorate.raft import (
    Entry,
    EntryKind,
    HardState,
    Message,
    NodeId,
    PersistentState,
    RaftConfig,
    RaftNode,
    ReadState,
    Ready,
    Role,
    Snapshot,
    bootstrap_state,
)

MessageFilter = Callable[[Message], bool]


class SafetyViolation(AssertionError):
    """The core broke a Raft safety property or the Ready contract."""


class NotQuiescent(RuntimeError):
    """Messages kept flowing past the harness's step budget."""


@dataclass(slots=True)
class DurableStore:
    """What survives a crash: hard state, latest snapshot, entries after it."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    @classmethod
    def of(cls, state: PersistentState) -> DurableStore:
        snap_index = state.snapshot.meta.index if state.snapshot else 0
        kept = [e for e in state.entries if e.index > snap_index]
        return cls(state.hard_state, state.snapshot, kept)

    def state(self) -> PersistentState:
        return PersistentState(self.hard_state, self.snapshot, tuple(self.entries))

    @property
    def last_index(self) -> int:
        if self.entries:
            return self.entries[-1].index
        return self.snapshot.meta.index if self.snapshot else 0

    def term_at(self, index: int) -> int | None:
        if self.snapshot is not None and index == self.snapshot.meta.index:
            return self.snapshot.meta.term
        if not self.entries or not self.entries[0].index <= index <= self.entries[-1].index:
            return None
        return self.entries[index - self.entries[0].index].term

    def save(self, rd: Ready) -> None:
        """Step 1 of the Ready contract."""
        if rd.snapshot is not None:
            self.snapshot = rd.snapshot
            self.entries = []  # the core dropped its whole log too
        if rd.entries:
            first = rd.entries[0].index
            if first > self.last_index + 1:
                raise SafetyViolation(f"Ready entries start at {first}, stored log ends at {self.last_index}")
            self.entries = [e for e in self.entries if e.index < first] + list(rd.entries)
        if rd.hard_state is not None:
            if rd.hard_state.commit > self.last_index:
                raise SafetyViolation(
                    f"hard state commit {rd.hard_state.commit} beyond stored index {self.last_index}")
            self.hard_state = rd.hard_state

    def compact(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.entries = [e for e in self.entries if e.index > snapshot.meta.index]


@dataclass(slots=True)
class AppState:
    """The replicated state machine of the harness: the applied payloads."""

    index: int = 0
    items: list[tuple[int, bytes]] = field(default_factory=list)

    def apply(self, e: Entry) -> None:
        if e.index != self.index + 1:
            raise SafetyViolation(f"applied entry {e.index} after {self.index}: entries skipped or repeated")
        self.index = e.index
        if e.kind is EntryKind.NORMAL and e.data:
            self.items.append((e.index, e.data))

    def image(self, upto: int) -> bytes:
        return json.dumps([[i, d.hex()] for i, d in self.items if i <= upto]).encode()

    @classmethod
    def from_snapshot(cls, snap: Snapshot | None) -> AppState:
        if snap is None:
            return cls()
        raw = json.loads(snap.data) if snap.data else []
        return cls(snap.meta.index, [(i, bytes.fromhex(h)) for i, h in raw])


@dataclass(slots=True)
class Member:
    """One slot of the cluster: ``store`` survives a crash, the rest not."""

    id: NodeId
    store: DurableStore
    node: RaftNode | None = None
    app: AppState = field(default_factory=AppState)
    read_states: list[ReadState] = field(default_factory=list)
    incarnation: int = 0


class Cluster:
    def __init__(
        self,
        ids: Iterable[NodeId],
        config: RaftConfig | None = None,
        seed: int = 0,
        states: dict[NodeId, PersistentState] | None = None,
        max_steps: int = 20_000,
    ) -> None:
        ids = list(ids)
        self.config = config or RaftConfig()
        self.seed = seed
        self.max_steps = max_steps
        self.members: dict[NodeId, Member] = {}
        self.queue: deque[Message] = deque()
        # Every message the network saw, in order: ("deliver"|"drop", msg).
        self.trace: list[tuple[str, Message]] = []
        self._isolated: set[NodeId] = set()
        self._cuts: set[frozenset[NodeId]] = set()
        self._filters: list[MessageFilter] = []
        self.leaders_by_term: dict[int, set[NodeId]] = {}
        self._committed: dict[int, tuple[int, EntryKind, bytes]] = {}
        boot = bootstrap_state(sorted(ids))
        for i in ids:
            self.add_node(i, (states or {}).get(i, boot))

    # -- membership of the harness ---------------------------------------------

    def add_node(self, node_id: NodeId, state: PersistentState | None = None) -> RaftNode:
        """Start a node from ``state`` (an empty one for a node joining later)."""
        if node_id in self.members:
            raise ValueError(f"{node_id} already exists")
        self.members[node_id] = Member(node_id, DurableStore.of(state or PersistentState()))
        return self._boot(self.members[node_id])

    def _boot(self, m: Member) -> RaftNode:
        st = m.store.state()
        m.app = AppState.from_snapshot(st.snapshot)
        m.read_states = []
        rng = random.Random(f"{self.seed}/{m.id}/{m.incarnation}")
        m.node = RaftNode(m.id, self.config, rng, st, applied=m.app.index)
        self._note_roles(m)
        return m.node

    @property
    def ids(self) -> list[NodeId]:
        return sorted(self.members)

    def live(self) -> list[NodeId]:
        return [i for i in self.ids if self.members[i].node is not None]

    def node(self, node_id: NodeId) -> RaftNode:
        n = self.members[node_id].node
        if n is None:
            raise ValueError(f"{node_id} is down")
        return n

    def crash(self, node_id: NodeId) -> None:
        """Lose everything but the durable store (unprocessed output too)."""
        self.members[node_id].node = None

    def restart(self, node_id: NodeId) -> RaftNode:
        m = self.members[node_id]
        if m.node is not None:
            raise ValueError(f"{node_id} is running")
        m.incarnation += 1
        return self._boot(m)

    # -- the network -------------------------------------------------------------

    def isolate(self, node_id: NodeId) -> None:
        self._isolated.add(node_id)

    def cut(self, a: NodeId, b: NodeId) -> None:
        self._cuts.add(frozenset((a, b)))

    def drop(self, predicate: MessageFilter) -> MessageFilter:
        """Drop every message ``predicate`` accepts, until ``heal``."""
        self._filters.append(predicate)
        return predicate

    def undrop(self, predicate: MessageFilter) -> None:
        self._filters.remove(predicate)

    def heal(self) -> None:
        """Remove every partition and drop filter."""
        self._isolated.clear()
        self._cuts.clear()
        self._filters.clear()

    def _blocked(self, msg: Message) -> bool:
        m = self.members.get(msg.to)
        return (
            m is None or m.node is None
            or msg.frm in self._isolated or msg.to in self._isolated
            or frozenset((msg.frm, msg.to)) in self._cuts
            or any(f(msg) for f in self._filters)
        )

    def _send(self, msg: Message) -> None:
        if self._blocked(msg):
            self.trace.append(("drop", msg))
        else:
            self.queue.append(msg)

    def pending(self) -> list[Message]:
        return list(self.queue)

    def step_one(self, position: int = 0) -> tuple[Message, bool]:
        """Take one queued message; deliver it (and process the addressee's
        Ready) unless the network now drops it. Returns (message, delivered)."""
        msg = self.queue[position]
        del self.queue[position]
        if self._blocked(msg):
            self.trace.append(("drop", msg))
            return msg, False
        self.trace.append(("deliver", msg))
        m = self.members[msg.to]
        assert m.node is not None
        m.node.step(msg)
        self._process(m)
        return msg, True

    def discard(self, position: int = 0) -> Message:
        """Lose one queued message."""
        msg = self.queue[position]
        del self.queue[position]
        self.trace.append(("drop", msg))
        return msg

    def deliver(self) -> int:
        """Process every node's Ready, then deliver until nothing is left.
        Returns the number of messages delivered."""
        self.flush()
        delivered = 0
        for _ in range(self.max_steps):
            if not self.queue:
                return delivered
            _, ok = self.step_one()
            delivered += ok
        raise NotQuiescent(f"still {len(self.queue)} messages queued after {self.max_steps} steps")

    stabilize = deliver

    # -- time and requests --------------------------------------------------------

    def tick(self, n: int = 1, nodes: Iterable[NodeId] | None = None) -> None:
        """Tick live nodes ``n`` times each; nothing is delivered."""
        targets = self.live() if nodes is None else list(nodes)
        for _ in range(n):
            for i in targets:
                self.node(i).tick()

    def run(self, ticks: int, nodes: Iterable[NodeId] | None = None) -> None:
        """Let time pass: one tick of every (given) live node, then deliver."""
        for _ in range(ticks):
            live = set(self.live())
            self.tick(1, [i for i in (nodes or self.ids) if i in live])
            self.deliver()

    def elect(self, node_id: NodeId) -> None:
        """Make ``node_id`` campaign now and deliver everything."""
        self.node(node_id).campaign()
        self.deliver()

    def propose(self, node_id: NodeId, data: bytes | str) -> int:
        raw = data.encode() if isinstance(data, str) else data
        return self.node(node_id).propose(raw)

    def compact(self, node_id: NodeId, index: int | None = None) -> int:
        """Snapshot ``node_id``'s state machine at ``index`` (default: all it
        applied), compact its log and keep the snapshot durable."""
        m = self.members[node_id]
        node = self.node(node_id)
        self.flush([node_id])
        at = m.app.index if index is None else index
        node.compact(at, m.app.image(at))
        meta = node.snapshot_meta
        m.store.compact(Snapshot(meta, m.app.image(meta.index)))
        return meta.index

    # -- Ready processing --------------------------------------------------------

    def flush(self, nodes: Iterable[NodeId] | None = None) -> None:
        """Handle every pending Ready of the (given) live nodes."""
        for i in self.live() if nodes is None else list(nodes):
            self._process(self.members[i])

    def _process(self, m: Member) -> None:
        node = m.node
        assert node is not None
        for _ in range(1000):
            if not node.has_ready():
                return
            self._handle(m, node, node.ready())
        raise NotQuiescent(f"{m.id} keeps producing Ready")

    def _handle(self, m: Member, node: RaftNode, rd: Ready) -> None:
        if not (rd.soft_state or rd.must_sync() or rd.messages or rd.committed_entries or rd.read_states):
            raise SafetyViolation(f"{m.id} produced an empty Ready")
        m.store.save(rd)
        for msg in rd.messages:
            self._send(msg)
        if rd.snapshot is not None:
            m.app = AppState.from_snapshot(rd.snapshot)
        for e in rd.committed_entries:
            if m.store.term_at(e.index) != e.term:
                raise SafetyViolation(f"{m.id} applies entry {e.index} that is not durable")
            m.app.apply(e)
            self._note_commit(m.id, e)
        m.read_states.extend(rd.read_states)
        node.advance(rd)
        self._note_roles(m)

    def _note_roles(self, m: Member) -> None:
        node = m.node
        if node is None or node.role is not Role.LEADER:
            return
        leaders = self.leaders_by_term.setdefault(node.term, set())
        leaders.add(m.id)
        if len(leaders) > 1:
            raise SafetyViolation(f"two leaders in term {node.term}: {sorted(leaders)}")

    def _note_commit(self, node_id: NodeId, e: Entry) -> None:
        seen = self._committed.setdefault(e.index, (e.term, e.kind, e.data))
        if seen != (e.term, e.kind, e.data):
            raise SafetyViolation(f"{node_id} committed {e} but {seen} was committed at that index before")

    # -- inspection ----------------------------------------------------------------

    def leader(self) -> NodeId | None:
        """The live leader of the highest term, if any."""
        leaders = [(self.node(i).term, i) for i in self.live() if self.node(i).role is Role.LEADER]
        return max(leaders)[1] if leaders else None

    def applied(self, node_id: NodeId) -> list[bytes]:
        """Payloads of the NORMAL entries ``node_id`` applied, in order."""
        return [d for _, d in self.members[node_id].app.items]

    def read_states(self, node_id: NodeId) -> list[ReadState]:
        return list(self.members[node_id].read_states)

    def log_of(self, node_id: NodeId) -> list[Entry]:
        n = self.node(node_id)
        return n.entries(n.first_index, n.last_index + 1)

    def highest_committed(self) -> int:
        """The highest index known committed anywhere so far."""
        return max(self._committed, default=0)

    def sent(self, predicate: MessageFilter) -> list[Message]:
        """Messages in the trace (delivered or dropped) that ``predicate`` accepts."""
        return [msg for _, msg in self.trace if predicate(msg)]

    def check_invariants(self) -> None:
        """Log matching between every pair of live nodes, committed prefixes
        agree, and applied sequences are prefixes of each other."""
        for m in self.members.values():
            self._note_roles(m)
        live = self.live()
        for i in live:
            n = self.node(i)
            for e in n.entries(n.first_index, n.commit_index + 1):
                self._note_commit(i, e)
        for x, a in enumerate(live):
            for b in live[x + 1:]:
                _check_log_matching(self.node(a), self.node(b))
                pa, pb = self.members[a].app.items, self.members[b].app.items
                k = min(len(pa), len(pb))
                if pa[:k] != pb[:k]:
                    raise SafetyViolation(f"{a} and {b} applied different sequences")


def _check_log_matching(a: RaftNode, b: RaftNode) -> None:
    """Raft §5.3: same index and term means identical up to there."""
    lo = max(a.first_index, b.first_index)
    hi = min(a.last_index, b.last_index)
    agreed = False
    for i in range(hi, lo - 1, -1):
        ta, tb = a.term_at(i), b.term_at(i)
        if ta == tb:
            agreed = True
        elif agreed:
            raise SafetyViolation(f"{a.id} and {b.id} agree on a later entry but differ at {i}")
        if agreed and a.entries(i, i + 1) != b.entries(i, i + 1):
            raise SafetyViolation(f"{a.id} and {b.id} differ at {i} with the same term")


# -- formatting (shared by scenario files and failure messages) --------------------


def describe_entry(e: Entry) -> str:
    if e.kind is EntryKind.CONF_CHANGE:
        raw = json.loads(e.data)
        return f"{e.index}/{e.term} conf {raw['type']} {raw['node']}"
    return f"{e.index}/{e.term} " + (e.data.decode(errors="replace") if e.data else "noop")


def describe(msg: Message) -> str:
    """One line per message, e.g. ``n1->n2 APPEND t2 prev=3/1 commit=3 [4/2 noop]``."""
    parts = [f"{msg.frm}->{msg.to} {msg.type.name} t{msg.term}"]
    t = msg.type.name
    if t in ("VOTE", "PRE_VOTE"):
        parts.append(f"last={msg.index}/{msg.log_term}")
    if t == "APPEND":
        parts.append(f"prev={msg.index}/{msg.log_term} commit={msg.commit}")
        if msg.entries:
            ents = msg.entries
            shown = [describe_entry(e) for e in ents] if len(ents) <= 3 else [
                describe_entry(ents[0]), f"... {len(ents) - 2} more", describe_entry(ents[-1])]
            parts.append("[" + ", ".join(shown) + "]")
    if t == "HEARTBEAT":
        parts.append(f"commit={msg.commit}")
    if msg.reject:
        parts.append("REJECT")
    if t == "APPEND_RESP":
        parts.append(f"index={msg.index}")
        if msg.reject:
            parts.append(f"hint={msg.reject_hint}/{msg.log_term}")
    if t in ("SNAPSHOT_RESP", "READ_INDEX_RESP"):
        parts.append(f"index={msg.index}")
    if msg.snapshot is not None:
        s = msg.snapshot
        parts.append(f"snap={s.meta.index}/{s.meta.term} off={s.offset} len={len(s.data)}"
                     + (" done" if s.done else ""))
    if msg.context:
        parts.append(f"ctx={msg.context.decode(errors='replace')}")
    return " ".join(parts)


def describe_node(c: Cluster, node_id: NodeId) -> str:
    n = c.members[node_id].node
    if n is None:
        return f"{node_id}: down"
    lead = n.leader or "-"
    return (f"{node_id}: {n.role.value} term={n.term} lead={lead} commit={n.commit_index} "
            f"applied={n.applied_index} last={n.last_index}")


def three(seed: int = 0, **cfg: object) -> Cluster:
    """A bootstrapped n1/n2/n3 cluster with n1 elected: the starting point of
    most paper tests. ``cfg`` goes to RaftConfig."""
    c = Cluster(["n1", "n2", "n3"], RaftConfig(**cfg), seed=seed)  # type: ignore[arg-type]
    c.elect("n1")
    assert c.leader() == "n1"
    return c
