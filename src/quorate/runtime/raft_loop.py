"""The node runtime: the one place that joins the consensus core, storage,
transport and the clock.

Everything runs on one asyncio loop. Ticks, peer messages and client calls
step the core directly (they are cheap and never block); a single task drains
``Ready``s in the contract's order: persist (in a dedicated IO thread, so the
loop keeps receiving while the fsync runs: the next Ready then carries
everything that arrived meanwhile, which is group commit), send, apply,
advance. Client calls wait on futures that the apply step resolves, always
with a timeout: a call answers ``timeout`` instead of hanging.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from quorate.errors import Conflict, NoLeader, NotCommitted, QuorateError, RequestTimeout, ShuttingDown
from quorate.kv import ApplyResult
from quorate.raft import (
    ConfChange,
    ConfChangeInProgress,
    ConfChangeType,
    EntryKind,
    HardState,
    InvalidRequest,
    Message,
    NodeId,
    NotLeader,
    PersistentState,
    RaftConfig,
    RaftNode,
    Ready,
    Role,
    Snapshot,
    TransferInProgress,
    bootstrap_state,
)
from quorate.raft.types import Entry

from .metrics import NodeMetrics
from .observer import LatestValue
from .state_machine import MemberInfo, StateMachine

log = logging.getLogger("quorate.runtime")


class Storage(Protocol):
    def load(self) -> PersistentState: ...
    def save(self, hard_state: HardState | None, entries: Any, snapshot: Snapshot | None) -> None: ...
    def compact(self, snapshot: Snapshot) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Leadership:
    """What the leadership observer publishes (latest value only)."""

    is_leader: bool
    term: int
    leader: NodeId | None


@dataclass(slots=True)
class _Waiter:
    term: int
    future: asyncio.Future[Any]
    started: float


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


async def _with_timeout(fut: asyncio.Future[Any], timeout: float) -> Any:
    """Await a future the apply step resolves, failing it after ``timeout``.
    (A timer on the future itself: cheaper on the hot path than wait_for,
    which wraps it in a task.)"""
    handle = asyncio.get_running_loop().call_later(timeout, _expire, fut)
    try:
        return await fut
    finally:
        handle.cancel()


class RaftRuntime:
    def __init__(
        self,
        node_id: NodeId,
        raft_config: RaftConfig,
        storage: Storage,
        send: Callable[[Message], None],
        *,
        self_info: MemberInfo,
        tick_seconds: float,
        election_timeout_s: float = 1.0,
        request_timeout: float = 5.0,
        snapshot_entries: int = 10_000,
        bootstrap: dict[NodeId, MemberInfo] | None = None,
        on_members_changed: Callable[[dict[NodeId, MemberInfo]], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.id = node_id
        self.raft_config = raft_config
        self.storage = storage
        self._send = send
        self.self_info = self_info
        self.tick_seconds = tick_seconds
        self.election_timeout_s = election_timeout_s
        self.request_timeout = request_timeout
        self.snapshot_entries = snapshot_entries
        self._bootstrap = bootstrap
        self._on_members_changed = on_members_changed
        self._rng = rng or random.Random()
        self.metrics = NodeMetrics()
        self.sm = StateMachine()
        self.leadership: LatestValue[Leadership] = LatestValue(Leadership(False, 0, None))
        # Bumped after every apply batch: watches wait on it.
        self.applied: LatestValue[int] = LatestValue(0)
        # When we last heard from each peer, and since when a member has not
        # been heard from within an election timeout (monotonic seconds).
        self.last_contact: dict[NodeId, float] = {}
        self.down_since: dict[NodeId, float] = {}
        # Members the provider confirms dead (set by the manager) and how long
        # a member may be unreachable before it counts as failed (S4).
        self.confirmed_dead: frozenset[NodeId] = frozenset()
        self.dead_member_timeout_s = 72 * 3600.0
        self.min_voters = 3  # automatic clean-up never goes below (the manager keeps it current)
        self._io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"io-{node_id}")
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._writes: dict[int, _Waiter] = {}
        self._reads: dict[bytes, asyncio.Future[int]] = {}
        self._reads_waiting_apply: list[tuple[int, asyncio.Future[int]]] = []
        self._read_ids = itertools.count(1)
        self._closing = False
        self._fatal: BaseException | None = None
        self._last_snapshot_index = 0
        self._leader_since: float | None = None
        # Losing leadership sooner than this after gaining it counts as a flap.
        self.flap_window_s = max(30.0, 30 * election_timeout_s)
        self.node: RaftNode  # set in start()

    # -- life cycle -----------------------------------------------------------

    async def start(self) -> None:
        state = await self._in_io(self.storage.load)
        fresh = state.snapshot is None and not state.entries and state.hard_state == HardState()
        if fresh and self._bootstrap:
            state = bootstrap_state({m: i.encode() for m, i in self._bootstrap.items()})
            await self._in_io(self.storage.save, state.hard_state, state.entries, None)
            log.info("node=%s bootstrapped a new cluster: %s", self.id, sorted(self._bootstrap))
        elif self._bootstrap:
            log.info("node=%s data directory holds state: --bootstrap ignored", self.id)
        applied = 0
        if state.snapshot is not None:
            self.sm.restore(state.snapshot)
            applied = state.snapshot.meta.index
            self._last_snapshot_index = applied
        self.node = RaftNode(self.id, self.raft_config, self._rng, state, applied=applied)
        self._publish_members()
        self._tasks = [
            asyncio.create_task(self._ready_loop(), name=f"ready-{self.id}"),
            asyncio.create_task(self._tick_loop(), name=f"tick-{self.id}"),
        ]
        self._wake()

    async def stop(self) -> None:
        self._closing = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._fail_all(RequestTimeout(
            "the node shut down before the outcome was known; the request may or may not have taken effect"))
        await self._in_io(self.storage.close)
        self._io.shutdown(wait=True)

    async def _in_io(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def _wake(self) -> None:
        self._wakeup.set()

    def _check_alive(self) -> None:
        if self._closing:
            raise ShuttingDown("the node is shutting down")
        if self._fatal is not None:
            raise QuorateError(f"the node stopped after a fatal error: {self._fatal}")

    # -- inputs -----------------------------------------------------------------

    def step(self, msg: Message) -> None:
        """A message from a peer (called by the transport)."""
        if self._closing or self._fatal is not None:
            return
        self.last_contact[msg.frm] = time.monotonic()
        try:
            self.node.step(msg)
        except Exception as exc:  # a safety violation in the core: stop, loudly
            self._die(exc)
            return
        self._wake()

    def peer_lost(self, node: NodeId) -> None:
        """The transport saw ``node``'s connection break or be refused (a
        crashed process); if it is our leader, the core campaigns soon."""
        if self._closing or self._fatal is not None:
            return
        self.node.leader_unreachable(node)
        self._wake()

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.tick_seconds
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            if loop.time() - next_at > 5 * self.tick_seconds:
                next_at = loop.time()  # we were stalled; do not replay the missed ticks
            self.node.tick()
            if self.node.role is Role.LEADER:
                self._maybe_promote_learners()
            self._track_down()
            self._wake()

    def _track_down(self) -> None:
        """When each member stopped being heard from (electorate hygiene
        needs how long it has been down, not only when it was last seen)."""
        now = time.monotonic()
        members = self.node.conf.members()
        for m in members:
            seen = self.last_contact.get(m)
            alive = m == self.id or (seen is not None and now - seen < self.election_timeout_s)
            if alive:
                self.down_since.pop(m, None)
            else:
                self.down_since.setdefault(m, seen if seen is not None else now)
        for gone in set(self.down_since) - members:
            del self.down_since[gone]

    def _die(self, exc: BaseException) -> None:
        log.critical("node=%s fatal error in the consensus loop: %r", self.id, exc, exc_info=exc)
        self._fatal = exc
        self._fail_all(RequestTimeout(
            f"the node stopped on a fatal error ({exc}); the request may or may not have taken effect"))

    # -- the Ready loop -----------------------------------------------------------

    async def _ready_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._fatal is None and self.node.has_ready():
                rd = self.node.ready()
                try:
                    await self._handle_ready(rd)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._die(exc)
                    return
                self.node.advance(rd)
                await self._maybe_snapshot()

    async def _handle_ready(self, rd: Ready) -> None:
        for m in rd.early_messages():  # a leader's appends overlap its own fsync
            self._send(m)
        if rd.must_sync():
            t0 = time.perf_counter()
            await self._in_io(self.storage.save, rd.hard_state, rd.entries, rd.snapshot)
            self.metrics.fsync_latency.observe(time.perf_counter() - t0)
        for m in rd.late_messages():
            self._send(m)
        if rd.snapshot is not None:
            self.sm.restore(rd.snapshot)
            self._last_snapshot_index = rd.snapshot.meta.index
            self.metrics.snapshots_installed.inc()
            self._publish_members()
        members_changed = False
        for e in rd.committed_entries:
            result = self.sm.apply(e)
            members_changed |= e.kind is EntryKind.CONF_CHANGE
            self._resolve_write(e, result)
        if members_changed:
            self._publish_members()
        if rd.committed_entries or rd.snapshot is not None:
            self.applied.set(self.sm.applied_index)
        for rs in rd.read_states:
            fut = self._reads.pop(rs.request_ctx, None)
            if fut is not None and not fut.done():
                self._reads_waiting_apply.append((rs.index, fut))
        self._serve_reads()
        self._update_gauges()
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state.role, rd.soft_state.leader)

    def _resolve_write(self, entry: Entry, result: ApplyResult | None) -> None:
        w = self._writes.pop(entry.index, None)
        if w is None or w.future.done():
            return
        if w.term != entry.term:
            w.future.set_exception(NotCommitted(
                "the proposal was replaced by a new leader's entry: it did not take effect"))
            return
        self.metrics.commit_latency.observe(time.monotonic() - w.started)
        w.future.set_result(result)

    def _serve_reads(self) -> None:
        applied = self.sm.applied_index
        keep = []
        for index, fut in self._reads_waiting_apply:
            if fut.done():
                continue
            if applied >= index:
                fut.set_result(index)
            else:
                keep.append((index, fut))
        self._reads_waiting_apply = keep

    def _on_soft_state(self, role: Role, leader: NodeId | None) -> None:
        prev = self.leadership.value
        now = Leadership(role is Role.LEADER, self.node.term, leader)
        if now.leader != prev.leader:
            self.metrics.leader_changes.inc()
        self.leadership.set(now)
        if now.is_leader and not prev.is_leader:
            self._leader_since = time.monotonic()
            log.info("node=%s term=%d became leader", self.id, self.node.term)
        if prev.is_leader and not now.is_leader:
            # Uncommitted proposals may still commit under the next leader;
            # their waiters keep waiting (bounded by the request timeout).
            held = time.monotonic() - (self._leader_since or 0.0)
            if held < self.flap_window_s:
                self.metrics.leadership_flaps.inc()
                log.warning("node=%s term=%d leadership flap: lost leadership %.2fs after gaining it",
                            self.id, self.node.term, held)
            else:
                log.info("node=%s term=%d lost leadership after %.0fs", self.id, self.node.term, held)

    async def _maybe_snapshot(self) -> None:
        applied = self.node.applied_index
        if applied - self._last_snapshot_index < self.snapshot_entries:
            return
        data = self.sm.snapshot()
        self.node.compact(applied, data)
        snap = Snapshot(self.node.snapshot_meta, data)
        await self._in_io(self.storage.compact, snap)
        self._last_snapshot_index = applied
        self.metrics.snapshots.inc()
        log.info("node=%s took a snapshot at index %d (%d bytes)", self.id, applied, len(data))

    def _update_gauges(self) -> None:
        m = self.metrics
        m.term.set(self.node.term)
        m.commit_index.set(self.node.commit_index)
        m.applied_index.set(self.sm.applied_index)
        m.is_leader.set(1 if self.node.role is Role.LEADER else 0)

    def _publish_members(self) -> None:
        if self._on_members_changed is not None:
            self._on_members_changed(dict(self.sm.members))

    def _fail_all(self, exc: QuorateError) -> None:
        for w in self._writes.values():
            if not w.future.done():
                w.future.set_exception(exc)
        self._writes.clear()
        for fut in list(self._reads.values()) + [f for _, f in self._reads_waiting_apply]:
            if not fut.done():
                fut.set_exception(exc)
        self._reads.clear()
        self._reads_waiting_apply.clear()

    # -- client operations ----------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.node.role is Role.LEADER

    @property
    def leader_id(self) -> NodeId | None:
        return self.node.leader

    def leader_info(self) -> MemberInfo | None:
        lead = self.node.leader
        return self.sm.members.get(lead) if lead else None

    async def propose(self, data: bytes) -> ApplyResult | None:
        """Replicate ``data`` and return its apply result (leader only)."""
        return await self._propose_with(lambda: self.node.propose(data))

    async def _propose_with(self, propose: Callable[[], int]) -> Any:
        self._check_alive()
        try:
            index = propose()
        except NotLeader as exc:
            raise NoLeader(str(exc), leader=exc.leader) from exc
        except TransferInProgress as exc:
            raise NoLeader(str(exc), leader=None) from exc
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._writes[index] = _Waiter(self.node.term, fut, time.monotonic())
        self.metrics.proposals.inc()
        self._wake()
        try:
            return await _with_timeout(fut, self.request_timeout)
        except TimeoutError:
            self._writes.pop(index, None)
            self.metrics.proposals_failed.labels("timeout").inc()
            raise RequestTimeout(
                f"proposed at index {index} but not seen committed within {self.request_timeout:g}s; "
                "it may or may not have taken effect") from None

    async def read_barrier(self) -> int:
        """Wait until this node's state reflects every write acknowledged
        before the call (ReadIndex, thesis §6.4); returns the read index."""
        self._check_alive()
        ctx = f"{self.id}/{next(self._read_ids)}".encode()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        try:
            self.node.read_index(ctx)
        except NotLeader as exc:
            raise NoLeader("no leader is known: a linearizable read is impossible now", leader=None) from exc
        self._reads[ctx] = fut
        self._wake()
        try:
            return await _with_timeout(fut, self.request_timeout)
        except TimeoutError:
            self._reads.pop(ctx, None)
            raise RequestTimeout(f"no read index confirmed within {self.request_timeout:g}s") from None

    # -- membership -------------------------------------------------------------------

    async def change_membership(self, cc: ConfChange) -> None:
        try:
            await self._propose_with(lambda: self.node.propose_conf_change(cc))
        except ConfChangeInProgress as exc:
            raise Conflict(str(exc)) from exc
        except InvalidRequest as exc:
            raise Conflict(str(exc)) from exc

    async def add_learner(self, node_id: NodeId, info: MemberInfo) -> None:
        await self.change_membership(ConfChange(ConfChangeType.ADD_LEARNER, node_id, info.encode()))

    def _maybe_promote_learners(self) -> None:
        """A learner becomes a voter once it has caught up with the commit index."""
        node = self.node
        for learner in sorted(node.conf.learners):
            pr = node.progress.get(learner)
            if pr is None or pr.match < node.commit_index:
                continue
            info = self.sm.members.get(learner)
            cc = ConfChange(ConfChangeType.ADD_VOTER, learner, info.encode() if info else "")
            try:
                node.propose_conf_change(cc)
            except (ConfChangeInProgress, InvalidRequest, NotLeader, TransferInProgress):
                return
            log.info("node=%s term=%d promoting learner %s (caught up at %d)",
                     self.id, node.term, learner, pr.match)
            return

    def force_new_configuration(self, voters: frozenset[NodeId], epoch: int) -> int:
        """Quorum-loss recovery: see RaftNode.force_new_configuration. The
        caller has decided it is safe (``quorate.recovery.quorum``)."""
        self._check_alive()
        try:
            index = self.node.force_new_configuration(voters, epoch)
        except InvalidRequest as exc:
            raise Conflict(str(exc)) from exc
        self._wake()
        return index

    def transfer_leadership(self, target: NodeId | None = None) -> NodeId:
        """Start moving leadership to ``target`` (default: the most caught-up voter)."""
        node = self.node
        if node.role is not Role.LEADER:
            raise NoLeader("only the leader can transfer leadership", leader=node.leader)
        if target is None:
            others = [v for v in node.conf.voters if v != self.id]
            if not others:
                raise Conflict("there is no other voter to transfer leadership to")
            target = max(sorted(others), key=lambda v: node.progress[v].match if v in node.progress else -1)
        try:
            node.transfer_leadership(target)
        except InvalidRequest as exc:
            raise Conflict(str(exc)) from exc
        self._wake()
        return target
