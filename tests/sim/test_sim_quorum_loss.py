"""Quorum-loss recovery in the simulator (sim/recovery.py): the fault, the
provider, the watchdog on every node, and the checkers that say recovery
happened exactly in the safe cases and lost only what it had to.

Focused runs script one quorum loss on a cluster whose nemesis is off (the
watchdog is switched on by ``RecoverySettings(enabled=True)``), then go
through the simulator's usual phases and final checks (``simulate``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from quorate.raft.types import ConfChange, ConfChangeType, Entry, EntryKind, Role
from quorate.recovery.quorum import Force, Observation, Wait, decide
from quorate.sim import run_seed
from quorate.sim.__main__ import main
from quorate.sim.checkers import (
    CommittedLog,
    EntryId,
    InvariantViolation,
    LogView,
    RecoveryAudit,
    SnapshotImages,
)
from quorate.sim.cluster import Cluster
from quorate.sim.linearizability import Operation, OpKind
from quorate.sim.nemesis import ALL_FAULTS, Fault, format_faults, parse_faults
from quorate.sim.node import SimNode, Status
from quorate.sim.recovery import SYNTHETIC_CLIENT, RecoverySettings, check_epochs, split_history
from quorate.sim.runner import make_config, replay_command, simulate, summarize, timed_sweep

STRIKE_AT = 1500  # ms: well after the first leader, with writes behind it


def build(nodes: int, seed: int = 1, **overrides: object) -> Cluster:
    cfg = make_config(nodes, "none", recovery=RecoverySettings(enabled=True), keep_trace=True,
                      duration_ms=4000, **overrides)
    return Cluster(seed, cfg)


def at(cluster: Cluster, when: int, action: Callable[[], None]) -> None:
    cluster.loop.call_at(when, action)


def strike_at(cluster: Cluster, modes: Callable[[Cluster], dict[str, str]], when: int = STRIKE_AT,
              **kw: object) -> list[str]:
    """Fail the voters ``modes(cluster)`` names, at ``when``; the returned
    list gets the victims then."""
    victims: list[str] = []

    def strike() -> None:
        chosen = modes(cluster)
        victims.extend(sorted(chosen))
        cluster.nemesis.strike(chosen, **kw)  # type: ignore[arg-type]

    at(cluster, when, strike)
    return victims


def others_than_leader(cluster: Cluster, count: int) -> list[str]:
    leader = cluster.leader()
    assert leader is not None, "a leader is expected before the quorum loss"
    return [i for i in sorted(cluster.nodes) if i != leader.id][:count]


def lines(cluster: Cluster, needle: str) -> list[str]:
    return [line for line in cluster.trace.lines if needle in line]


def run_ok(cluster: Cluster) -> None:
    error = simulate(cluster)
    assert error is None, error + "\n" + "\n".join(cluster.trace.lines[-40:])


def client_writes_after(cluster: Cluster, time: int) -> int:
    return sum(1 for op in cluster.world.history
               if op.kind is not OpKind.GET and op.invoke > time and op.result and op.result[0] == "ok")


# -- the focused cases ------------------------------------------------------------------


def test_two_of_three_crashed_keeping_their_data_are_restarted_in_place() -> None:
    c = build(3)
    victims = strike_at(c, lambda c: {v: "crash" for v in others_than_leader(c, 2)})
    run_ok(c)
    s = c.stats
    assert s.quorum_losses == 1 and s.restarts_in_place == 2 and s.forces == 0
    assert s.recoveries == 1 and c.recovery is not None and not c.recovery.epochs
    assert not c.safety.recovery.lost  # nothing lost
    restarted = [line.split("restart ")[1].split()[0] for line in lines(c, "watchdog: restart")]
    assert sorted(restarted) == victims  # each exactly once
    assert all(n.status is Status.RUNNING and n.epoch == 0 for n in c.nodes.values())


def test_two_of_three_with_their_data_lost_the_survivor_forces_and_leads_epoch_1() -> None:
    c = build(3)
    strike_at(c, lambda c: {v: "lose" for v in others_than_leader(c, 2)})
    run_ok(c)
    assert c.recovery is not None
    [epoch] = c.recovery.epochs
    survivor = c.nodes[epoch.node]
    assert epoch.epoch == 1 and epoch.voters == {survivor.id} and len(epoch.removed) == 2
    assert survivor.epoch == 1 and survivor.raft is not None
    assert survivor.raft.role is Role.LEADER and survivor.raft.conf.voters == {survivor.id}
    assert c.stats.forces == 1 and c.stats.restarts_in_place == 0 and c.stats.recoveries == 1
    assert client_writes_after(c, epoch.time) > 50  # writes accepted in the new epoch
    assert [n.status for n in c.nodes.values()].count(Status.LOST) == 2
    assert lines(c, "epoch 1 begins") and lines(c, "watchdog: FORCE")


def test_three_of_five_lost_the_most_up_to_date_survivor_forces_the_other_follows() -> None:
    c = build(5)
    strike_at(c, lambda c: {v: "lose" for v in others_than_leader(c, 3)})
    run_ok(c)
    assert c.recovery is not None
    [epoch] = c.recovery.epochs
    assert len(epoch.voters) == 2 and len(epoch.ranks) == 2
    best = min(epoch.ranks, key=lambda n: (-epoch.ranks[n][0], -epoch.ranks[n][1], n))
    assert epoch.node == best  # the most up-to-date log (ties: lowest id)
    [other] = epoch.voters - {epoch.node}
    leader, follower = c.nodes[epoch.node], c.nodes[other]
    assert leader.raft is not None and follower.raft is not None
    assert leader.raft.role is Role.LEADER and follower.raft.leader == leader.id
    assert follower.epoch == 1 and follower.raft.conf.voters == epoch.voters
    assert follower.applied == leader.applied  # it caught up in the new configuration
    assert c.stats.forces == 1 and client_writes_after(c, epoch.time) > 50


def test_two_of_three_paused_nothing_is_forced_and_the_cluster_resumes() -> None:
    c = build(3)
    strike_at(c, lambda c: {v: "pause" for v in others_than_leader(c, 2)}, duration=1500)
    run_ok(c)
    assert c.stats.forces == 0 and c.stats.restarts_in_place == 0
    waits = lines(c, "watchdog: wait: no quorum")
    assert waits and all("not confirmed dead" in w for w in waits)
    assert c.stats.recoveries == 1  # once they resumed
    assert all(n.status is Status.RUNNING for n in c.nodes.values())


@pytest.mark.parametrize("unseen", [False, True])
def test_a_majority_cut_off_is_never_forced_around(unseen: bool) -> None:
    c = build(5)

    def strike() -> None:
        victims = others_than_leader(c, 3)
        c.nemesis.strike({v: "partition" for v in victims}, together=False,
                         unseen=victims if unseen else [], duration=1500)

    at(c, STRIKE_AT, strike)
    run_ok(c)
    assert c.stats.forces == 0
    said = "unknown" if unseen else "running"
    waits = [w for w in lines(c, "watchdog: wait: no quorum") if "not confirmed dead" in w]
    assert waits and all(f": {said}" in w for w in waits)


def test_mixed_dead_and_paused_nothing_is_forced_while_one_may_be_alive() -> None:
    c = build(5)

    def modes(c: Cluster) -> dict[str, str]:
        a, b, p = others_than_leader(c, 3)
        return {a: "lose", b: "lose", p: "pause"}

    strike_at(c, modes, duration=1200)
    run_ok(c)
    # Paused: never forced around; once it resumes, 3 of 5 answer and an
    # ordinary election does it.
    assert c.stats.forces == 0 and c.stats.recoveries == 1
    assert [n.status for n in c.nodes.values()].count(Status.LOST) == 2


def test_mixed_dead_with_state_and_dead_without_restarts_then_needs_no_force() -> None:
    c = build(5)

    def modes(c: Cluster) -> dict[str, str]:
        a, b, r = others_than_leader(c, 3)
        return {a: "lose", b: "lose", r: "crash"}

    strike_at(c, modes)
    run_ok(c)
    assert c.stats.restarts_in_place == 1 and c.stats.forces == 0


def test_survivors_that_cannot_reach_each_other_never_force() -> None:
    c = build(5)
    forces_while_apart: list[int] = []

    def strike() -> None:
        victims = others_than_leader(c, 3)
        c.nemesis.strike({v: "lose" for v in victims})
        survivors = sorted(set(c.nodes) - set(victims))
        c.network.split([[s] for s in survivors])
        c.nemesis.partitioned = True

    def heal() -> None:
        forces_while_apart.append(c.stats.forces)
        c.nemesis._heal_partition()

    at(c, STRIKE_AT, strike)
    at(c, STRIKE_AT + 1500, heal)
    run_ok(c)
    assert forces_while_apart == [0]
    assert any("cannot be reached but is not confirmed dead" in w for w in lines(c, "watchdog: wait"))
    assert c.stats.forces == 1  # once they reach each other again


def test_survivors_deciding_to_restart_the_same_nodes_start_each_once() -> None:
    c = build(5)
    strike_at(c, lambda c: {v: "crash" for v in others_than_leader(c, 3)})
    run_ok(c)
    restarted = [line.split("restart ")[1].split()[0] for line in lines(c, "watchdog: restart")]
    assert len(restarted) == len(set(restarted)) == 3
    assert c.stats.restarts_in_place == 3 and c.stats.forces == 0


@pytest.mark.parametrize("seed, durable", [(1, True), (3, False)])
def test_a_crash_while_writing_the_forced_configuration(seed: int, durable: bool) -> None:
    """The survivor dies in the middle of its own force: the forced
    configuration counts only if it reached the disk committed; either way
    the survivor forces (again, or from disk) once it is back."""
    c = build(3, seed)

    def strike() -> None:
        survivor = others_than_leader(c, 1)[0]
        c.nemesis.strike({v: "lose" for v in c.nodes if v != survivor})
        node = c.nodes[survivor]
        node.crash_on_next_write = True  # its next write is the force
        c.loop.call_later(1000, c.nemesis._restart, node)

    at(c, STRIKE_AT, strike)
    run_ok(c)
    said = lines(c, "crashed while forcing")
    assert len(said) == 1 and ("is durable" in said[0]) == durable
    assert c.stats.forces == 1 and c.recovery is not None and len(c.recovery.epochs) == 1


def test_learners_left_out_of_a_forced_configuration_stop_for_good() -> None:
    c = build(3)

    def add_learner() -> None:
        leader = c.leader()
        assert leader is not None and leader.raft is not None
        leader.raft.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, "n4"))
        c.add_node("n4")
        leader.run(lambda: None)

    def modes(c: Cluster) -> dict[str, str]:
        survivor = others_than_leader(c, 1)[0]  # a voter: n4 sorts last
        return {v: "lose" for v in sorted(c.nodes) if v not in ("n4", survivor)}

    at(c, 1000, add_learner)
    strike_at(c, modes)
    run_ok(c)
    assert c.stats.forces == 1 and c.nodes["n4"].status is Status.REMOVED


# -- the checkers can fail ------------------------------------------------------------------


def _wrong_decide(obs: Observation) -> object:
    """decide, but forcing whenever it would wait on a missing voter."""
    d = decide(obs)
    if isinstance(d, Wait) and obs.leaderless_s >= obs.grace_s and obs.voters - set(obs.answers):
        epoch = max(f.epoch for f in obs.answers.values()) + 1
        return Force(frozenset(obs.answers), epoch, obs.voters - set(obs.answers), "planted")
    return d


@pytest.mark.parametrize("mode, truth", [("pause", "paused"), ("partition", "cut off"),
                                          ("crash", "crashed")])
def test_a_wrong_force_is_caught(monkeypatch: pytest.MonkeyPatch, mode: str, truth: str) -> None:
    if mode == "crash":  # restarting in place is what decide says first: skip it
        monkeypatch.setattr("quorate.sim.recovery.SimProvider.state_intact", lambda self, n: False)
    monkeypatch.setattr("quorate.sim.recovery.decide", _wrong_decide)
    c = build(3)
    strike_at(c, lambda c: {v: mode for v in others_than_leader(c, 2)}, duration=1500)
    error = simulate(c)
    assert error is not None and "recovery safety" in error and f"which was {truth}" in error


def test_a_watchdog_that_never_recovers_fails_the_liveness_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("quorate.sim.recovery.decide", lambda obs: Wait("planted: never"))
    c = build(3)
    strike_at(c, lambda c: {v: "lose" for v in others_than_leader(c, 2)})
    error = simulate(c)
    assert error is not None and "recovery liveness" in error and "planted: never" in error


def test_a_restart_in_place_is_refused_by_the_lock_once_done() -> None:
    c = build(3)
    c.start()
    c.loop.run_until(500)
    node = c.nodes["n2"]
    node.crash()
    assert c.recovery is not None
    provider = c.recovery.provider
    assert provider.truth("n2") == "crashed" and provider.state_intact("n2")
    assert provider.restart_in_place("n2") and not provider.restart_in_place("n2")
    node.lose_data()
    assert provider.truth("n2") == "lost" and not provider.state_intact("n2")
    assert not provider.restart_in_place("n2")
    with pytest.raises(RuntimeError, match="lost its data"):
        node.start()


def e(index: int, term: int, data: bytes = b"x") -> Entry:
    return Entry(term, index, EntryKind.NORMAL, data)


def _audit(*entries: Entry) -> RecoveryAudit:
    cl = CommittedLog()
    for entry in entries:
        cl.observe_applied("n1", entry)
    return RecoveryAudit(cl, SnapshotImages())


def view(snapshot_index: int, *entries: Entry) -> LogView:
    return LogView(snapshot_index, {x.index: EntryId.of(x) for x in entries})


def test_force_safety_needs_every_left_out_voter_dead_and_gone() -> None:
    audit = _audit(e(1, 1))
    audit.check_force_safe("n3", 1, {"n1": "lost", "n2": "removed"})
    for truth in ("paused", "cut off", "crashed", "running"):
        with pytest.raises(InvariantViolation, match=f"recovery safety: n3 .* n2 which was {truth}"):
            audit.check_force_safe("n3", 1, {"n1": "lost", "n2": truth})


def test_entries_only_the_dead_held_are_lost_by_recovery_and_the_history_forks() -> None:
    audit = _audit(e(1, 1, b"a"), e(2, 1, b"b"), e(3, 2, b"c"), e(4, 2, b"d"))
    logs = {"n3": view(0, e(1, 1, b"a"), e(2, 1, b"b"), e(3, 3, b"z")),
            "n4": view(1, e(2, 1, b"b"))}
    fork = audit.observe_force("n3", 1, logs, ["n1", "n2"])
    assert [i for i, _ in fork.lost] == [3, 4]
    committed = audit.committed
    assert sorted(committed.entries) == [1, 2]
    committed.observe_applied("n3", e(3, 3, b"z"))  # the survivor's entry, in the new epoch
    committed.observe_applied("n1", e(3, 2, b"c"))  # left behind: still checked against the old
    with pytest.raises(InvariantViolation, match="state machine safety"):
        committed.observe_applied("n1", e(3, 3, b"z"))
    with pytest.raises(InvariantViolation, match="state machine safety"):
        committed.observe_applied("n4", e(3, 2, b"c"))


def test_losing_an_entry_a_survivor_held_fails() -> None:
    audit = _audit(e(1, 1, b"a"), e(2, 1, b"b"), e(3, 2, b"c"))
    logs = {"n3": view(0, e(1, 1, b"a"), e(2, 1, b"b")),
            "n4": view(0, e(1, 1, b"a"), e(2, 1, b"b"), e(3, 2, b"c"))}
    with pytest.raises(InvariantViolation, match="without committed entry 3 .* survivor n4 held"):
        audit.observe_force("n3", 1, logs, ["n1", "n2"])
    audit = _audit(e(1, 1, b"a"), e(2, 1, b"b"), e(3, 2, b"c"))
    logs["n4"] = view(3)  # compacted past it: held too
    with pytest.raises(InvariantViolation, match="survivor n4 held"):
        audit.observe_force("n3", 1, logs, ["n1", "n2"])


def test_a_force_that_did_not_survive_is_undone() -> None:
    audit = _audit(e(1, 1, b"a"), e(2, 2, b"b"))
    fork = audit.observe_force("n3", 1, {"n3": view(0, e(1, 1, b"a"))}, ["n1", "n2"])
    assert sorted(audit.committed.entries) == [1] and audit.lost
    audit.undo(fork)
    assert sorted(audit.committed.entries) == [1, 2] and not audit.lost
    audit.committed.observe_applied("n1", e(2, 2, b"b"))


def test_snapshot_images_fork_too() -> None:
    images = SnapshotImages()
    images.observe("n1", 40, "old")
    images.observe("n1", 80, "old-lost")
    images.fork(60, ["n1"])
    images.observe("n3", 40, "old")
    images.observe("n3", 80, "new")  # the index was lost: a new image is fine
    images.observe("n1", 80, "old-lost")
    with pytest.raises(InvariantViolation, match="snapshots at index 40"):
        images.observe("n3", 40, "other")


# -- the history, epoch by epoch ---------------------------------------------------------


def op(kind: OpKind, key: str, invoke: int, complete: int | None, result: tuple | None,
       value: str | None = None) -> Operation:
    return Operation(0, kind, key, value, None, invoke, complete, result)


def test_the_history_splits_at_each_forced_epoch() -> None:
    before = op(OpKind.PUT, "k", 10, 20, ("ok", 1), "a")
    across = op(OpKind.PUT, "k", 90, 110, ("ok", 2), "b")
    read_across = op(OpKind.GET, "k", 95, 105, ("ok", "a", 1))
    after = op(OpKind.GET, "k", 120, 130, ("ok", "a", 1))
    segments = split_history([before, across, read_across, after], [(100, {"k": ("a", 1)})])
    first, second = segments
    assert before in first and read_across not in first and after not in first
    assert [(o.value, o.result, o.invoke) for o in first if o.value == "b"] == [("b", None, 90)]
    synthetic = [o for o in second if o.client == SYNTHETIC_CLIENT]
    assert [(o.key, o.value, o.result, o.complete) for o in synthetic] == [("k", "a", ("ok", 1), 99)]
    assert [(o.value, o.result, o.invoke) for o in second if o.value == "b"] == [("b", None, 100)]
    assert after in second and before not in second
    assert check_epochs([before, across, read_across, after], [(100, {"k": ("a", 1)})])[1].ok
    # A read in the new epoch of what only the old one had is caught.
    lost_read = op(OpKind.GET, "k", 120, 130, ("ok", "zz", 7))
    part, verdict = check_epochs([before, lost_read], [(100, {"k": ("a", 1)})])
    assert part == 1 and not verdict.ok
    assert split_history([before], []) == [[before]]


# -- faults, CLI, determinism -------------------------------------------------------------


def test_all_keeps_its_meaning_and_quorum_loss_is_added_by_name() -> None:
    assert Fault.QUORUM_LOSS not in parse_faults("all") and parse_faults("all") == ALL_FAULTS
    assert parse_faults("all,quorum_loss") == ALL_FAULTS | {Fault.QUORUM_LOSS}
    assert parse_faults("quorum_loss") == {Fault.QUORUM_LOSS}
    assert format_faults(ALL_FAULTS | {Fault.QUORUM_LOSS}) == "all,quorum_loss"
    assert format_faults({Fault.QUORUM_LOSS, Fault.CRASH}) == "crash,quorum_loss"
    assert replay_command(3, 5, ALL_FAULTS | {Fault.QUORUM_LOSS}, 7000) == (
        "python -m quorate.sim --nodes 5 --seeds 3 --faults all,quorum_loss --duration-ms 7000 --trace")


def test_a_quorum_loss_seed_replays_byte_for_byte() -> None:
    first = run_seed(1, 3, "all,quorum_loss", trace=True, duration_ms=4000)
    second = run_seed(1, 3, "all,quorum_loss", trace=True, duration_ms=4000)
    assert first.trace == second.trace and first.trace_digest == second.trace_digest
    assert first.stats == second.stats and first.stats["forces"] > 0
    code = ("from quorate.sim import run_seed;"
            "print(run_seed(1, 3, 'all,quorum_loss', duration_ms=4000).trace_digest)")
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == first.trace_digest


def test_cli_traces_watchdog_decisions_and_epochs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--nodes", "3", "--seeds", "1", "--faults", "quorum_loss", "--trace"]) == 0
    out = capsys.readouterr().out
    for phrase in ("nemesis quorum loss:", "watchdog: FORCE", "epoch 1 begins",
                   "applied the forced configuration of epoch 1", "watchdog: wait:", "seed 1: ok"):
        assert phrase in out, phrase
    assert main(["--nodes", "3", "--seeds", "0-1", "--faults", "quorum_loss", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "forces" in out and "restarts_in_place" in out and "failures: 0" in out


# -- two bugs the sweeps found outside the simulator, fixed; kept as regressions -----------

def test_the_forced_term_is_fresh_even_when_the_dead_majority_moved_on() -> None:
    """The survivor is cut off (pre-vote keeps its term), the majority moves
    to a new term (a leadership transfer), then loses its data. Forcing in
    the survivor's term + 1 reused the term the majority's new leader had;
    epoch terms (epoch << 32) cannot collide with the old configuration's."""
    c = build(3)
    roles: dict[str, str] = {}

    def cut() -> None:
        leader = c.leader()
        assert leader is not None
        other, survivor = others_than_leader(c, 2)
        roles.update(leader=leader.id, other=other, survivor=survivor)
        c.network.split([[survivor], [leader.id, other]])
        c.nemesis.partitioned = True

    def transfer() -> None:
        leader = c.nodes[roles["leader"]]
        assert leader.raft is not None
        leader.raft.transfer_leadership(roles["other"])
        leader.run(lambda: None)

    def lose() -> None:
        c.nemesis._heal_partition()
        c.nemesis.strike({roles["leader"]: "lose", roles["other"]: "lose"})

    at(c, 1000, cut)
    at(c, 1300, transfer)
    at(c, 1700, lose)
    run_ok(c)


