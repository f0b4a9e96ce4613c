"""Raft §6 and thesis §4: single-server membership changes and learners.

quorate applies a configuration when its entry commits (see node.py), allows
one uncommitted change at a time and none before the leader committed an
entry of its own term (the fix to the bug in thesis §4.1).
"""

from __future__ import annotations

import pytest

from quorate.raft import (
    ConfChange,
    ConfChangeInProgress,
    ConfChangeType,
    InvalidRequest,
    MessageType,
    NotLeader,
    RaftConfig,
    Role,
)
from quorate.testing.cluster import Cluster, three

MT = MessageType
IDS3 = ["n1", "n2", "n3"]
CC = ConfChangeType



def change(c: Cluster, kind: ConfChangeType, node_id: str, via: str = "n1") -> int:
    index = c.node(via).propose_conf_change(ConfChange(kind, node_id))
    c.deliver()
    return index


def with_learner() -> Cluster:
    """n1..n3 voters and n4 a caught-up learner."""
    c = three()
    c.add_node("n4")
    change(c, CC.ADD_LEARNER, "n4")
    c.run(2)
    assert c.node("n4").last_index == c.node("n1").last_index
    return c


def run_until_leader(c: Cluster, among: list[str], limit: int = 300) -> str:
    for _ in range(limit):
        c.run(1)
        lead = c.leader()
        if lead in among:
            return lead
    raise AssertionError(f"no leader among {among}")


def test_learner_replicates_but_never_votes_or_campaigns() -> None:
    """Thesis §4.2.1: a new server joins as a non-voting member; it receives
    the log but is not asked for votes and does not start elections."""
    c = with_learner()
    for i in ("n1", "n2", "n3", "n4"):
        assert c.node(i).conf_state.learners == {"n4"}
        assert c.node(i).conf_state.voters == set(IDS3)
    c.propose("n1", "x")
    c.deliver()
    assert c.applied("n4") == [b"x"]
    c.isolate("n1")
    term = c.node("n4").term
    mark = len(c.trace)
    lead = run_until_leader(c, ["n2", "n3"])
    votes = [m for _, m in c.trace[mark:] if m.type in (MT.PRE_VOTE, MT.VOTE)]
    assert votes and all(m.to != "n4" and m.frm != "n4" for m in votes)
    assert c.node("n4").role is Role.FOLLOWER and c.node("n4").leader == lead
    assert c.node("n4").term > term  # it followed the new leader's term, never its own


def test_learner_does_not_count_towards_commit() -> None:
    """Thesis §4.2.1: only voters form the majority; an entry stored on the
    leader and a learner alone is not committed."""
    c = with_learner()
    c.isolate("n2")
    c.isolate("n3")
    index = c.propose("n1", "x")
    c.deliver()
    assert c.node("n4").last_index == index
    assert c.node("n1").commit_index < index
    c.heal()
    c.run(2)
    assert c.node("n1").commit_index >= index


def test_promoted_learner_votes_and_counts() -> None:
    """Thesis §4.2.1: once caught up the learner is promoted to voter; it
    then counts for commitment and may lead."""
    c = with_learner()
    with pytest.raises(InvalidRequest):
        c.node("n1").transfer_leadership("n4")  # a learner cannot lead
    change(c, CC.ADD_VOTER, "n4")
    assert c.node("n4").conf_state.voters == {"n1", "n2", "n3", "n4"}
    c.isolate("n2")
    c.isolate("n3")
    index = c.propose("n1", "needs-three-of-four")
    c.deliver()
    assert c.node("n1").commit_index < index  # n1 + n4 is not a majority of four
    c.heal()
    c.run(2)
    c.node("n1").transfer_leadership("n4")
    c.deliver()
    assert c.leader() == "n4"


def test_removed_follower_is_no_longer_needed_or_contacted() -> None:
    """Thesis §4.1: after the removal commits, the majority is computed over
    the remaining servers and the leader stops replicating to the removed one."""
    c = three()
    change(c, CC.REMOVE, "n3")
    assert c.node("n1").conf_state.voters == {"n1", "n2"}
    mark = len(c.trace)
    c.isolate("n3")
    index = c.propose("n1", "two-of-two")
    c.run(3)
    assert c.node("n1").commit_index >= index
    assert not any(m.to == "n3" for _, m in c.trace[mark:])


