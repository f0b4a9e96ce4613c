"""Quorum-loss recovery in the simulator: the provider, the watchdog, and
what is checked about them (docs/simulation.md, "Quorum-loss recovery").

The nemesis's ``quorum_loss`` fault makes a majority of the voters fail at
once: crashed with their state intact, dead with their state gone, paused,
or cut off. Every running node then runs the same watchdog as a real
manager: once it has known no leader for ``grace_ms``, it probes the voters
of its last committed configuration, asks the provider about each one that
did not answer, and acts on :func:`quorate.recovery.quorum.decide`.

Modelling choices:

- A probe is an instantaneous reachability check through the network's
  partition state: a voter answers when it runs, is not paused, and the
  links both ways between the two nodes are open. It draws no randomness,
  sends no message and cannot be lost (the real probe is a request with a
  timeout; what matters to ``decide`` is only who answers).
- Each answer carries the answering node's own latest view (``sees`` and
  ``verdicts`` from its last watchdog round), so the survivors' agreement
  check compares what each of them really saw.
- The provider answers from the simulator's truth: a crashed node is
  TERMINATED with its state intact, a node whose data was lost (or that left
  the cluster) is TERMINATED with its state gone, a paused node is RUNNING,
  and a node cut off by a quorum-loss partition is RUNNING or, for some of
  them, UNKNOWN (the provider cannot see it either). Restarting in place goes
  through the provider's per-instance lock: the first survivor to ask starts
  the node, later asks are refused, so each dead node restarts once.

What is checked (besides the checkers of ``checkers.py``, which fork at
each forced configuration): a configuration is forced only when every voter
left out is truly dead with its state gone; the committed entries lost by
recovery were held by no survivor; after a quorum loss where every failed
voter is dead, once no other fault is active, a leader commits an entry of
its own term beyond the event's commit index within ``grace_ms +
bound_ms``; and the
clients' history is linearizable within each epoch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quorate.providers.base import InstanceState
from quorate.raft.types import ConfChange, ConfChangeType, EntryKind, Role
from quorate.recovery.quorum import (
    Follow,
    Force,
    Observation,
    PeerFacts,
    RestartInPlace,
    Wait,
    decide,
)

from .checkers import EntryId, InvariantViolation, LivenessViolation, LogView
from .linearizability import CheckResult, Operation, OpKind, check_history
from .node import SimNode, Status

if TYPE_CHECKING:
    from .cluster import Cluster

# What the simulator knows of a node (the truth the provider reports).
LOST = "lost"  # dead, state gone for good
REMOVED = "removed"  # left the cluster, stopped for good
CRASHED = "crashed"  # dead, state intact
PAUSED = "paused"
CUT_OFF = "cut off"  # running, some of its links blocked
RUNNING = "running"
DEAD = frozenset({LOST, REMOVED, CRASHED})


@dataclass(frozen=True, slots=True)
class RecoverySettings:
    # The watchdog also runs without the quorum_loss fault (focused tests).
    enabled: bool = False
    grace_ms: int = 300  # no leader for this long (3 election timeouts) before deciding
    round_ms: int = 50  # watchdog period
    # Liveness: after a quorum loss (of dead voters; or once the paused and
    # cut-off ones are back), with no other fault active, a leader commits
    # an entry created after the event within grace_ms + bound_ms.
    bound_ms: int = 1500
    unseen_rate: float = 0.5  # share of partitioned victims the provider reports UNKNOWN


@dataclass(frozen=True, slots=True)
class EpochChange:
    """A forced configuration, as executed."""

    time: int
    epoch: int
    node: str
    index: int
    term: int
    voters: frozenset[str]
    removed: frozenset[str]
    lost: tuple[int, ...]  # committed indexes lost by recovery
    # Each survivor's (last term, last index) just before the force.
    ranks: dict[str, tuple[int, int]] = field(default_factory=dict)


class SimProvider:
    """The instance provider of the simulated cluster, answering from the truth."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.unseen: set[str] = set()  # cut off and invisible to the provider too

    def truth(self, node_id: str) -> str:
        node = self.cluster.nodes.get(node_id)
        if node is None:
            return "unknown"
        if node.status is Status.LOST:
            return LOST
        if node.status is Status.REMOVED:
            return REMOVED
        if node.status is Status.CRASHED:
            return CRASHED
        if node.paused:
            return PAUSED
        net = self.cluster.network
        if net.partitioned and any(
            not (net.can_reach(node_id, o) and net.can_reach(o, node_id))
            for o in self.cluster.nodes if o != node_id
        ):
            return CUT_OFF
        return RUNNING

    def describe(self, node_id: str) -> InstanceState:
        truth = self.truth(node_id)
        if truth in DEAD:
            return InstanceState.TERMINATED
        if truth == "unknown" or (node_id in self.unseen and truth == CUT_OFF):
            return InstanceState.UNKNOWN
        return InstanceState.RUNNING

    def state_intact(self, node_id: str) -> bool:
        return self.truth(node_id) not in (LOST, REMOVED, "unknown")

    def restart_in_place(self, node_id: str) -> bool:
        """Start a dead node with its own state, under the per-instance lock:
        only the first caller finds it dead and starts it."""
        node = self.cluster.nodes.get(node_id)
        if node is None or node.status is not Status.CRASHED:
            return False
        node.start()
        return True


