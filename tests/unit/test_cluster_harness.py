"""The test harness (quorate.testing.cluster) does what the paper, scenario
and property tests assume: deterministic, faithful to the Ready contract,
and loud when the core breaks it."""

from __future__ import annotations

import pytest

from quorate.raft import Entry, HardState, MessageType, RaftConfig, Ready, Role
from quorate.testing.cluster import Cluster, DurableStore, NotQuiescent, SafetyViolation, describe
from quorate.testing.scenario import parse, render, run_script

MT = MessageType
IDS3 = ["n1", "n2", "n3"]


def busy(seed: int) -> Cluster:
    c = Cluster(IDS3, RaftConfig(), seed=seed)
    c.run(30)
    lead = c.leader()
    assert lead is not None
    c.propose(lead, "x")
    c.isolate(lead)
    c.run(40)
    c.heal()
    c.run(10)
    return c


def test_same_seed_same_trace_and_different_seed_differs() -> None:
    """Determinism (trio style): a seed replays exactly."""
    traces = [[(k, describe(m)) for k, m in busy(s).trace] for s in (4, 4, 5)]
    assert traces[0] == traces[1]
    assert traces[0] != traces[2]


def test_partitions_drop_in_both_directions_and_heal_restores() -> None:
    c = Cluster(IDS3)
    c.elect("n1")
    c.cut("n1", "n2")
    c.isolate("n3")
    mark = len(c.trace)
    c.propose("n1", "x")
    c.deliver()
    kinds = {(m.frm, m.to): k for k, m in c.trace[mark:]}
    assert kinds[("n1", "n2")] == "drop" and kinds[("n1", "n3")] == "drop"
    assert c.node("n1").commit_index < c.node("n1").last_index
    c.heal()
    c.run(2)
    assert all(c.applied(i) == [b"x"] for i in IDS3)


def test_crash_keeps_only_what_was_persisted() -> None:
    """A Ready not yet handled is lost with the process; the durable store
    (hard state, entries, snapshot) is what the restarted node sees."""
    c = Cluster(IDS3)
    c.elect("n1")
    c.propose("n1", "durable")
    c.deliver()
    c.propose("n1", "lost")  # never persisted: no Ready handled
    c.crash("n1")
    n1 = c.restart("n1")
    assert [e.data for e in c.log_of("n1")][-1] == b"durable"
    assert n1.role is Role.FOLLOWER and n1.term == 2 and n1.vote == "n1"
    c.flush(["n1"])
    assert c.applied("n1") == [b"durable"]  # re-applied from a fresh state


def test_restart_after_compaction_rebuilds_the_state_machine() -> None:
    c = Cluster(IDS3)
    c.elect("n1")
    for k in range(3):
        c.propose("n1", f"v{k}")
    c.deliver()
    at = c.compact("n2")
    c.crash("n2")
    c.restart("n2")
    assert c.node("n2").first_index == at + 1
    assert c.applied("n2") == [b"v0", b"v1", b"v2"]


def test_deliver_gives_up_on_endless_traffic() -> None:
    c = Cluster(IDS3, max_steps=5)
    c.node("n1").campaign()
    with pytest.raises(NotQuiescent):
        c.deliver()


def test_store_refuses_a_gap_and_an_early_commit() -> None:
    """The harness checks the Ready contract (an entry gap, a commit index
    beyond the stored log) instead of papering over it."""
    store = DurableStore()
    empty = Ready(None, None, (), None, (), (), ())
    with pytest.raises(SafetyViolation):
        store.save(Ready(None, None, (Entry(1, 2),), None, (), (), ()))
    with pytest.raises(SafetyViolation):
        store.save(Ready(None, HardState(1, None, 3), (Entry(1, 1),), None, (), (), ()))
    store.save(empty)
    assert store.last_index == 1 and store.hard_state == HardState()


def test_two_leaders_in_one_term_is_reported() -> None:
    c = Cluster(IDS3)
    c.elect("n1")
    c.leaders_by_term[2].add("n9")
    with pytest.raises(SafetyViolation, match="two leaders"):
        c.check_invariants()


def test_scenario_format_round_trips() -> None:
    text = "# comment\nbootstrap n1\n----\nstale\n\nstatus\n"
    assert render(parse(text)) == "# comment\nbootstrap n1\n----\nstale\n\nstatus\n----\n"
    out = run_script(text)
    assert out == ("# comment\nbootstrap n1\n----\nn1: follower term=1 lead=- commit=1 applied=0 last=1\n\n"
                   "status\n----\nn1: follower term=1 lead=- commit=1 applied=0 last=1\n")
    with pytest.raises(ValueError, match="unknown command"):
        run_script("bootstrap n1\nfly n1\n")