def test_survivors_one_membership_change_apart_recover() -> None:
    """n4 joins as a learner; one voter is cut off; n4 is promoted (committed
    on the others); then the leader and n4 lose their data. The survivors
    hold configurations one change apart: the newer one says "survivors
    disagree", the older one "a majority answers, an ordinary election will
    do", and no election can: the older survivor's log is behind."""
    c = build(3)
    roles: dict[str, str] = {}

    def leader_node() -> SimNode:
        node = c.nodes[roles["leader"]]
        assert node.raft is not None
        return node

    def learner() -> None:
        leader = c.leader()
        assert leader is not None and leader.raft is not None
        roles["leader"] = leader.id
        leader.raft.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, "n4"))
        c.add_node("n4")
        leader.run(lambda: None)

    def cut() -> None:
        a, b = [i for i in sorted(c.nodes) if i not in (roles["leader"], "n4")]
        c.network.split([[b], [roles["leader"], a, "n4"]])
        c.nemesis.partitioned = True

    def promote() -> None:
        leader = leader_node()
        assert leader.raft is not None
        leader.raft.propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, "n4"))
        leader.run(lambda: None)

    def lose() -> None:
        c.nemesis._heal_partition()
        c.nemesis.strike({roles["leader"]: "lose", "n4": "lose"})

    at(c, 1000, learner)
    at(c, 1400, cut)
    at(c, 1500, promote)
    at(c, 1800, lose)
    run_ok(c)