@dataclass(slots=True)
class _WatchState:
    leaderless_since: int | None = None
    sees: frozenset[str] = frozenset()
    verdicts: dict[str, InstanceState] = field(default_factory=dict)
    said: str = ""  # the last decision written to the trace (deduplicated)


@dataclass(slots=True)
class _Armed:
    """A quorum loss where every failed voter is dead: recovery must follow."""

    at: int
    victims: tuple[str, ...]
    mark: tuple[int, int]  # the highest term and last index of any log at the event
    quiet_since: int | None = None


class Recovery:
    """The watchdogs of every node, the provider, and the recovery checks."""

    def __init__(self, cluster: Cluster, rng: random.Random, cfg: RecoverySettings) -> None:
        self.cluster = cluster
        self.rng = rng
        self.cfg = cfg
        self.provider = SimProvider(cluster)
        self.epochs: list[EpochChange] = []
        self._start_states: dict[tuple[str, int], dict[str, tuple[str, int]]] = {}
        self._states: dict[str, _WatchState] = {}
        self._armed: list[_Armed] = []
        # Node -> incarnation in which a quorum loss crashed it: the nemesis
        # will not restart it, the watchdog may (or not, once a quorum is back).
        self.crashed_by_quorum_loss: dict[str, int] = {}

    # -- the watchdog ------------------------------------------------------------

    def on_start(self, node: SimNode) -> None:
        """A node (re)started: a fresh watchdog, leaderless since now."""
        self._states[node.id] = _WatchState(leaderless_since=self.cluster.loop.now)
        phase = self.rng.randint(1, self.cfg.round_ms)
        self.cluster.loop.call_later(phase, self._round, node, node.incarnation)

    def _round(self, node: SimNode, incarnation: int) -> None:
        if node.incarnation != incarnation or not node.alive:
            return
        loop = self.cluster.loop
        loop.call_later(self.cfg.round_ms, self._round, node, incarnation)
        raft = node.raft
        if node.paused or raft is None:
            return  # a stopped process runs no watchdog either
        st = self._states[node.id]
        if self.known_leader(node) is not None:
            st.leaderless_since = None
            st.said = ""
            return
        now = loop.now
        if st.leaderless_since is None:
            st.leaderless_since = now
        obs = self.observe(node, st, now - st.leaderless_since)
        self._act(node, st, decide(obs))

    def known_leader(self, node: SimNode) -> str | None:
        """The leader ``node`` knows: itself when it leads, else the one it
        follows if it heard from it within an election timeout. (The field
        alone would do for voters, which clear it when they campaign, but a
        learner never campaigns and would follow a dead leader forever.)"""
        raft = node.raft
        if raft is None or raft.leader is None:
            return None
        if raft.role is Role.LEADER:
            return raft.leader
        if self.cluster.loop.now - node.leader_heard > raft.cfg.election_ticks * node.tick_ms:
            return None
        return raft.leader

    def _answers(self, me: str, other: str) -> bool:
        peer = self.cluster.nodes.get(other)
        if peer is None or not peer.alive or peer.paused or peer.raft is None:
            return False
        net = self.cluster.network
        return net.can_reach(me, other) and net.can_reach(other, me)

    def observe(self, node: SimNode, st: _WatchState, leaderless_ms: int) -> Observation:
        """One watchdog round's probe: who answers, what the provider says."""
        raft = node.raft
        assert raft is not None
        voters = frozenset(raft.conf.voters)
        # Probe this node's voters, then any voter a survivor knows of (a
        # configuration one change newer), as the real watchdog does.
        universe, asked, reach = set(voters), set(), []
        while universe - asked:
            for v in sorted(universe - asked):
                asked.add(v)
                if v == node.id or self._answers(node.id, v):
                    reach.append(v)
                    peer = self.cluster.nodes[v].raft
                    if peer is not None:
                        universe |= peer.conf.voters
        reach.sort()
        missing = sorted(universe - set(reach))
        provider = self.provider
        st.sees = frozenset(reach)
        st.verdicts = {m: provider.describe(m) for m in missing}
        intact = {m: provider.state_intact(m) for m in missing}
        answers = {v: self.facts(self.cluster.nodes[v]) for v in reach}
        return Observation(node.id, voters, answers, dict(st.verdicts), intact,
                           leaderless_s=leaderless_ms / 1000, grace_s=self.cfg.grace_ms / 1000)

    def facts(self, node: SimNode) -> PeerFacts:
        raft = node.raft
        assert raft is not None
        st = self._states.get(node.id) or _WatchState()
        return PeerFacts(node.id, node.epoch, raft.term, raft.log.last_term, raft.last_index,
                         raft.commit_index, frozenset(raft.conf.voters), self.known_leader(node),
                         st.sees, dict(st.verdicts))

    def _say(self, node: SimNode, st: _WatchState, what: str) -> bool:
        if what == st.said:
            return False
        st.said = what
        self.cluster.trace.log(self.cluster.loop.now, node.id, f"watchdog: {what}")
        return True

    def _act(self, node: SimNode, st: _WatchState, decision: object) -> None:
        stats = self.cluster.stats
        if isinstance(decision, Wait):
            if (st.leaderless_since is not None
                    and self.cluster.loop.now - st.leaderless_since < self.cfg.grace_ms):
                return  # under the grace period: nothing worth telling
            said = ", ".join(f"{m}: {v}" for m, v in sorted(decision.missing.items()))
            if self._say(node, st, f"wait: {decision.reason}" + (f" [{said}]" if said else "")):
                stats.watchdog_waits += 1
        elif isinstance(decision, Follow):
            if self._say(node, st, f"follow {decision.leader}: {decision.reason}"):
                stats.watchdog_follows += 1
        elif isinstance(decision, RestartInPlace):
            for member in decision.members:
                if self.provider.restart_in_place(member):
                    stats.restarts_in_place += 1
                    st.said = ""
                    self.cluster.trace.log(self.cluster.loop.now, node.id,
                                           f"watchdog: restart {member} in place ({decision.reason})")
                else:
                    stats.restart_lock_refusals += 1
        elif isinstance(decision, Force):
            self.force(node, decision)
        else:  # pragma: no cover - decide returns one of the four
            raise InvariantViolation(f"decide returned {decision!r}")

    # -- forcing ---------------------------------------------------------------------

    def force(self, node: SimNode, decision: Force) -> EpochChange | None:
        """Execute a Force on ``node``: check it was safe, account for what
        it loses, force, and record the new epoch (None when the node
        crashed while writing it and it did not survive)."""
        cluster = self.cluster
        raft = node.raft
        assert raft is not None
        safety = cluster.env.safety
        now = cluster.loop.now
        left_out = {m: self.provider.truth(m) for m in sorted((raft.conf.voters | decision.removed) - decision.voters)}
        safety.recovery.check_force_safe(node.id, decision.epoch, left_out)
        logs = {v: log_view(cluster.nodes[v]) for v in sorted(decision.voters) if v in cluster.nodes}
        ranks = {v: (r.log.last_term, r.last_index) for v in sorted(decision.voters)
                 if (r := cluster.nodes[v].raft) is not None}
        behind = sorted(set(cluster.nodes) - decision.voters)
        # The checkers fork first: the forcing node applies what it adopts
        # during the force itself.
        fork = safety.recovery.observe_force(node.id, decision.epoch, logs, behind)
        cluster.trace.log(
            now, node.id, f"watchdog: FORCE voters={sorted(decision.voters)} epoch={decision.epoch} "
            f"from term {raft.term} removed={sorted(decision.removed)}"
        )
        led_before = dict(safety.election.leaders)
        try:
            index = node.run(raft.force_new_configuration, decision.voters, decision.epoch)
        except InvariantViolation as exc:
            self._check_fresh_term(node, raft.term, decision.epoch, led_before, exc)
            raise
        self._check_fresh_term(node, raft.term, decision.epoch, led_before, None)
        assert isinstance(index, int)
        if node.raft is None:  # it crashed while writing the forced configuration
            if not _durably_forced(node, index):
                safety.recovery.undo(fork)
                cluster.trace.log(now, node.id, "crashed while forcing: the forced configuration "
                                                "did not survive; nothing changed")
                return None
            cluster.trace.log(now, node.id, "crashed while forcing: the forced configuration is "
                                            "durable and takes effect when it restarts")
        change = EpochChange(now, decision.epoch, node.id, index, raft.term, decision.voters,
                             decision.removed, lost=tuple(i for i, _ in fork.lost), ranks=ranks)
        self.epochs.append(change)
        # The forced configuration removed every other member (the learners
        # too): like any removed node, they stop for good.
        for other in behind:
            gone_node = cluster.nodes[other]
            if gone_node.status is Status.RUNNING or gone_node.status is Status.CRASHED:
                cluster.retire(gone_node)
        cluster.stats.forces += 1
        cluster.stats.lost_by_recovery += len(fork.lost)
        if node.id in self._states:
            self._states[node.id].said = ""
        gone = f"lost by recovery: indexes {_ranges(change.lost)}" if fork.lost else "nothing lost"
        cluster.trace.log(now, "sim", f"epoch {decision.epoch} begins: forced by {node.id} at index "
                                      f"{index} term {change.term}; {gone}")
        return change

    def on_forced(self, node: SimNode, index: int, epoch: int) -> None:
        """A node applied a forced configuration: the first application by
        its forcer gives the store the new epoch starts from."""
        key = (node.id, index)
        if key not in self._start_states:
            self._start_states[key] = {kv.key: (kv.value, kv.mod_revision)
                                       for kv in node.kv.list_prefix("")}

    def boundaries(self) -> list[tuple[int, dict[str, tuple[str, int]]]]:
        """Each forced epoch's start time and starting store."""
        return [(e.time, self._start_states.get((e.node, e.index), {})) for e in self.epochs]

    @staticmethod
    def _check_fresh_term(node: SimNode, term: int, epoch: int, led_before: dict[int, str],
                          cause: InvariantViolation | None) -> None:
        """force_new_configuration promises a fresh term, one no leader can
        have had: name the broken promise when that is what failed."""
        other = led_before.get(term)
        if other is not None and other != node.id:
            also = f" (and so: {cause})" if cause is not None else ""
            raise InvariantViolation(
                f"recovery: forced term not fresh: {node.id} forced epoch {epoch} in term {term}, "
                f"a term in which {other} was already leader{also}"
            ) from cause

    # -- liveness after a quorum loss ------------------------------------------------

    def mark(self) -> tuple[int, int]:
        """The highest term and last index of any log now: an entry above
        either was created later."""
        rafts = [n.raft for n in self.cluster.nodes.values() if n.raft is not None]
        return (max((r.term for r in rafts), default=0), max((r.last_index for r in rafts), default=0))

    def arm(self, victims: Sequence[str], mark: tuple[int, int] | None = None) -> None:
        """Recovery must follow: called at once after a quorum loss of dead
        voters (``mark`` taken before they failed), and when the paused or
        cut-off victims of another are back."""
        cluster = self.cluster
        first = not self._armed
        self._armed.append(_Armed(cluster.loop.now, tuple(victims), mark or self.mark()))
        if first:
            cluster.loop.call_later(cluster.cfg.tick_ms, self._poll)

    @property
    def armed(self) -> bool:
        return bool(self._armed)

    def _quiet(self, victims: tuple[str, ...]) -> bool:
        """No other fault is active: nothing stands between the survivors and
        recovery but the quorum loss itself."""
        cluster = self.cluster
        net = cluster.network
        if net.partitioned or net.drop_rate != net.config.drop_rate:
            return False
        for node in cluster.nodes.values():
            if node.alive and (node.paused or node.crash_on_next_write):
                return False
            if (node.status is Status.CRASHED and node.id not in victims
                    and self.crashed_by_quorum_loss.get(node.id) != node.incarnation):
                return False  # the nemesis will restart it: wait for that
        return True

    def _recovered(self, armed: _Armed) -> bool:
        """A leader committed an entry created after the event (its no-op
        or a client's write), not merely one acknowledged before it."""
        term, last = armed.mark
        for node in self.cluster.running():
            raft = node.raft
            if raft is None or node.paused or raft.role is not Role.LEADER:
                continue
            commit = raft.commit_index
            if raft.term_at(commit) == raft.term and (raft.term > term or commit > last):
                return True
        return False

    def _poll(self) -> None:
        cluster = self.cluster
        now = cluster.loop.now
        still: list[_Armed] = []
        for armed in self._armed:
            if self._recovered(armed):
                took = now - armed.at
                cluster.stats.recoveries += 1
                cluster.stats.max_recovery_ms = max(cluster.stats.max_recovery_ms, took)
                cluster.trace.log(now, "sim", f"recovered from the quorum loss at {armed.at} "
                                              f"after {took} ms")
                continue
            if not self._quiet(armed.victims):
                armed.quiet_since = None
            elif armed.quiet_since is None:
                armed.quiet_since = now
            elif now - armed.quiet_since > self.cfg.grace_ms + self.cfg.bound_ms:
                words = "; ".join(f"{n}: {st.said}" for n, st in sorted(self._states.items())
                                  if st.said and cluster.nodes[n].alive)
                raise LivenessViolation(
                    f"recovery liveness: after the quorum loss at {armed.at} (victims "
                    f"{', '.join(armed.victims)}), no leader committed anything new within "
                    f"{self.cfg.grace_ms + self.cfg.bound_ms} ms of every other fault ending "
                    f"(at {armed.quiet_since}): {_roles(cluster)}; the watchdogs last said: "
                    f"{words or 'nothing'}"
                )
            still.append(armed)
        self._armed = still
        if still:
            cluster.loop.call_later(cluster.cfg.tick_ms, self._poll)


