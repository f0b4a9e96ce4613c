"""Quorum-loss recovery in the core: ``force_new_configuration`` (S2).

Not in the Raft paper: a quorum lost for good leaves Raft unable to commit
anything, ever. quorate's way out (docs/recovery.md) makes the reachable
survivors the whole configuration, from the one with the most up-to-date
log. These tests pin down what the core guarantees once the caller has
decided forcing is safe (every other voter confirmed dead)."""

from __future__ import annotations

import pytest

from quorate.raft import ConfChange, ConfChangeType, EntryKind, InvalidRequest, Role
from quorate.testing.cluster import Cluster, three


def _committed_data(c: Cluster, node_id: str) -> list[bytes]:
    n = c.node(node_id)
    return [e.data for e in n.entries(n.first_index, n.commit_index + 1) if e.kind is EntryKind.NORMAL and e.data]


def test_a_lone_survivor_forces_itself_leader_and_keeps_its_log() -> None:
    c = three()
    for i in range(3):
        c.propose("n1", f"v{i}")
    c.deliver()
    c.crash("n2")
    c.crash("n3")
    before = _committed_data(c, "n1")
    term = c.node("n1").term
    # n1 was the leader: it steps down once check-quorum notices, then forces.
    c.run(30, nodes=["n1"])
    assert c.node("n1").role is not Role.LEADER
    index = c.node("n1").force_new_configuration(frozenset({"n1"}), epoch=1)
    c.flush()
    n1 = c.node("n1")
    assert n1.role is Role.LEADER and n1.term > term
    assert n1.conf.voters == {"n1"} and not n1.conf.learners
    assert n1.commit_index >= index
    c.propose("n1", "after")
    c.flush()
    assert _committed_data(c, "n1") == before + [b"after"]  # nothing lost, writes accepted
    c.check_invariants()


def test_two_survivors_of_five_follow_the_most_up_to_date() -> None:
    c = Cluster(["n1", "n2", "n3", "n4", "n5"])
    c.elect("n1")
    c.propose("n1", "a")
    c.deliver()
    # n2 misses the last committed entry: n1, n3, n4 hold it.
    c.isolate("n2")
    c.propose("n1", "b")
    c.deliver()
    c.heal()
    for dead in ("n1", "n4", "n5"):
        c.crash(dead)
    c.run(40, nodes=["n2", "n3"])  # nobody can win: 2 of 5
    assert all(c.node(i).role is not Role.LEADER for i in ("n2", "n3"))
    n3 = c.node("n3")
    assert n3.log.last_index > c.node("n2").log.last_index  # n3 is the most up to date
    n3.force_new_configuration(frozenset({"n2", "n3"}), epoch=1)
    c.deliver()
    c.run(10, nodes=["n2", "n3"])
    assert c.leader() == "n3"
    assert c.node("n2").conf.voters == {"n2", "n3"}  # the follower learnt it by commit
    assert b"b" in _committed_data(c, "n2")  # the entry n2 had missed reached it
    c.propose("n3", "c")
    c.deliver()
    assert _committed_data(c, "n2")[-1] == b"c"  # a quorum of the new configuration commits
    c.check_invariants()


def test_the_forced_configuration_survives_a_restart() -> None:
    c = three()
    c.crash("n2")
    c.crash("n3")
    c.run(30, nodes=["n1"])
    c.node("n1").force_new_configuration(frozenset({"n1"}), epoch=4)
    c.flush()
    c.crash("n1")
    c.restart("n1")
    assert c.node("n1").conf.voters == {"n1"}
    c.run(30, nodes=["n1"])
    assert c.leader() == "n1"


def test_a_dead_member_that_comes_back_cannot_disrupt_the_forced_cluster() -> None:
    c = three()
    c.crash("n2")
    c.crash("n3")
    c.run(30, nodes=["n1"])
    c.node("n1").force_new_configuration(frozenset({"n1"}), epoch=1)
    c.flush()
    term = c.node("n1").term
    c.restart("n2")  # an old disk: it still believes in {n1, n2, n3}
    c.run(60)
    assert c.leader() == "n1" and c.node("n1").term == term  # no term inflation, no step-down
    c.propose("n1", "still")
    c.flush()
    assert _committed_data(c, "n1")[-1] == b"still"


@pytest.mark.parametrize("voters, why", [
    (frozenset({"n2", "n3"}), "must include this node"),
    (frozenset({"n1", "n9"}), "not voters"),
])
def test_bad_forced_configurations_are_refused(voters: frozenset[str], why: str) -> None:
    c = three()
    c.crash("n2")
    c.crash("n3")
    c.run(30, nodes=["n1"])
    with pytest.raises(InvalidRequest, match=why):
        c.node("n1").force_new_configuration(voters, epoch=1)
    assert c.node("n1").conf.voters == {"n1", "n2", "n3"}


def test_a_leader_is_not_forced_and_force_is_never_proposed() -> None:
    c = three()
    with pytest.raises(InvalidRequest, match="leads"):
        c.node("n1").force_new_configuration(frozenset({"n1"}), epoch=1)
    with pytest.raises(InvalidRequest, match="never proposed"):
        c.node("n1").propose_conf_change(ConfChange.force("n1", frozenset({"n1"}), 1))
    assert ConfChangeType.FORCE.value == "force"
