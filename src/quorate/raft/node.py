"""The Raft node: a pure state machine driven by ticks, messages and requests.

Theory of operation
-------------------
Inputs: ``tick()`` (logical time), ``step(msg)`` (a peer's message),
``propose``/``propose_conf_change``/``read_index``/``transfer_leadership``/
``compact`` (the application). Output: ``ready()``, whose ordering contract
is stated in ready.py, acknowledged with ``advance()``. No IO happens here.

Term handling common to every role is done once, at the top of ``step``;
role-specific handling is chosen by ``role`` (set only by the become_*
methods). The leader-side replication lives in ``_leader.py``.

Design choices (the reasons are in docs/raft.md):

- Membership changes are single-server changes. A configuration takes effect
  when its entry is *committed* (as etcd-io/raft applies it), at most one may
  be uncommitted, and a new leader may not propose one before an entry of its
  own term commits (the fix to the bug in thesis §4.1's single-server
  algorithm). With commit-time application, every node's configuration is at
  most one change away from the latest committed one, so any two quorums
  overlap.
- Pre-vote (thesis §9.6) and check-quorum together: a node that heard from a
  live leader within an election timeout ignores (pre-)vote requests, and a
  node that gets a message of a lower term from a leader answers it with its
  own term, which makes the stale leader step down. Without that answer a
  node whose term ran ahead (a transfer campaign that failed, say) could never
  rejoin: its pre-votes are refused by followers in lease and it ignores the
  leader's lower-term appends (the livelock etcd fixed in 2017).
- The leader counts its own log towards commitment only once it is durable
  (its progress is updated in ``advance``), so a commit never rests on an
  unsynced leader write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from ._leader import LeaderMixin
from .config import RaftConfig
from .errors import ConfChangeInProgress, InvalidRequest, NotLeader, TransferInProgress
from .log import RaftLog
from .progress import Progress
from .quorum import VoteResult, vote_result
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
    SnapshotMeta,
    SoftState,
)

#: Terms of a forced epoch e start at e << EPOCH_TERM_SHIFT (see force_new_configuration).
EPOCH_TERM_SHIFT = 32

log = logging.getLogger("quorate.raft")

TRANSFER_CONTEXT = b"transfer"

MT = MessageType


class RandomSource(Protocol):
    """The part of ``random.Random`` the core uses (always injected)."""

    def randint(self, a: int, b: int) -> int: ...


@dataclass(slots=True)
class _IncomingSnapshot:
    meta: SnapshotMeta
    buf: bytearray


def bootstrap_state(members: list[NodeId] | dict[NodeId, str]) -> PersistentState:
    """The identical starting state of every member of a brand-new cluster:
    one committed ADD_VOTER entry per member (``members`` may map each id to
    a context string, for example its address)."""
    ctx = dict(members) if isinstance(members, dict) else {m: "" for m in members}
    if not ctx:
        raise InvalidRequest("a cluster needs at least one member")
    entries = tuple(
        Entry(1, i + 1, EntryKind.CONF_CHANGE, ConfChange(ConfChangeType.ADD_VOTER, m, ctx[m]).encode())
        for i, m in enumerate(sorted(ctx))
    )
    return PersistentState(HardState(term=1, vote=None, commit=len(entries)), None, entries)


class RaftNode(LeaderMixin):
    def __init__(
        self,
        node_id: NodeId,
        config: RaftConfig,
        rng: RandomSource,
        state: PersistentState | None = None,
        applied: int = 0,
    ) -> None:
        state = state or PersistentState()
        self.id = node_id
        self.cfg = config
        self._rng = rng
        hs = state.hard_state
        self.log = RaftLog(state.snapshot, state.entries, hs.commit)
        if applied < self.log.snapshot_index or applied > self.log.committed:
            raise InvalidRequest(
                f"applied index {applied} outside [{self.log.snapshot_index}, {self.log.committed}]"
            )
        self.log.applied = applied
        self._applying = applied  # last committed index handed out in a Ready
        # Membership at the snapshot index, and as of the commit index.
        self._conf_base = state.snapshot.meta.conf if state.snapshot else ConfState()
        self.conf = self.log.conf_at(self._conf_base, self.log.committed)
        self.term = hs.term
        self.vote: NodeId | None = hs.vote
        self.leader: NodeId | None = None
        self.role = Role.FOLLOWER
        self.progress: dict[NodeId, Progress] = {}
        self._votes: dict[NodeId, bool] = {}
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = 0
        self.lead_transferee: NodeId | None = None
        self._transfer_elapsed = 0
        self._pending_conf_index = 0
        self._self_removal_index = 0  # a leader's pending removal of itself
        self._msgs: list[Message] = []
        self._read_states: list[ReadState] = []
        self._incoming: _IncomingSnapshot | None = None
        self._pending_bcast = False
        self._prev_hard = hs
        self._prev_soft = SoftState(None, Role.FOLLOWER)
        self._ready_outstanding = False
        self._init_leader_state()
        self._reset(self.term)

    # -- read-only views ---------------------------------------------------

    @property
    def commit_index(self) -> int:
        return self.log.committed

    @property
    def applied_index(self) -> int:
        return self.log.applied

    @property
    def last_index(self) -> int:
        return self.log.last_index

    @property
    def first_index(self) -> int:
        return self.log.first_index

    @property
    def conf_state(self) -> ConfState:
        return self.conf

    @property
    def snapshot_meta(self) -> SnapshotMeta:
        return self.log.snapshot.meta if self.log.snapshot else SnapshotMeta(conf=self._conf_base)

    def term_at(self, index: int) -> int | None:
        return self.log.term_at(index)

    def entries(self, lo: int, hi: int) -> list[Entry]:
        return self.log.slice(lo, hi)

    @property
    def promotable(self) -> bool:
        """Only voters campaign: learners, removed and joining nodes wait."""
        return self.id in self.conf.voters

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def soft_state(self) -> SoftState:
        return SoftState(self.leader, self.role)

    # -- role changes --------------------------------------------------------

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = None
        self.leader = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        lo, hi = self.cfg.election_range
        self._randomized_timeout = self._rng.randint(lo, hi)
        self._votes = {}
        self._abort_transfer()
        self._reset_leader_state()

    def _become_follower(self, term: int, leader: NodeId | None) -> None:
        old = (self.role, self.term)
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader
        if old != (self.role, self.term):
            log.info("node=%s term=%d became follower (leader=%s)", self.id, self.term, leader)

    def _become_pre_candidate(self) -> None:
        # A pre-candidate keeps its term and vote: a lost pre-vote leaves no trace.
        self._votes = {}
        self.leader = None
        self.role = Role.PRE_CANDIDATE
        lo, hi = self.cfg.election_range  # a fresh draw each round breaks repeated ties
        self._randomized_timeout = self._rng.randint(lo, hi)
        log.info("node=%s term=%d became pre-candidate", self.id, self.term)

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE
        log.info("node=%s term=%d became candidate", self.id, self.term)

    # -- time ----------------------------------------------------------------

    def tick(self) -> None:
        if self.role is Role.LEADER:
            self._tick_leader()
            return
        self._election_elapsed += 1
        if self.promotable and self._election_elapsed >= self._randomized_timeout:
            self._election_elapsed = 0
            self._hup(transfer=False)

    def leader_unreachable(self, node: NodeId) -> None:
        """The runtime's hint that the connection to ``node`` broke (a
        crashed process resets its sockets at once; a partition or a pause
        gives no such hint). If ``node`` is our leader, stop vouching for it:
        the lease ends, so our pre-vote goes to whoever campaigns, and our
        own election is brought forward to a short random delay (random, so
        that the followers of a dead leader rarely campaign in the same
        tick). Safety is untouched: this changes only when we campaign, and
        a live leader's next heartbeat puts everything back."""
        if self.role is Role.LEADER or node != self.leader or not self.promotable:
            return
        self._election_elapsed = max(self._election_elapsed, self.cfg.election_ticks)
        self._randomized_timeout = self._election_elapsed + self._rng.randint(0, max(1, self.cfg.election_ticks // 2))
        log.info("node=%s term=%d lost the connection to leader %s; campaigning within %d ticks unless it "
                 "is heard from", self.id, self.term, node, self._randomized_timeout - self._election_elapsed)

    def campaign(self) -> None:
        """Start an election now (tests and operators)."""
        self._hup(transfer=False)

    def _hup(self, transfer: bool) -> None:
        if self.role is Role.LEADER or not self.promotable:
            return
        if self.cfg.pre_vote and not transfer:
            self._campaign(pre=True, transfer=False)
        else:
            self._campaign(pre=False, transfer=transfer)

    def _campaign(self, pre: bool, transfer: bool) -> None:
        if pre:
            self._become_pre_candidate()
            vote_term, mtype = self.term + 1, MT.PRE_VOTE
        else:
            self._become_candidate()
            vote_term, mtype = self.term, MT.VOTE
        self._votes[self.id] = True
        if self._poll() is not VoteResult.PENDING:
            return
        ctx = TRANSFER_CONTEXT if transfer else b""
        for peer in sorted(self.conf.voters - {self.id}):
            self._send(Message(mtype, self.id, peer, vote_term, log_term=self.log.last_term,
                               index=self.log.last_index, context=ctx))

    def _poll(self) -> VoteResult:
        """Count votes; act on a decided election (thesis §9.6 for pre-votes)."""
        result = vote_result(self.conf.voters, self._votes)
        if result is VoteResult.WON:
            if self.role is Role.PRE_CANDIDATE:
                self._campaign(pre=False, transfer=False)
            else:
                self._become_leader()
        elif result is VoteResult.LOST:
            self._become_follower(self.term, None)
        return result

    # -- the message entry point -------------------------------------------

    def step(self, msg: Message) -> None:
        if msg.to != self.id or msg.frm == self.id:
            return
        if msg.term > self.term:
            if not self._step_higher_term(msg):
                return
        elif msg.term < self.term:
            self._step_lower_term(msg)
            return
        if msg.type in (MT.PRE_VOTE, MT.VOTE):
            self._handle_vote_request(msg)
        elif self.role is Role.LEADER:
            self._step_leader(msg)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self._step_candidate(msg)
        else:
            self._step_follower(msg)

    def _in_lease(self) -> bool:
        return (
            self.cfg.check_quorum
            and self.leader is not None
            and self._election_elapsed < self.cfg.election_ticks
        )

    def _step_higher_term(self, msg: Message) -> bool:
        """Raft §5.1: a higher term makes us a follower. Returns False when
        the message is to be ignored."""
        if msg.type in (MT.PRE_VOTE, MT.VOTE):
            forced = msg.context == TRANSFER_CONTEXT
            if not forced and self._in_lease():
                # Thesis §4.2.3: a live leader's followers ignore disruptive
                # (removed or partitioned) candidates.
                return False
        if msg.type is MT.PRE_VOTE:
            return True  # a pre-vote never changes our term
        if msg.type is MT.PRE_VOTE_RESP and not msg.reject:
            return True  # granted pre-votes carry the term we would campaign at
        if msg.type in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT):
            self._become_follower(msg.term, msg.frm)
        else:
            self._become_follower(msg.term, None)
        return True

    def _step_lower_term(self, msg: Message) -> None:
        if (self.cfg.check_quorum or self.cfg.pre_vote) and msg.type in (MT.APPEND, MT.HEARTBEAT):
            # Tell a stale leader our term (see the module docstring).
            self._send(Message(MT.APPEND_RESP, self.id, msg.frm, self.term))
        elif msg.type is MT.PRE_VOTE:
            self._send(Message(MT.PRE_VOTE_RESP, self.id, msg.frm, self.term, reject=True))

    def _handle_vote_request(self, msg: Message) -> None:
        resp = MT.PRE_VOTE_RESP if msg.type is MT.PRE_VOTE else MT.VOTE_RESP
        can_vote = (
            self.vote == msg.frm
            or (self.vote is None and self.leader is None)
            or (msg.type is MT.PRE_VOTE and msg.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(msg.index, msg.log_term):
            # Raft §5.2, §5.4.1: one vote per term, only for an up-to-date log.
            self._send(Message(resp, self.id, msg.frm, msg.term))
            if msg.type is MT.VOTE:
                self._election_elapsed = 0
                self.vote = msg.frm
        else:
            self._send(Message(resp, self.id, msg.frm, self.term, reject=True))

    def _step_candidate(self, msg: Message) -> None:
        t = msg.type
        if t in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT):
            # Raft §5.2: a leader of our term exists; follow it.
            self._become_follower(msg.term, msg.frm)
            self._step_follower(msg)
        elif (t is MT.PRE_VOTE_RESP and self.role is Role.PRE_CANDIDATE) or (
            t is MT.VOTE_RESP and self.role is Role.CANDIDATE
        ):
            self._votes[msg.frm] = not msg.reject
            self._poll()

    def _step_follower(self, msg: Message) -> None:
        t = msg.type
        if t in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT):
            self._election_elapsed = 0
            self.leader = msg.frm
            if t is MT.APPEND:
                self._handle_append(msg)
            elif t is MT.HEARTBEAT:
                self._handle_heartbeat(msg)
            else:
                self._handle_snapshot_chunk(msg)
        elif t is MT.TIMEOUT_NOW:
            log.info("node=%s term=%d leadership transfer: campaigning now", self.id, self.term)
            self._hup(transfer=True)
        elif t is MT.READ_INDEX_RESP:
            self._read_states.append(ReadState(msg.index, msg.context))

    # -- follower handlers -------------------------------------------------

    def _handle_append(self, msg: Message) -> None:
        if msg.index < self.log.committed:
            self._reply(msg, MT.APPEND_RESP, index=self.log.committed)
            return
        old_commit = self.log.committed
        last = self.log.maybe_append(msg.index, msg.log_term, msg.commit, msg.entries)
        if last is not None:
            self._on_commit_advanced(old_commit)
            self._reply(msg, MT.APPEND_RESP, index=last)
            return
        # Fast backtracking: point the leader at our last entry whose term is
        # not above the term it expected (Raft §5.3, "optimization").
        hint = self.log.find_conflict_by_term(min(msg.index, self.log.last_index), msg.log_term)
        self._reply(msg, MT.APPEND_RESP, index=msg.index, reject=True,
                    reject_hint=hint, log_term=self.log.term_at(hint) or 0)

    def _handle_heartbeat(self, msg: Message) -> None:
        old_commit = self.log.committed
        if msg.commit > old_commit:
            self.log.commit_to(min(msg.commit, self.log.last_index))
            self._on_commit_advanced(old_commit)
        self._reply(msg, MT.HEARTBEAT_RESP, context=msg.context)

    def _handle_snapshot_chunk(self, msg: Message) -> None:
        chunk = msg.snapshot
        if chunk is None:
            return
        if chunk.meta.index <= self.log.committed:
            self._incoming = None
            self._reply(msg, MT.APPEND_RESP, index=self.log.committed)
            return
        inc = self._incoming
        if chunk.offset == 0:
            inc = self._incoming = _IncomingSnapshot(chunk.meta, bytearray())
        if inc is None or inc.meta != chunk.meta or chunk.offset != len(inc.buf):
            wanted = len(inc.buf) if inc is not None and inc.meta == chunk.meta else 0
            self._reply(msg, MT.SNAPSHOT_RESP, index=wanted)
            return
        inc.buf += chunk.data
        if not chunk.done:
            self._reply(msg, MT.SNAPSHOT_RESP, index=len(inc.buf))
            return
        self._incoming = None
        snap = Snapshot(inc.meta, bytes(inc.buf))
        if self._restore(snap):
            log.info("node=%s term=%d installed snapshot at index %d", self.id, self.term, snap.meta.index)
            self._reply(msg, MT.APPEND_RESP, index=self.log.last_index)
        else:
            self._reply(msg, MT.APPEND_RESP, index=self.log.committed)

    def _restore(self, snap: Snapshot) -> bool:
        meta = snap.meta
        if meta.index <= self.log.committed:
            return False
        if self.log.match_term(meta.index, meta.term):
            # Our log already has it: just learn that it is committed.
            old = self.log.committed
            self.log.commit_to(meta.index)
            self._on_commit_advanced(old)
            return False
        self.log.restore(snap)
        self._conf_base = meta.conf
        self.conf = meta.conf
        return True

    # -- commit and membership ---------------------------------------------

    def _on_commit_advanced(self, old_commit: int) -> None:
        """Apply the conf changes that just became committed."""
        new = self.log.committed
        if new <= old_commit:
            return
        start = max(old_commit + 1, self.log.first_index)
        changed = False
        for e in self.log.slice(start, new + 1):
            if e.kind is EntryKind.CONF_CHANGE:
                cc = ConfChange.decode(e.data)
                self.conf = self.conf.apply(cc)
                changed = True
                log.info("node=%s term=%d membership %s %s committed at %d: voters=%s learners=%s",
                         self.id, self.term, cc.type.value, cc.node_id, e.index,
                         sorted(self.conf.voters), sorted(self.conf.learners))
        if changed and self.role is Role.LEADER:
            self._on_leader_conf_changed()

    # -- application requests ----------------------------------------------

    def propose(self, data: bytes) -> int:
        """Append ``data`` to the log (leader only); returns its index. The
        entry is committed once it comes back in ``committed_entries``."""
        return self._append_own(EntryKind.NORMAL, data)

    def propose_conf_change(self, cc: ConfChange) -> int:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if self._pending_conf_index > self.log.committed:
            raise ConfChangeInProgress(
                "a membership change is still uncommitted (or this leader has not yet "
                "committed an entry of its own term); retry shortly")
        self._check_conf_change(cc)
        index = self._append_own(EntryKind.CONF_CHANGE, cc.encode())
        self._pending_conf_index = index
        if cc.type is ConfChangeType.REMOVE and cc.node_id == self.id:
            self._self_removal_index = index
        return index

    def _check_conf_change(self, cc: ConfChange) -> None:
        conf = self.conf
        if cc.type is ConfChangeType.FORCE:
            raise InvalidRequest("a forced configuration is never proposed: see force_new_configuration")
        if cc.type is ConfChangeType.ADD_LEARNER and cc.node_id in conf.members():
            raise InvalidRequest(f"{cc.node_id} is already a member")
        if cc.type is ConfChangeType.ADD_VOTER and cc.node_id in conf.voters:
            raise InvalidRequest(f"{cc.node_id} is already a voter")
        if cc.type is ConfChangeType.REMOVE:
            if cc.node_id not in conf.members():
                raise InvalidRequest(f"{cc.node_id} is not a member")
            if conf.voters == {cc.node_id}:
                raise InvalidRequest("cannot remove the last voter")

    def _append_own(self, kind: EntryKind, data: bytes) -> int:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if self._self_removal_index > self.log.committed:
            # A leader removing itself appends nothing after that entry: an
            # entry only it holds would make it refuse its votes to the
            # voters that stay, and, removed, it never campaigns itself, so
            # no one could ever be elected (found by the cluster machine).
            raise NotLeader(None)
        if self.lead_transferee is not None:
            raise TransferInProgress(self.lead_transferee)
        index = self.log.last_index + 1
        self.log.append([Entry(self.term, index, kind, data)])
        self._pending_bcast = True  # batched: sent with the next Ready
        return index

    def force_new_configuration(self, voters: frozenset[NodeId], epoch: int) -> int:
        """Quorum-loss recovery (S2): make ``voters`` (the reachable
        survivors, this node among them) the whole configuration, without a
        quorum of the old one. Returns the index of the FORCE entry.

        Only safe when every other old voter is confirmed dead and this node
        holds the most up-to-date log of the survivors; deciding that is the
        caller's job (``quorate.recovery.quorum``). The node moves to a fresh
        term no leader can have had (``epoch * 2**32`` or above; it votes for
        itself in it), appends the
        FORCE entry in that term and declares its whole log committed by
        fiat: every entry a survivor saw committed is in it (the most
        up-to-date log holds them, by leader completeness). Then it stands
        for election in the new configuration, where the survivors elect it.
        """
        if self.role is Role.LEADER:
            raise InvalidRequest("this node leads: the cluster has a quorum, there is nothing to force")
        if self.id not in voters:
            raise InvalidRequest("the forced configuration must include this node")
        # Voters of the committed configuration, or of a newer one in the log
        # (a promotion another survivor saw committed).
        known = self.conf.voters | self.log.conf_at(self._conf_base, self.log.last_index).voters
        strangers = voters - known
        if strangers:
            raise InvalidRequest(f"{sorted(strangers)} are not voters of the current configuration")
        # The survivors cannot know the terms the dead majority reached, so
        # the forced term is made unreachable for the old configuration:
        # epoch e starts at e * 2**32, beyond any term of an earlier epoch
        # (short of four billion elections in it).
        self._reset(max(self.term + 1, epoch << EPOCH_TERM_SHIFT))
        self.vote = self.id
        self.role = Role.CANDIDATE
        index = self.log.last_index + 1
        cc = ConfChange.force(self.id, voters, epoch)
        self.log.append([Entry(self.term, index, EntryKind.CONF_CHANGE, cc.encode())])
        old = self.log.committed
        self.log.commit_to(index)
        self._on_commit_advanced(old)
        log.warning("node=%s term=%d FORCED a new configuration at index %d: voters=%s epoch=%d",
                    self.id, self.term, index, sorted(voters), epoch)
        self._votes[self.id] = True
        if self._poll() is VoteResult.PENDING:
            for peer in sorted(self.conf.voters - {self.id}):
                self._send(Message(MT.VOTE, self.id, peer, self.term, log_term=self.log.last_term,
                                   index=self.log.last_index))
        return index

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read point (thesis §6.4). A ReadState with
        this ``ctx`` (which must be unique) appears in a later Ready."""
        if self.role is Role.LEADER:
            self._leader_read_index(ctx, self.id)
        elif self.leader is not None:
            self._send(Message(MT.READ_INDEX, self.id, self.leader, self.term, context=ctx))
        else:
            raise NotLeader(None)

    def compact(self, index: int, data: bytes) -> None:
        """Take the state machine's snapshot at applied ``index``; the log up
        to it is dropped (the runtime keeps the snapshot durable)."""
        if index <= self.log.snapshot_index:
            return
        if index > self.log.applied:
            raise InvalidRequest(f"cannot snapshot at {index}: only {self.log.applied} applied")
        term = self.log.term_at(index)
        assert term is not None
        conf = self.log.conf_at(self._conf_base, index)
        self.log.compact(Snapshot(SnapshotMeta(index, term, conf), data))
        self._conf_base = conf

    # -- Ready -------------------------------------------------------------

    def _send(self, msg: Message) -> None:
        self._msgs.append(msg)

    def _reply(self, to: Message, mtype: MessageType, **fields: object) -> None:
        self._send(Message(mtype, self.id, to.frm, self.term, **fields))  # type: ignore[arg-type]

    def _committed_to_apply(self) -> tuple[Entry, ...]:
        lo = max(self._applying, self.log.snapshot_index) + 1
        hi = self.log.committed
        if hi < lo or self.log.pending_snapshot is not None:
            return ()
        return tuple(self.log.slice(lo, hi + 1))

    def has_ready(self) -> bool:
        if self._pending_bcast and self.role is Role.LEADER:
            return True
        return bool(
            self._msgs or self._read_states or self.log.pending_snapshot is not None
            or self.log.stable < self.log.last_index
            or self.hard_state() != self._prev_hard
            or self.soft_state() != self._prev_soft
            or (self.log.committed > self._applying and self.log.pending_snapshot is None)
        )

    def ready(self) -> Ready:
        """Collect the pending output. Call ``advance`` before the next one."""
        if self._ready_outstanding:
            raise RuntimeError("ready() called again before advance()")
        if self._pending_bcast and self.role is Role.LEADER:
            self._bcast_append()
        self._pending_bcast = False
        soft = self.soft_state()
        hard = self.hard_state()
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard != self._prev_hard else None,
            entries=self.log.unstable_entries(),
            snapshot=self.log.pending_snapshot,
            messages=tuple(self._msgs),
            committed_entries=self._committed_to_apply(),
            read_states=tuple(self._read_states),
        )
        self._msgs = []
        self._read_states = []
        self._prev_soft = soft
        if rd.committed_entries:
            self._applying = rd.committed_entries[-1].index
        self._ready_outstanding = True
        return rd

    def advance(self, rd: Ready) -> None:
        """The caller has done everything ``rd`` asked for."""
        self._ready_outstanding = False
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.snapshot is not None:
            if self.log.pending_snapshot is rd.snapshot:
                self.log.pending_snapshot = None
            idx = rd.snapshot.meta.index
            self.log.applied = max(self.log.applied, idx)
            self._applying = max(self._applying, idx)
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
        if rd.committed_entries:
            self.log.applied = max(self.log.applied, rd.committed_entries[-1].index)
        if self.role is Role.LEADER:
            self._leader_advanced()