def _durably_forced(node: SimNode, index: int) -> bool:
    """After a crash during the force's write: did the forced configuration
    reach the disk, committed?"""
    entry = node.storage.entry(index)
    if entry is None or entry.kind is not EntryKind.CONF_CHANGE:
        return False
    return (ConfChange.decode(entry.data).type is ConfChangeType.FORCE
            and node.storage.hard_state.commit >= index)


def log_view(node: SimNode) -> LogView:
    raft = node.raft
    assert raft is not None
    first = raft.first_index
    return LogView(first - 1, {e.index: EntryId.of(e) for e in raft.entries(first, raft.last_index + 1)})


def _ranges(indexes: Sequence[int]) -> str:
    parts: list[str] = []
    start = prev = None
    for i in indexes:
        if start is None:
            start = prev = i
        elif i == prev + 1:  # type: ignore[operator]
            prev = i
        else:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = prev = i
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(parts)


def _roles(cluster: Cluster) -> str:
    parts = []
    for node in cluster.sorted_nodes():
        r = node.raft
        if r is None:
            parts.append(f"{node.id}={node.status.value}")
        else:
            paused = "/paused" if node.paused else ""
            parts.append(f"{node.id}={r.role.value}/t{r.term}/e{node.epoch}/lead={r.leader}{paused}")
    return " ".join(parts)