# -- the sweep --------------------------------------------------------------------------------

SEEDS = 200
DURATION_MS = 7000  # of the fault phase (10 s by default): keeps both sweeps near 40 s on 2 cores


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [3, 5])
def test_sweep_with_quorum_loss_and_all_faults(nodes: int) -> None:
    faults = ALL_FAULTS | {Fault.QUORUM_LOSS}
    results, elapsed = timed_sweep(list(range(SEEDS)), nodes, faults, duration_ms=DURATION_MS)
    print()
    print(summarize(results, elapsed, label=f"nodes={nodes} faults=all,quorum_loss  "))
    failures = []
    for r in results:
        if r.ok:
            continue
        failures.append(r)
        print(f"seed {r.seed}: {r.error}\n  replay: {replay_command(r.seed, nodes, faults, DURATION_MS)}")
    assert not failures, f"{len(failures)} seed(s) failed; first: seed {failures[0].seed}"
    total = {k: sum(r.stats[k] for r in results) for k in results[0].stats}
    assert total["quorum_losses"] >= SEEDS, "the sweep barely lost quorums"
    assert total["forces"] >= SEEDS // 4 and total["restarts_in_place"] >= SEEDS // 4
    assert total["watchdog_waits"] >= SEEDS and total["recoveries"] >= SEEDS // 2
