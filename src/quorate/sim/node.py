"""One simulated server: a RaftNode, its MemoryStorage and its KVStore.

The node drains every Ready in the order ready.py demands: persist, send,
install, apply, serve reads, advance. A crash throws away the RaftNode and
the KVStore and keeps only the storage; when it is armed to strike during a
Ready, only a random prefix of that Ready's writes (snapshot, then entries
one by one, then hard state) reaches the storage and none of its messages
are sent. A restart rebuilds the node from ``storage.load()`` and the
stored snapshot, as a real process would. Losing the data (quorum-loss
faults) wipes the storage too, and such a node never runs again.

Each node knows its epoch (bumped by every forced configuration it applies,
see ``recovery.py``). The runtime keeps the epoch inside its snapshots; the
simulator keeps it beside them, in ``NodeEnv.snapshot_epochs``, keyed by the
snapshot's (index, term), which names one log prefix.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from quorate.kv import ApplyResult, KVStore
from quorate.raft import RaftNode
from quorate.raft.config import RaftConfig
from quorate.raft.ready import Ready
from quorate.raft.types import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryKind,
    Message,
    MessageType,
    Role,
    Snapshot,
)
from quorate.testing import MemoryStorage

from .checkers import InvariantViolation, Safety
from .events import EventLoop
from .trace import Trace

Watch = Callable[[Entry, ApplyResult | None], None]
ReadDone = Callable[[KVStore], None]

# Their term is a candidate's future term, sent before anything is persisted.
_PRE_VOTE_TYPES = (MessageType.PRE_VOTE, MessageType.PRE_VOTE_RESP)
# What only a leader sends.
_FROM_LEADER = (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT)


class Status(enum.Enum):
    RUNNING = "running"
    CRASHED = "crashed"
    REMOVED = "removed"  # left the cluster; stopped for good
    LOST = "lost"  # died with its data gone (quorum-loss fault); never runs again


@dataclass(slots=True)
class RunStats:
    """Counters of one run, shared by every node and the nemesis."""

    leaders_elected: int = 0
    campaigns: int = 0
    snapshot_installs: int = 0
    compactions: int = 0
    crashes: int = 0
    mid_ready_crashes: int = 0
    restarts: int = 0
    pauses: int = 0
    partitions: int = 0
    conf_changes: int = 0
    applied_entries: int = 0
    max_commit: int = 0
    # Quorum-loss recovery (recovery.py).
    quorum_losses: int = 0
    forces: int = 0
    restarts_in_place: int = 0
    restart_lock_refusals: int = 0
    watchdog_waits: int = 0  # distinct reasons written to the trace
    watchdog_follows: int = 0
    lost_by_recovery: int = 0  # committed entries only the dead held
    recoveries: int = 0
    max_recovery_ms: int = 0


@dataclass(frozen=True, slots=True)
class NodeSettings:
    raft: RaftConfig
    tick_ms: int = 10
    snapshot_every: int = 40
    # Clocks drift: each node's tick period is tick_ms +- this, drawn once.
    tick_jitter_ms: int = 0


@dataclass(slots=True)
class NodeEnv:
    """What every simulated node shares with the rest of the cluster."""

    loop: EventLoop
    rng: random.Random
    send: Callable[[Message], None]
    safety: Safety
    trace: Trace
    stats: RunStats
    settings: NodeSettings
    # (snapshot index, snapshot term) -> epoch of that log prefix.
    snapshot_epochs: dict[tuple[int, int], int] = field(default_factory=dict)
    # Called after every (re)start of a node (the quorum-loss watchdog).
    on_start: Callable[[SimNode], None] | None = None
    # Called when a node applies a forced configuration: (node, index, epoch).
    on_forced: Callable[[SimNode, int, int], None] | None = None


class SimNode:
    """A server process of the simulated cluster, across crashes."""

    def __init__(self, node_id: str, storage: MemoryStorage, env: NodeEnv) -> None:
        self.id = node_id
        self.storage = storage
        self.env = env
        jitter = env.settings.tick_jitter_ms
        self.tick_ms = env.settings.tick_ms + (env.rng.randint(-jitter, jitter) if jitter else 0)
        self.status = Status.CRASHED  # until start()
        self.paused = False
        self.raft: RaftNode | None = None
        self.kv = KVStore()
        self.applied = 0
        self.incarnation = 0
        self.crash_on_next_write = False
        self._inbox: list[tuple[Callable[..., None], tuple[object, ...]]] = []
        self._watches: dict[int, list[Watch]] = {}
        self._reads: dict[bytes, ReadDone] = {}
        self._read_states: list[tuple[int, bytes]] = []
        self._last_compact = 0
        self._role = Role.FOLLOWER
        self._term = 0
        self.epoch = 0  # of the forced configuration last applied (quorum-loss recovery)
        self.leader_heard = 0  # when it last heard from the leader it follows

    # -- life cycle ------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.status is Status.RUNNING

    def start(self) -> None:
        """Boot (or reboot) from whatever the storage holds."""
        if self.status is Status.LOST:
            raise RuntimeError(f"{self.id} lost its data: it never runs again")
        env = self.env
        state = self.storage.load()
        env.safety.durability.check_restart(self.id, state)
        snap = state.snapshot
        self.kv = KVStore.restore(snap.data) if snap is not None else KVStore()
        self.applied = snap.meta.index if snap is not None else 0
        self.epoch = self._snapshot_epoch(snap)
        if snap is not None:
            env.safety.images.observe(self.id, snap.meta.index, self.kv.digest())
        self._last_compact = self.applied
        rng = random.Random(env.rng.getrandbits(64))
        self.raft = RaftNode(self.id, env.settings.raft, rng, state, applied=self.applied)
        env.safety.durability.reset_commit(self.id, self.raft.commit_index)
        self.status = Status.RUNNING
        self.paused = False
        self.incarnation += 1
        self._role, self._term = self.raft.role, self.raft.term
        phase = env.rng.randrange(self.tick_ms)
        env.loop.call_later(phase + 1, self._tick, self.incarnation)
        self.run(lambda: None)
        if env.on_start is not None and self.alive:
            env.on_start(self)

    def crash(self, status: Status = Status.CRASHED) -> None:
        """The process dies: only the storage survives."""
        self.raft = None
        self.status = status
        self.paused = False
        self.crash_on_next_write = False
        self._inbox.clear()
        self._watches.clear()
        self._reads.clear()
        self._read_states.clear()
        self.incarnation += 1

    def lose_data(self) -> None:
        """The machine dies and its disk with it: the node never comes back."""
        self.crash(Status.LOST)
        self.storage = MemoryStorage()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        """Like SIGCONT: everything that queued up is handled now, in order."""
        self.paused = False
        inbox, self._inbox = self._inbox, []
        for action, args in inbox:
            if not self.alive or self.paused:
                break
            action(*args)

    # -- inputs ----------------------------------------------------------------

    def _tick(self, incarnation: int) -> None:
        if incarnation != self.incarnation or not self.alive:
            return
        self.env.loop.call_later(self.tick_ms, self._tick, incarnation)
        if not self.paused:
            self.run(self._raft().tick)

    def deliver(self, msg: Message) -> None:
        """A message from the network (queued while paused)."""
        if not self.alive:
            return
        if self.paused:
            self._inbox.append((self.deliver, (msg,)))
            return
        self.env.trace.delivery(self.env.loop.now, msg.frm, msg.to, msg.type.value)
        self.run(self._raft().step, msg)
        if msg.type in _FROM_LEADER and self.raft is not None and self.raft.leader == msg.frm:
            self.leader_heard = self.env.loop.now

    def call(self, action: Callable[..., None], *args: object) -> None:
        """Run a client's request on this node (queued while paused)."""
        if not self.alive:
            return
        if self.paused:
            self._inbox.append((self.call, (action, *args)))
            return
        action(*args)

    def run(self, action: Callable[..., object], *args: object) -> object:
        """Do one thing to the RaftNode, then drain and check."""
        result = action(*args)
        if self.raft is not None:
            self.drain()
        if self.raft is not None:
            self._observe()
        return result

    def watch(self, index: int, on_apply: Watch) -> None:
        """Call ``on_apply`` with whatever entry this node applies at index."""
        self._watches.setdefault(index, []).append(on_apply)

    def read(self, ctx: bytes, done: ReadDone) -> None:
        """ReadIndex: ``done(kv)`` once the read is safe to serve here."""
        self._reads[ctx] = done
        try:
            self.run(self._raft().read_index, ctx)
        except Exception:
            self._reads.pop(ctx, None)
            raise

    def forget_read(self, ctx: bytes) -> bool:
        """Drop a pending read; False when it was already served or lost."""
        return self._reads.pop(ctx, None) is not None

    def _raft(self) -> RaftNode:
        if self.raft is None:
            raise RuntimeError(f"{self.id} is not running")
        return self.raft

    # -- the Ready loop ------------------------------------------------------

    def drain(self) -> None:
        node = self._raft()
        while node.has_ready():
            rd = node.ready()
            # A leader's appends go out in parallel with its own write, so a
            # crash during that write happens after they were sent.
            self._send(rd.early_messages())
            if self.crash_on_next_write and (rd.entries or rd.snapshot is not None):
                self._crash_mid_ready(rd)
                return
            self._persist(rd)
            self._send(rd.late_messages())
            if rd.snapshot is not None:
                self._install(rd.snapshot)
            self._apply(rd.committed_entries)
            self._serve_reads(rd)
            node.advance(rd)
        self._maybe_compact(node)

    def _persist(self, rd: Ready) -> None:
        # save() refuses gaps, writes below the snapshot and a commit index
        # past the end of the log: a core that asks for one fails the run.
        self.storage.save(rd.hard_state, rd.entries, rd.snapshot)
        if rd.entries:
            self._check_appended(rd.entries)

    def _crash_mid_ready(self, rd: Ready) -> None:
        """Power fails while this Ready is being written: a prefix survives."""
        writes = ready_writes(self.storage, rd)
        kept = self.env.rng.randint(0, len(writes))
        for write in writes[:kept]:
            write()
        self.env.stats.mid_ready_crashes += 1
        self.env.trace.log(
            self.env.loop.now, self.id, f"crash during a write ({kept}/{len(writes)} persisted)"
        )
        self.crash()

    def _check_appended(self, entries: tuple[Entry, ...]) -> None:
        node = self._raft()
        lm = self.env.safety.log_matching
        prev_term = node.term_at(entries[0].index - 1)
        for entry in entries:
            lm.observe_append(self.id, entry, prev_term)
            prev_term = entry.term

    def _send(self, messages: tuple[Message, ...]) -> None:
        if not messages:
            return
        node = self._raft()
        durability = self.env.safety.durability
        send = self.env.send
        for msg in sorted(messages, key=_by_destination):
            mtype = msg.type
            if mtype not in _PRE_VOTE_TYPES:
                durability.observe_sent_term(self.id, msg.term)
            if not msg.reject:
                if mtype is MessageType.APPEND_RESP:
                    durability.observe_ack(self.id, msg.index, node.term_at(msg.index))
                elif mtype is MessageType.VOTE_RESP:
                    durability.observe_vote(self.id, msg.term, msg.to)
            send(msg)

    def _install(self, snap: Snapshot) -> None:
        index = snap.meta.index
        if index < self.applied:
            raise InvariantViolation(
                f"snapshot rollback: {self.id} was given a snapshot at {index} "
                f"after applying up to {self.applied}"
            )
        self.kv = KVStore.restore(snap.data)
        self.applied = index
        self._last_compact = index
        self.epoch = self._snapshot_epoch(snap)
        self.env.safety.images.observe(self.id, index, self.kv.digest())
        self.env.stats.snapshot_installs += 1
        self.env.trace.log(self.env.loop.now, self.id, f"installed snapshot at {index}")
        self._drop_watches_below(index)

    def _apply(self, entries: tuple[Entry, ...]) -> None:
        if not entries:
            return
        committed = self.env.safety.committed
        for entry in entries:
            if entry.index != self.applied + 1:
                raise InvariantViolation(
                    f"apply order: {self.id} applied {self.applied} then was given {entry.index}"
                )
            if entry.kind is EntryKind.CONF_CHANGE:
                cc = ConfChange.decode(entry.data)
                if cc.type is ConfChangeType.FORCE:
                    self.epoch = cc.forced()[1]
                    self.env.trace.log(self.env.loop.now, self.id,
                                       f"applied the forced configuration of epoch {self.epoch}")
                    if self.env.on_forced is not None:
                        self.env.on_forced(self, entry.index, self.epoch)
            committed.observe_applied(self.id, entry)
            result: ApplyResult | None = None
            if entry.kind is EntryKind.NORMAL and entry.data:
                result = self.kv.apply(entry.index, entry.data)
            self.applied = entry.index
            watches = self._watches.pop(entry.index, None)
            if watches:
                for on_apply in watches:
                    on_apply(entry, result)
        self.env.stats.applied_entries += len(entries)

    def _drop_watches_below(self, index: int) -> None:
        """Watched indexes swallowed by a snapshot: their outcome is unknown here."""
        for watched in sorted(i for i in self._watches if i <= index):
            del self._watches[watched]

    def _serve_reads(self, rd: Ready) -> None:
        if rd.read_states:
            self._read_states.extend((rs.index, rs.request_ctx) for rs in rd.read_states)
        if not self._read_states:
            return
        waiting: list[tuple[int, bytes]] = []
        for index, ctx in self._read_states:
            if index > self.applied:
                waiting.append((index, ctx))
                continue
            done = self._reads.pop(ctx, None)
            if done is not None:
                done(self.kv)
        self._read_states = waiting

    def _maybe_compact(self, node: RaftNode) -> None:
        every = self.env.settings.snapshot_every
        if every <= 0 or self.applied - self._last_compact < every:
            return
        data = self.kv.snapshot()
        node.compact(self.applied, data)
        meta = node.snapshot_meta
        if meta.index != self.applied:
            raise InvariantViolation(
                f"compaction: {self.id} compacted at {self.applied} but holds a snapshot at {meta.index}"
            )
        self.storage.compact(Snapshot(meta, data))
        self._register_snapshot_epoch(meta.index, meta.term)
        self.env.safety.images.observe(self.id, meta.index, self.kv.digest())
        self._last_compact = self.applied
        self.env.stats.compactions += 1

    def _register_snapshot_epoch(self, index: int, term: int) -> None:
        epochs = self.env.snapshot_epochs
        known = epochs.setdefault((index, term), self.epoch)
        if known != self.epoch:
            raise InvariantViolation(
                f"epochs: {self.id} took a snapshot at index {index} term {term} in epoch "
                f"{self.epoch}, but one of that prefix was taken in epoch {known}"
            )

    def _snapshot_epoch(self, snap: Snapshot | None) -> int:
        if snap is None:
            return 0
        return self.env.snapshot_epochs.get((snap.meta.index, snap.meta.term), 0)

    # -- checks after every event ----------------------------------------------

    def _observe(self) -> None:
        node = self._raft()
        env = self.env
        commit = node.commit_index
        env.safety.durability.observe_commit(self.id, commit)
        role, term = node.role, node.term
        if commit > env.stats.max_commit:
            env.stats.max_commit = commit
        if role is Role.LEADER:
            env.safety.committed.observe_leader_commit(commit, term)
        if role is self._role and term == self._term:
            return
        if role is not self._role:
            env.trace.log(env.loop.now, self.id, f"{role.value} term={term}")
        self._role, self._term = role, term
        if role is Role.LEADER:
            env.safety.election.observe_leader(self.id, term)
            env.safety.completeness.check_new_leader(
                self.id, term, node.first_index - 1, node.term_at
            )
            env.stats.leaders_elected += 1
        elif role is Role.CANDIDATE:
            env.stats.campaigns += 1


def ready_writes(storage: MemoryStorage, rd: Ready) -> list[Callable[[], None]]:
    """The storage writes of one Ready, in the order they reach the disk:
    snapshot, then each entry, then the hard state. A crash keeps a prefix."""
    writes: list[Callable[[], None]] = []
    snap = rd.snapshot
    if snap is not None:
        writes.append(lambda: storage.apply_snapshot(snap))
    for entry in rd.entries:
        writes.append(lambda e=entry: storage.append((e,)))  # type: ignore[misc]
    hs = rd.hard_state
    if hs is not None:
        writes.append(lambda: storage.set_hard_state(hs))
    return writes


def _by_destination(msg: Message) -> str:
    return msg.to
