"""The nemesis: faults injected at random times while clients run.

Kinds (selectable, see ``parse_faults``):

- partition: a symmetric split, a one-way cut, or a bridge (one node sees
  both halves, which cannot see each other); healed after a while.
- crash: a process dies, either at once or in the middle of its next
  write of entries or a snapshot (a prefix of that Ready persisted, no
  message sent); it is restarted later from its durable state.
- drop: the network loses a larger share of messages for a while.
- pause: a process stops (SIGSTOP): no ticks, messages queue up; then resumes.
- membership: through the leader, add a brand-new node as a learner, promote
  it to voter once it caught up, or remove a voter (voters stay within 3..7,
  one change at a time); a removed node is stopped for good.
- transfer: the leader hands leadership to another voter (TimeoutNow).
- quorum_loss (not part of ``all``: ``--faults all,quorum_loss``): a
  majority of the voters fail at once, each one crashed with its state
  intact, dead with its state gone for good, paused, or cut off (alone or
  together); one kind for all of them or a mix. The watchdogs of
  ``recovery.py`` are then to restart, force or wait. While recovery from a
  quorum loss of dead voters is awaited, no other fault is injected.

``stop`` ends the fault phase: it heals, resumes and restarts everything
(but the nodes whose state was lost), so the liveness check can demand that
the cluster recovers.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from quorate.raft.errors import RaftError
from quorate.raft.types import ConfChange, ConfChangeType, Role

from .node import SimNode, Status
from .recovery import DEAD

if TYPE_CHECKING:
    from .cluster import Cluster


class Fault(enum.Enum):
    PARTITION = "partition"
    CRASH = "crash"
    DROP = "drop"
    PAUSE = "pause"
    MEMBERSHIP = "membership"
    TRANSFER = "transfer"
    QUORUM_LOSS = "quorum_loss"


# What ``all`` means: every kind but quorum_loss, so that sweeps keep their
# meaning; add it with ``all,quorum_loss``.
ALL_FAULTS = frozenset(f for f in Fault if f is not Fault.QUORUM_LOSS)

# How each victim of a quorum loss fails.
QL_MODES = ("crash", "lose", "pause", "partition")


def parse_faults(text: str) -> frozenset[Fault]:
    """``none``, or a comma-separated list of fault kinds and ``all``."""
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if names in ([], ["none"]):
        return frozenset()
    known = {f.value: f for f in Fault}
    unknown = [n for n in names if n not in known and n != "all"]
    if unknown:
        raise ValueError(
            f"unknown fault kind(s) {', '.join(unknown)}; known: none, all, "
            + ", ".join(sorted(known))
        )
    kinds: set[Fault] = set()
    for n in names:
        kinds |= ALL_FAULTS if n == "all" else {known[n]}
    return frozenset(kinds)


def format_faults(faults: Iterable[Fault]) -> str:
    kinds = frozenset(faults)
    if not kinds:
        return "none"
    if ALL_FAULTS <= kinds:
        return ",".join(["all", *sorted(f.value for f in kinds - ALL_FAULTS)])
    return ",".join(sorted(f.value for f in kinds))


@dataclass(frozen=True, slots=True)
class NemesisSettings:
    faults: frozenset[Fault] = ALL_FAULTS
    min_gap_ms: int = 100  # between two fault decisions
    max_gap_ms: int = 500
    min_fault_ms: int = 150  # how long a fault lasts
    max_fault_ms: int = 1200
    max_voters: int = 7
    min_voters: int = 3


@dataclass(slots=True)
class _ConfPending:
    change: ConfChange
    index: int
    proposed_at: int


class Nemesis:
    """Schedules faults on a cluster until ``stop``."""

    def __init__(self, cluster: Cluster, rng: random.Random, cfg: NemesisSettings) -> None:
        self.cluster = cluster
        self.rng = rng
        self.cfg = cfg
        self.active = False
        self.partitioned = False
        self.pending: _ConfPending | None = None
        self._next_id = len(cluster.nodes) + 1
        # A quorum loss of paused or cut-off voters lasts until this time.
        self._quorum_loss_until = 0

    def start(self) -> None:
        if not self.cfg.faults:
            return
        self.active = True
        self._schedule()

    def _schedule(self) -> None:
        gap = self.rng.randint(self.cfg.min_gap_ms, self.cfg.max_gap_ms)
        self.cluster.loop.call_later(gap, self._act)

    def _duration(self) -> int:
        return self.rng.randint(self.cfg.min_fault_ms, self.cfg.max_fault_ms)

    def _act(self) -> None:
        if not self.active:
            return
        recovery = self.cluster.recovery
        if recovery is not None and recovery.armed:
            self._schedule()  # awaiting recovery from dead voters: no other fault
            return
        kind = self.rng.choice(sorted(self.cfg.faults, key=lambda f: f.value))
        {
            Fault.PARTITION: self._partition,
            Fault.CRASH: self._crash,
            Fault.DROP: self._drop,
            Fault.PAUSE: self._pause,
            Fault.MEMBERSHIP: self._membership,
            Fault.TRANSFER: self._transfer,
            Fault.QUORUM_LOSS: self._quorum_loss,
        }[kind]()
        self._schedule()

    def _log(self, what: str) -> None:
        self.cluster.trace.log(self.cluster.loop.now, "nemesis", what)

    # -- partitions ------------------------------------------------------------

    def _partition(self) -> None:
        if self.partitioned:
            return
        ids = [n.id for n in self.cluster.running()]
        if len(ids) < 3:
            return
        self.rng.shuffle(ids)
        net = self.cluster.network
        style = self.rng.choice(("split", "one-way", "bridge"))
        cut = self.rng.randint(1, len(ids) - 1)
        left, right = sorted(ids[:cut]), sorted(ids[cut:])
        if style == "split":
            net.split([left, right])
        elif style == "one-way":
            net.cut_one_way(left, right)
        else:
            bridge, left = left[0], left[1:]
            net.bridge(left, right)
            left = [f"bridge={bridge}", *left]
        self.partitioned = True
        self.cluster.stats.partitions += 1
        self._log(f"partition {style} {left} | {right}")
        self.cluster.loop.call_later(self._duration(), self._heal_partition)

    def _heal_partition(self) -> None:
        if self.partitioned:
            self.cluster.network.heal()
            self.partitioned = False
            if self.cluster.recovery is not None:
                self.cluster.recovery.provider.unseen.clear()
            self._log("heal partition")

    # -- crashes and pauses ----------------------------------------------------

    def _crash(self) -> None:
        running = self.cluster.running()
        crashed = [n for n in self.cluster.nodes.values() if n.status is Status.CRASHED]
        if not running or len(crashed) >= max(1, len(running) // 2):
            return
        node = self.rng.choice(running)
        loop = self.cluster.loop
        if self.rng.random() < 0.5:
            node.crash_on_next_write = True
            self._log(f"crash {node.id} during its next write")
            loop.call_later(self.rng.randint(1, 50), self._crash_now, node, node.incarnation)
        else:
            self._crash_now(node, node.incarnation)
        loop.call_later(self._duration(), self._restart, node)

    def _crash_now(self, node: SimNode, incarnation: int) -> None:
        if not self.active or node.incarnation != incarnation or not node.alive:
            return
        self._log(f"crash {node.id}")
        node.crash()
        self.cluster.stats.crashes += 1

    def _restart(self, node: SimNode) -> None:
        if node.status is Status.RUNNING and node.crash_on_next_write:
            node.crash_on_next_write = False  # it never wrote: the crash is off
        if node.status is not Status.CRASHED:
            return
        self._log(f"restart {node.id}")
        self.cluster.stats.restarts += 1
        node.start()

    def _pause(self) -> None:
        running = [n for n in self.cluster.running() if not n.paused]
        if not running:
            return
        node = self.rng.choice(running)
        node.pause()
        self.cluster.stats.pauses += 1
        self._log(f"pause {node.id}")
        self.cluster.loop.call_later(self._duration(), self._resume, node, node.incarnation)

    def _resume(self, node: SimNode, incarnation: int) -> None:
        if node.incarnation == incarnation and node.alive and node.paused:
            self._log(f"resume {node.id}")
            node.resume()

    def _drop(self) -> None:
        net = self.cluster.network
        if net.drop_rate > net.config.drop_rate:
            return
        net.drop_rate = self.rng.choice((0.05, 0.1, 0.2, 0.3))
        self._log(f"drop rate {net.drop_rate}")
        self.cluster.loop.call_later(self._duration(), self._end_drop)

    def _end_drop(self) -> None:
        net = self.cluster.network
        if net.drop_rate != net.config.drop_rate:
            net.drop_rate = net.config.drop_rate
            self._log("drop rate back to normal")

    def _transfer(self) -> None:
        leader = self.cluster.leader()
        if leader is None or leader.raft is None:
            return
        voters = sorted(leader.raft.conf_state.voters - {leader.id})
        if not voters:
            return
        target = self.rng.choice(voters)
        try:
            leader.raft.transfer_leadership(target)
        except RaftError as exc:
            self._log(f"transfer {leader.id} -> {target} refused: {type(exc).__name__}")
            return
        self._log(f"transfer leadership {leader.id} -> {target}")
        leader.run(lambda: None)

    # -- membership ------------------------------------------------------------

    def _membership(self) -> None:
        if self.pending is not None:
            return
        leader = self.cluster.leader()
        if leader is None or leader.raft is None:
            return
        change = self._pick_change(leader)
        if change is None:
            return
        try:
            index = leader.raft.propose_conf_change(change)
        except RaftError as exc:
            self._log(f"{change.type.value} {change.node_id} refused: {type(exc).__name__}")
            return
        if change.type is ConfChangeType.ADD_LEARNER:
            self.cluster.add_node(change.node_id)
        self.pending = _ConfPending(change, index, self.cluster.loop.now)
        self.cluster.stats.conf_changes += 1
        self._log(f"propose {change.type.value} {change.node_id} at {leader.id} index {index}")
        leader.run(lambda: None)
        self.cluster.loop.call_later(50, self._poll_membership)

    def _pick_change(self, leader: SimNode) -> ConfChange | None:
        assert leader.raft is not None
        conf = leader.raft.conf_state
        cfg = self.cfg
        caught_up = [
            n
            for n in (self.cluster.nodes.get(i) for i in sorted(conf.learners))
            if n is not None and n.alive and n.applied >= leader.raft.commit_index - 5
        ]
        if caught_up and len(conf.voters) < cfg.max_voters:
            return ConfChange(ConfChangeType.ADD_VOTER, caught_up[0].id)
        roll = self.rng.random()
        if len(conf.voters) > cfg.min_voters and (roll < 0.5 or conf.learners):
            return ConfChange(ConfChangeType.REMOVE, self.rng.choice(sorted(conf.voters)))
        if len(conf.voters) + len(conf.learners) < cfg.max_voters and not conf.learners:
            new_id = f"n{self._next_id}"
            self._next_id += 1
            return ConfChange(ConfChangeType.ADD_LEARNER, new_id)
        return None

    def _poll_membership(self) -> None:
        pending = self.pending
        if pending is None:
            return
        leader = self.cluster.leader()
        if leader is None or leader.raft is None or leader.raft.commit_index < pending.index:
            self.cluster.loop.call_later(50, self._poll_membership)
            return
        conf = leader.raft.conf_state
        cc = pending.change
        if cc.type is ConfChangeType.ADD_LEARNER:
            done = cc.node_id in conf.members()
        elif cc.type is ConfChangeType.ADD_VOTER:
            done = cc.node_id in conf.voters
        else:
            done = cc.node_id not in conf.members()
        self.pending = None
        self._log(f"{cc.type.value} {cc.node_id} {'committed' if done else 'lost'}")
        node = self.cluster.nodes.get(cc.node_id)
        if node is None:
            return
        if (done and cc.type is ConfChangeType.REMOVE) or (
            not done and cc.type is ConfChangeType.ADD_LEARNER
        ):
            self.cluster.retire(node)

    # -- quorum loss ---------------------------------------------------------------

    def _quorum_loss(self) -> None:
        cluster = self.cluster
        if cluster.recovery is None or cluster.loop.now < self._quorum_loss_until:
            return
        leader = cluster.leader()
        if leader is None or leader.raft is None:
            return
        voters = sorted(leader.raft.conf_state.voters)
        need = len(voters) // 2 + 1
        # At least one voter that runs now must survive (with its state), or
        # nothing could ever recover: a real cluster loses no more than that.
        alive = [v for v in voters if (n := cluster.nodes.get(v)) is not None and n.alive]
        if len(voters) - need < 1 or not alive:
            return
        survivor = self.rng.choice(alive)
        victims = sorted(self.rng.sample([v for v in voters if v != survivor], need))
        style = self.rng.choice(("crash", "lose", "pause", "partition", "mixed"))
        if style == "mixed":
            modes = {v: self.rng.choice(QL_MODES) for v in victims}
        else:
            modes = {v: style for v in victims}
        if self.partitioned:  # one partition at a time: pause them instead
            modes = {v: "pause" if m == "partition" else m for v, m in modes.items()}
        self.strike(modes)

    def strike(self, modes: dict[str, str], together: bool | None = None,
               unseen: Iterable[str] | None = None, duration: int | None = None) -> None:
        """Fail these voters at once, each as ``modes`` says (crash: dead,
        state intact; lose: dead, state gone; pause; partition: cut off, all
        together or each alone). Paused and cut-off ones come back after
        ``duration``; the provider cannot see the cut-off ones in ``unseen``
        (drawn at random when not given)."""
        cluster = self.cluster
        loop = cluster.loop
        recovery = cluster.recovery
        assert recovery is not None, "quorum loss needs the watchdog (recovery) on"
        rng = self.rng
        victims = sorted(modes)
        cut = [v for v in victims if modes[v] == "partition"]
        if together is None and cut:
            together = rng.random() < 0.5
        if unseen is None:
            unseen = [v for v in cut if rng.random() < recovery.cfg.unseen_rate]
        if duration is None:
            duration = self._duration()
        mark = recovery.mark()
        said = []
        for v in victims:
            node = cluster.nodes[v]
            mode = modes[v]
            if mode not in QL_MODES:
                raise ValueError(f"unknown quorum-loss mode {mode!r}")
            if mode == "lose" and node.status not in (Status.LOST, Status.REMOVED):
                node.lose_data()
                said.append(f"{v} dead (state lost)")
            elif mode == "lose" or not node.alive or (mode == "pause" and node.paused):
                said.append(f"{v} already {recovery.provider.truth(v)}")
            elif mode == "crash":
                node.crash()
                cluster.stats.crashes += 1
                recovery.crashed_by_quorum_loss[v] = node.incarnation
                said.append(f"{v} crashed (state intact)")
            elif mode == "pause":
                node.pause()
                cluster.stats.pauses += 1
                loop.call_later(duration, self._resume, node, node.incarnation)
                said.append(f"{v} paused")
            else:
                said.append(f"{v} cut off{' (provider: unknown)' if v in unseen else ''}")
        if cut:
            others = sorted(set(cluster.nodes) - set(cut))
            groups = [cut, others] if together else [*([v] for v in cut), others]
            cluster.network.split(groups)
            recovery.provider.unseen.update(unseen)
            self.partitioned = True
            cluster.stats.partitions += 1
            loop.call_later(duration, self._heal_partition)
        cluster.stats.quorum_losses += 1
        together_said = " (together)" if cut and together and len(cut) > 1 else ""
        self._log(f"quorum loss: {', '.join(said)}{together_said}")
        dead = all(recovery.provider.truth(v) in DEAD for v in victims)
        if dead:
            recovery.arm(victims, mark)
        else:  # once the paused and cut-off ones are back (scheduled after that)
            self._quorum_loss_until = loop.now + duration
            loop.call_later(duration, self._arm_after_restore, victims)

    def _arm_after_restore(self, victims: list[str]) -> None:
        if self.cluster.recovery is not None:
            self.cluster.recovery.arm(victims)

    # -- the end ---------------------------------------------------------------

    def stop(self) -> None:
        """Heal everything; the membership change in flight may still finish."""
        self.active = False
        cluster = self.cluster
        cluster.network.heal()
        self.partitioned = False
        if cluster.recovery is not None:
            cluster.recovery.provider.unseen.clear()
        cluster.network.drop_rate = cluster.network.config.drop_rate
        for node in sorted(cluster.nodes.values(), key=lambda n: n.id):
            node.crash_on_next_write = False
            if node.status is Status.CRASHED:
                cluster.stats.restarts += 1
                node.start()
            elif node.alive and node.paused:
                node.resume()
        self._log("stop: healed, resumed and restarted everything")


def leader_role(node: SimNode) -> bool:
    return node.raft is not None and node.raft.role is Role.LEADER
