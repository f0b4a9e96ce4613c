"""Leader behaviour: replication, commitment, heartbeats, ReadIndex, transfer.

A mixin of RaftNode, split out only to keep each module readable; it uses
the node's fields directly (``log``, ``conf``, ``progress``, ``_send``...).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import InvalidRequest, NotLeader
from .progress import Progress, ProgressState
from .quorum import committed_index, has_quorum
from .types import Entry, EntryKind, Message, MessageType, NodeId, ReadState, Role, SnapshotChunk

if TYPE_CHECKING:
    from .node import RaftNode

log = logging.getLogger("quorate.raft")
MT = MessageType


@dataclass(slots=True)
class _ReadRequest:
    """A ReadIndex request waiting for a quorum to confirm leadership."""

    index: int
    ctx: bytes
    requester: NodeId
    acks: set[NodeId] = field(default_factory=set)


class LeaderMixin:
    # -- state ---------------------------------------------------------------

    def _init_leader_state(self: RaftNode) -> None:
        self._reads: list[_ReadRequest] = []
        self._reads_before_commit: list[tuple[bytes, NodeId]] = []
        self.quorum_active = False  # leader heard from a majority recently

    def _reset_leader_state(self: RaftNode) -> None:
        self.progress = {}
        self._self_removal_index = 0
        self._reads = []
        self._reads_before_commit = []
        self.quorum_active = False
        self._pending_bcast = False

    def _become_leader(self: RaftNode) -> None:
        # Voters that just granted us their vote count as heard from in the
        # first check-quorum window: a vote is contact within this term.
        granted = {m for m, ok in self._votes.items() if ok}
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.id
        self.quorum_active = True
        last = self.log.last_index
        for m in self.conf.members():
            self.progress[m] = Progress(last + 1, self.cfg.max_inflight)
            self.progress[m].recent_active = m in granted
        me = self.progress.get(self.id)
        if me is not None:
            me.match = self.log.stable
            me.recent_active = True
        # A new leader may not change membership before an entry of its own
        # term commits (thesis §4.1 bug fix); the no-op below is that entry.
        self._pending_conf_index = last + 1
        self.log.append([Entry(self.term, last + 1, EntryKind.NORMAL, b"")])
        log.info("node=%s term=%d became leader at index %d", self.id, self.term, last + 1)
        self._bcast_append()

    def _committed_in_term(self: RaftNode) -> bool:
        return self.log.term_at(self.log.committed) == self.term

    # -- time ----------------------------------------------------------------

    def _tick_leader(self: RaftNode) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self.lead_transferee is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= self.cfg.election_ticks:
                log.info("node=%s term=%d leadership transfer to %s timed out",
                         self.id, self.term, self.lead_transferee)
                self._abort_transfer()
        if self._election_elapsed >= self.cfg.election_ticks:
            self._election_elapsed = 0
            if self.cfg.check_quorum and not self._check_quorum_active():
                log.warning("node=%s term=%d stepping down: no contact with a quorum for an "
                            "election timeout", self.id, self.term)
                self._become_follower(self.term, None)
                return
        if self._heartbeat_elapsed >= self.cfg.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._bcast_heartbeat(b"")

    def _check_quorum_active(self: RaftNode) -> bool:
        active = {self.id}
        for node_id, pr in self.progress.items():
            if pr.recent_active:
                active.add(node_id)
            if node_id != self.id:
                pr.recent_active = False
        self.quorum_active = has_quorum(self.conf.voters, active)
        return self.quorum_active

    # -- sending ---------------------------------------------------------------

    def _peers(self: RaftNode) -> list[NodeId]:
        return sorted(m for m in self.progress if m != self.id)

    def _bcast_append(self: RaftNode) -> None:
        for peer in self._peers():
            self._send_append(peer, send_if_empty=True)

    def _bcast_heartbeat(self: RaftNode, ctx: bytes) -> None:
        for peer in self._peers():
            pr = self.progress[peer]
            commit = min(pr.match, self.log.committed)
            self._send(Message(MT.HEARTBEAT, self.id, peer, self.term, commit=commit, context=ctx))

    def _send_append(self: RaftNode, to: NodeId, send_if_empty: bool) -> bool:
        """Send ``to`` what it lacks, if its progress allows; True if sent."""
        pr = self.progress[to]
        if pr.is_paused():
            return False
        prev = pr.next - 1
        prev_term = self.log.term_at(prev)
        if prev_term is None:
            return self._start_snapshot(to, pr)
        ents = self.log.slice(pr.next, self.log.last_index + 1, self.cfg.max_entries_per_append)
        if not ents and not send_if_empty:
            return False
        self._send(Message(MT.APPEND, self.id, to, self.term, log_term=prev_term, index=prev,
                           entries=tuple(ents), commit=self.log.committed))
        if pr.state is ProgressState.REPLICATE and ents:
            pr.optimistic_update(ents[-1].index)
            pr.inflights.add(ents[-1].index)
        elif pr.state is ProgressState.PROBE:
            pr.probe_sent = True
        return True

    def _start_snapshot(self: RaftNode, to: NodeId, pr: Progress) -> bool:
        snap = self.log.snapshot
        if snap is None:
            return False
        log.info("node=%s term=%d sending snapshot at index %d to %s", self.id, self.term, snap.meta.index, to)
        pr.become_snapshot(snap)
        self._send_snapshot_chunk(to, pr)
        return True

    def _send_snapshot_chunk(self: RaftNode, to: NodeId, pr: Progress) -> None:
        snap = pr.snapshot
        assert snap is not None
        size = self.cfg.snapshot_chunk_bytes
        off = min(pr.snapshot_offset, len(snap.data))
        if off >= len(snap.data) and len(snap.data) > 0:
            off = max(0, len(snap.data) - size)  # resend the last chunk
        data = snap.data[off : off + size]
        done = off + len(data) >= len(snap.data)
        chunk = SnapshotChunk(snap.meta, off, data, done)
        self._send(Message(MT.SNAPSHOT, self.id, to, self.term, snapshot=chunk))

    # -- responses -------------------------------------------------------------

    def _step_leader(self: RaftNode, msg: Message) -> None:
        pr = self.progress.get(msg.frm)
        t = msg.type
        if t is MT.READ_INDEX:
            self._leader_read_index(msg.context, msg.frm)
            return
        if pr is None:
            return
        if t in (MT.APPEND_RESP, MT.HEARTBEAT_RESP, MT.SNAPSHOT_RESP):
            pr.recent_active = True
        if t is MT.APPEND_RESP:
            self._handle_append_resp(msg, pr)
        elif t is MT.HEARTBEAT_RESP:
            self._handle_heartbeat_resp(msg, pr)
        elif t is MT.SNAPSHOT_RESP and pr.state is ProgressState.SNAPSHOT:
            self._handle_snapshot_resp(msg, pr)

    def _handle_snapshot_resp(self: RaftNode, msg: Message, pr: Progress) -> None:
        """Only an acknowledgement that moves the stream forward sends the next
        chunk, so a resent chunk never starts a second stream. A follower
        asking for an earlier offset (it lost its buffer, or the answer is a
        stale one) is served by the stall detector on the next heartbeat."""
        if msg.index > pr.snapshot_offset:
            pr.snapshot_progressed = True
            pr.snapshot_offset = msg.index
            if pr.snapshot is not None and msg.index < len(pr.snapshot.data):
                self._send_snapshot_chunk(msg.frm, pr)
        elif msg.index < pr.snapshot_offset:
            pr.snapshot_offset = msg.index

    def _handle_append_resp(self: RaftNode, msg: Message, pr: Progress) -> None:
        if msg.reject:
            next_probe = msg.reject_hint
            if msg.log_term > 0:
                next_probe = self.log.find_conflict_by_term(msg.reject_hint, msg.log_term)
            if pr.maybe_decr_to(msg.index, next_probe):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(msg.frm, send_if_empty=True)
            return
        was_paused = pr.is_paused()
        # An answer to a probe at exactly ``match`` (e.g. the empty probe after
        # a snapshot install) also proves the logs agree: go replicate.
        probe_confirmed = pr.state is ProgressState.PROBE and msg.index == pr.match
        if not pr.maybe_update(msg.index) and not probe_confirmed:
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT:
            if pr.snapshot is None or pr.match >= pr.snapshot.meta.index:
                pr.become_probe()
        else:
            pr.inflights.free_le(msg.index)
        if self._maybe_commit():
            self._bcast_append()
        elif was_paused:
            self._send_append(msg.frm, send_if_empty=True)
        if self.role is not Role.LEADER or msg.frm not in self.progress:
            return
        while self._send_append(msg.frm, send_if_empty=False):
            pass
        if msg.frm == self.lead_transferee and pr.match == self.log.last_index:
            self._send_timeout_now(msg.frm)

    def _handle_heartbeat_resp(self: RaftNode, msg: Message, pr: Progress) -> None:
        if pr.state is ProgressState.SNAPSHOT:
            if not pr.snapshot_progressed:
                self._send_snapshot_chunk(msg.frm, pr)  # the stream stalled: resend
            pr.snapshot_progressed = False
        else:
            pr.probe_sent = False
            if pr.state is ProgressState.REPLICATE and pr.inflights.full():
                # The whole window may have been lost: free one slot so an
                # append goes out; a rejection then sends us back to probing.
                pr.inflights.free_first()
            if pr.match < self.log.last_index:
                self._send_append(msg.frm, send_if_empty=True)
        if msg.context:
            self._ack_read(msg.context, msg.frm)

    def _maybe_commit(self: RaftNode) -> bool:
        """Raft §5.4.2: only an entry of the current term is committed by
        counting replicas; earlier ones commit with it."""
        match = {m: pr.match for m, pr in self.progress.items()}
        idx = committed_index(self.conf.voters, match)
        if idx <= self.log.committed or self.log.term_at(idx) != self.term:
            return False
        old = self.log.committed
        self.log.commit_to(idx)
        self._on_commit_advanced(old)
        if self.role is Role.LEADER and self._reads_before_commit:
            waiting, self._reads_before_commit = self._reads_before_commit, []
            for ctx, requester in waiting:
                self._leader_read_index(ctx, requester)
        return True

    def _leader_advanced(self: RaftNode) -> None:
        """Our own entries became durable: they now count for commitment."""
        me = self.progress.get(self.id)
        if me is not None and me.maybe_update(self.log.stable) and self._maybe_commit():
            self._bcast_append()

    def _on_leader_conf_changed(self: RaftNode) -> None:
        last = self.log.last_index
        for m in self.conf.members():
            if m not in self.progress:
                self.progress[m] = Progress(last + 1, self.cfg.max_inflight)
                self.progress[m].recent_active = True  # give it an election timeout
        for m in list(self.progress):
            if m not in self.conf.members():
                del self.progress[m]
        if self.lead_transferee is not None and self.lead_transferee not in self.conf.voters:
            self._abort_transfer()
        if self.id not in self.conf.voters:
            # Removed (thesis §4.2.2): tell the others it committed, then step down.
            self._bcast_append()
            log.info("node=%s term=%d removed from the configuration; stepping down", self.id, self.term)
            self._become_follower(self.term, None)
            return
        if self._maybe_commit():  # a smaller quorum may commit more
            self._bcast_append()
        self._pending_bcast = True

    # -- ReadIndex (thesis §6.4) ------------------------------------------------

    def _leader_read_index(self: RaftNode, ctx: bytes, requester: NodeId) -> None:
        if not self._committed_in_term():
            # The commit index is only known to be current once an entry of
            # this term is committed (thesis §6.4 step 1).
            self._reads_before_commit.append((ctx, requester))
            return
        req = _ReadRequest(self.log.committed, ctx, requester, {self.id})
        if has_quorum(self.conf.voters, req.acks):
            self._release_read(req)
            return
        self._reads.append(req)
        self._bcast_heartbeat(ctx)

    def _ack_read(self: RaftNode, ctx: bytes, frm: NodeId) -> None:
        for pos, req in enumerate(self._reads):
            if req.ctx != ctx:
                continue
            req.acks.add(frm)
            if has_quorum(self.conf.voters, req.acks):
                # Confirms leadership for every earlier request as well.
                done, self._reads = self._reads[: pos + 1], self._reads[pos + 1 :]
                for r in done:
                    self._release_read(r)
            return

    def _release_read(self: RaftNode, req: _ReadRequest) -> None:
        if req.requester == self.id:
            self._read_states.append(ReadState(req.index, req.ctx))
        else:
            self._send(Message(MT.READ_INDEX_RESP, self.id, req.requester, self.term,
                               index=req.index, context=req.ctx))

    # -- leadership transfer (thesis §3.10) ----------------------------------------

    def transfer_leadership(self: RaftNode, target: NodeId) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if target == self.id:
            return
        if target not in self.conf.voters:
            raise InvalidRequest(f"{target} is not a voter")
        if self.lead_transferee == target:
            return
        self._abort_transfer()
        self.lead_transferee = target
        self._transfer_elapsed = 0
        log.info("node=%s term=%d transferring leadership to %s", self.id, self.term, target)
        if self.progress[target].match == self.log.last_index:
            self._send_timeout_now(target)
        else:
            self._send_append(target, send_if_empty=True)

    def _send_timeout_now(self: RaftNode, to: NodeId) -> None:
        self._send(Message(MT.TIMEOUT_NOW, self.id, to, self.term))

    def _abort_transfer(self: RaftNode) -> None:
        self.lead_transferee = None
        self._transfer_elapsed = 0