def test_removed_node_does_not_disrupt_the_cluster() -> None:
    """Thesis §4.2.3: a removed server that times out must not depose the
    leader (pre-vote and the vote lease stop it)."""
    c = three()
    change(c, CC.REMOVE, "n3")
    lead, term = c.leader(), c.node("n1").term
    c.run(60)
    assert (c.leader(), c.node("n1").term) == (lead, term)


def test_removed_leader_steps_down_once_the_removal_commits() -> None:
    """Thesis §4.2.2: a leader removed from the configuration manages the
    cluster until the change commits, then steps down; it never campaigns."""
    c = three()
    c.node("n1").propose_conf_change(ConfChange(CC.REMOVE, "n1"))
    c.flush(["n1"])
    assert c.node("n1").role is Role.LEADER  # not committed yet
    c.deliver()
    n1 = c.node("n1")
    assert n1.role is Role.FOLLOWER and "n1" not in n1.conf_state.voters
    assert all(c.node(i).conf_state.voters == {"n2", "n3"} for i in ("n2", "n3"))
    mark = len(c.trace)
    run_until_leader(c, ["n2", "n3"])
    c.run(40)
    assert not any(m.frm == "n1" and m.type in (MT.PRE_VOTE, MT.VOTE) for _, m in c.trace[mark:])
    assert c.leader() in ("n2", "n3")


def test_second_change_is_refused_while_one_is_pending() -> None:
    """Thesis §4.1: single-server changes go one at a time; a second one is
    refused with ConfChangeInProgress until the first commits."""
    c = three()
    c.add_node("n4")
    c.add_node("n5")
    c.node("n1").propose_conf_change(ConfChange(CC.ADD_LEARNER, "n4"))
    with pytest.raises(ConfChangeInProgress):
        c.node("n1").propose_conf_change(ConfChange(CC.ADD_LEARNER, "n5"))
    c.deliver()
    change(c, CC.ADD_LEARNER, "n5")
    assert c.node("n1").conf_state.learners == {"n4", "n5"}


def test_new_leader_refuses_change_until_an_entry_of_its_term_commits() -> None:
    """Thesis §4.1 (the bug fixed after publication): a new leader must
    commit an entry of its own term before it proposes a membership change."""
    c = Cluster(IDS3, RaftConfig())
    acks = c.drop(lambda m: m.type is MT.APPEND_RESP)
    c.elect("n1")
    n1 = c.node("n1")
    assert n1.role is Role.LEADER and n1.term_at(n1.commit_index) != n1.term
    c.add_node("n4")
    with pytest.raises(ConfChangeInProgress):
        n1.propose_conf_change(ConfChange(CC.ADD_LEARNER, "n4"))
    c.undrop(acks)
    c.run(2)
    assert n1.term_at(n1.commit_index) == n1.term
    change(c, CC.ADD_LEARNER, "n4")
    assert c.node("n1").conf_state.learners == {"n4"}


@pytest.mark.parametrize(("kind", "node_id"), [
    (CC.ADD_LEARNER, "n2"), (CC.ADD_VOTER, "n2"), (CC.REMOVE, "n9")])
def test_meaningless_changes_are_refused(kind: ConfChangeType, node_id: str) -> None:
    """Thesis §4.1: a change must alter the configuration by one server."""
    c = three()
    with pytest.raises(InvalidRequest):
        c.node("n1").propose_conf_change(ConfChange(kind, node_id))


def test_a_leader_removing_itself_appends_nothing_after_it() -> None:
    """Found by the cluster machine: a leader that kept appending after
    proposing its own removal held an entry nobody else had, so it refused
    its vote to the voter that stays, and, removed, never campaigned
    itself: no leader, ever. Now proposals wait for the next leader."""
    c = Cluster(["n1", "n2"])
    c.elect("n1")
    index = c.node("n1").propose_conf_change(ConfChange(CC.REMOVE, "n1"))
    with pytest.raises(NotLeader):
        c.node("n1").propose(b"after")  # nothing may follow the removal
    # n2 acks the removal but never hears that it committed.
    c.drop(lambda m: m.frm == "n1" and m.commit >= index)
    c.deliver()
    c.run(2)
    assert c.node("n1").commit_index >= index and c.node("n2").commit_index < index
    c.heal()
    c.run(200)
    assert c.leader() == "n2"  # n1's vote: their logs are equal