# -- the history, epoch by epoch ------------------------------------------------------

SYNTHETIC_CLIENT = -1  # the writes that stand for a new epoch's starting store


def split_history(
    history: Sequence[Operation], boundaries: Sequence[tuple[int, dict[str, tuple[str, int]]]]
) -> list[list[Operation]]:
    """Cut the history at each forced epoch's time. An operation wholly
    between two boundaries belongs to that epoch. One that overlaps a
    boundary (or ends at one) is indeterminate: a write becomes a write of
    unknown outcome in every epoch it overlaps (invoked no earlier than the
    epoch's start), a read is dropped. Each later epoch starts from the
    forcing node's store, given as synthetic acknowledged puts just before
    the boundary."""
    if not boundaries:
        return [list(history)]
    edges = [-math.inf, *(b for b, _ in boundaries), math.inf]
    segments: list[list[Operation]] = []
    for k in range(len(edges) - 1):
        lo, hi = edges[k], edges[k + 1]
        seg: list[Operation] = []
        if k > 0:
            at = int(lo) - 1
            for key, (value, rev) in sorted(boundaries[k - 1][1].items()):
                seg.append(Operation(SYNTHETIC_CLIENT, OpKind.PUT, key, value, None, at, at, ("ok", rev)))
        for op in history:
            end = op.complete if op.result is not None else None
            if lo < op.invoke and end is not None and end < hi:
                seg.append(op)
                continue
            if op.invoke > hi or (end is not None and end < lo):
                continue  # another epoch's
            if op.kind is OpKind.GET:
                continue
            invoke = op.invoke if op.invoke >= lo else int(lo)
            seg.append(Operation(op.client, op.kind, op.key, op.value, op.prev_revision, invoke))
        segments.append(seg)
    return segments


def check_epochs(
    history: Sequence[Operation], boundaries: Sequence[tuple[int, dict[str, tuple[str, int]]]]
) -> tuple[int, CheckResult]:
    """Linearizability of each epoch's part of the history; returns the
    number of the failing part and its verdict (or the last verdict, all ok)."""
    verdict = CheckResult(True, None, "linearizable", 0)
    for k, seg in enumerate(split_history(history, boundaries)):
        verdict = check_history(seg)
        if not verdict.ok:
            return k, verdict
    return len(boundaries), verdict
