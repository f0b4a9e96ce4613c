"""Quorum-loss recovery, the decision (S2, S3): pure, so the simulator and
the real watchdog run the very same rules.

Every manager runs a watchdog (``quorum_watchdog.py``). When no leader has
been known for longer than a grace period, it probes every voter of its
last committed configuration, asks the provider about each voter that did
not answer, and calls :func:`decide` with what it saw. The outcome:

``Wait``
    nothing is done, and the reason is written for the operator. This is the
    answer whenever a missing voter might be alive: its provider says it runs,
    or cannot tell (S3: a partition or SIGSTOP is not death).
``RestartInPlace``
    missing voters that are confirmed dead but whose durable state is intact
    are started again with their own state. The configuration does not
    change and nothing is lost. The provider's per-instance lock makes sure
    that one survivor, and only one, starts each of them.
``Force``
    every missing voter is confirmed dead with its state gone, the answering
    survivors saw the same facts, and the policy allows it. This survivor has
    the most up-to-date log (highest last term, then last index, ties going
    to the lowest id), so it forces a new configuration made of the survivors
    in a new epoch.
``Follow``
    the same, but another survivor is the one to force; this one waits for it.

The survivors need no leader to agree: each reaches the same decision from
the same facts, and a survivor that sees different facts waits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quorate.providers.base import InstanceState

NodeId = str


@dataclass(frozen=True, slots=True)
class PeerFacts:
    """What one survivor says of itself in answer to a recovery probe."""

    id: NodeId
    epoch: int
    term: int
    last_term: int
    last_index: int
    commit: int
    voters: frozenset[NodeId]           # its last committed configuration
    leader: NodeId | None               # the leader it knows, if any
    # Its own latest view, for the agreement check: the voters that answered
    # its probes, and the provider's verdict on each one that did not.
    sees: frozenset[NodeId] = frozenset()
    verdicts: dict[NodeId, InstanceState] = field(default_factory=dict)

    @property
    def log_rank(self) -> tuple[int, int]:
        return (self.last_term, self.last_index)


@dataclass(frozen=True, slots=True)
class Observation:
    """What this node gathered in one watchdog round."""

    me: NodeId
    voters: frozenset[NodeId]                    # this node's last committed voters
    answers: dict[NodeId, PeerFacts]             # the voters that answered (this node included)
    verdicts: dict[NodeId, InstanceState]        # provider's describe() of each voter that did not
    intact: dict[NodeId, bool]                   # whether that voter's durable state is still there
    leaderless_s: float                          # how long no leader has been known
    grace_s: float
    auto_recover: bool = True


@dataclass(frozen=True, slots=True)
class Wait:
    reason: str
    missing: dict[NodeId, str] = field(default_factory=dict)   # voter -> what the provider says
    command: str | None = None                                 # what an operator could run


@dataclass(frozen=True, slots=True)
class RestartInPlace:
    members: tuple[NodeId, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Force:
    voters: frozenset[NodeId]
    epoch: int
    removed: frozenset[NodeId]
    reason: str


@dataclass(frozen=True, slots=True)
class Follow:
    leader: NodeId
    reason: str


Decision = Wait | RestartInPlace | Force | Follow


def recovery_leader(answers: dict[NodeId, PeerFacts]) -> NodeId:
    """The survivor with the most up-to-date log; ties go to the lowest id."""
    return min(answers.values(), key=lambda f: (-f.last_term, -f.last_index, f.id)).id


def recover_command(node: NodeId) -> str:
    return f"quorate recover --from {node}"


def decide(obs: Observation) -> Decision:
    """What this node does about a missing leader (see the module doc).

    Survivors may hold configurations one change apart (a promotion that
    committed while one of them was cut off). The electorate considered is
    the union of the voters any survivor knows, so no voter of whichever
    configuration is current is overlooked; whether an ordinary election
    can still work is judged in the configuration of the survivor with the
    most up-to-date log, the one every survivor will vote for."""
    if obs.leaderless_s < obs.grace_s:
        return Wait(f"no leader for {obs.leaderless_s:.1f}s, under the {obs.grace_s:.1f}s grace period")
    if obs.me not in obs.answers:
        return Wait("this node's own facts are missing")
    lead = recovery_leader(obs.answers)
    lead_conf = obs.answers[lead].voters
    universe = frozenset(obs.voters).union(*(f.voters for f in obs.answers.values()))
    survivors = frozenset(obs.answers) & universe
    missing = sorted(universe - survivors)
    if not missing:
        return Wait("every voter answers: an ordinary election will elect a leader")
    answering = survivors & lead_conf
    if len(answering) * 2 > len(lead_conf):
        return Wait(f"a majority of {lead}'s voters answers ({len(answering)} of {len(lead_conf)}) and {lead} "
                    "holds the most up-to-date log: an ordinary election will elect a leader")
    said = {m: obs.verdicts.get(m, InstanceState.UNKNOWN) for m in missing}
    described = {m: _describe(v, obs.intact.get(m, False)) for m, v in said.items()}
    command = recover_command(lead)
    # Restarting a dead voter with its own state changes no configuration:
    # always safe, and the first thing to try.
    restartable = tuple(m for m in missing if said[m] is InstanceState.TERMINATED and obs.intact.get(m, False))
    if restartable:
        return RestartInPlace(restartable, f"no quorum: {', '.join(restartable)} confirmed dead with "
                                           "intact state; restarting in place")
    alive = [m for m, v in said.items() if v is not InstanceState.TERMINATED]
    if alive:
        verb = "is" if len(alive) == 1 else "are"
        return Wait(f"no quorum: {', '.join(alive)} cannot be reached but {verb} not confirmed dead by the "
                    "provider (partitioned or paused, perhaps); nothing is forced", described, command)
    disagreement = _disagreement(obs, survivors, frozenset(missing))
    if disagreement:
        return Wait(f"no quorum, and the survivors disagree: {disagreement}; nothing is forced",
                    described, command)
    if not obs.auto_recover:
        return Wait("no quorum: every missing voter is confirmed dead with its state gone, but automatic "
                    "recovery is off", described, command)
    if lead != obs.me:
        return Follow(lead, f"no quorum: {', '.join(missing)} confirmed dead; {lead} has the most "
                            "up-to-date log and forces the new configuration")
    epoch = max(f.epoch for f in obs.answers.values()) + 1
    return Force(survivors, epoch, frozenset(missing),
                 f"no quorum: {', '.join(missing)} confirmed dead with their state gone; forcing "
                 f"voters {sorted(survivors)} in epoch {epoch}")


def _describe(verdict: InstanceState, intact: bool) -> str:
    if verdict is InstanceState.TERMINATED:
        return "terminated, state intact" if intact else "terminated, state gone"
    return verdict.value


def _disagreement(obs: Observation, survivors: frozenset[NodeId], missing: frozenset[NodeId]) -> str:
    """Why the survivors' facts differ, or '' when they agree: the same
    epoch, no leader anywhere, each survivor reaching exactly the others,
    and the same verdicts on the missing."""
    mine = obs.answers[obs.me]
    for f in sorted(obs.answers.values(), key=lambda f: f.id):
        if f.epoch != mine.epoch:
            return f"{f.id} is in epoch {f.epoch}, this node in {mine.epoch}"
        if f.leader is not None:
            return f"{f.id} follows leader {f.leader}"
        if f.sees & (survivors | missing) != survivors:
            return f"{f.id} reaches {sorted(f.sees)}, this node {sorted(survivors)}"
        theirs = {m: f.verdicts.get(m) for m in sorted(missing)}
        if any(v is not InstanceState.TERMINATED for v in theirs.values()):
            return f"{f.id}'s provider says {', '.join(f'{m}: {v.value if v else None}' for m, v in theirs.items())}"
    return ""
