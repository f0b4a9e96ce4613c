"""Thesis §9.6 (pre-vote), §6.2 / §4.2.3 (check-quorum and the leader lease),
and the livelock when both are on and a node's term ran ahead."""

from __future__ import annotations

import pytest

from quorate.raft import Message, MessageType, RaftConfig, Role
from quorate.testing.cluster import Cluster, three

MT = MessageType
IDS3 = ["n1", "n2", "n3"]



# -- thesis §9.6 pre-vote --------------------------------------------------------------


@pytest.mark.parametrize("pre_vote", [True, False])
def test_partitioned_node_does_not_raise_its_term_with_pre_vote(pre_vote: bool) -> None:
    """Thesis §9.6: with pre-vote a partitioned server cannot win a pre-vote,
    so it never increments its term; without pre-vote it does."""
    c = three(pre_vote=pre_vote)
    term = c.node("n3").term
    c.isolate("n3")
    c.run(60)
    assert (c.node("n3").term == term) is pre_vote


def test_rejoining_node_does_not_disrupt_the_leader() -> None:
    """Thesis §9.6: when the partition heals, the rejoining server's
    pre-votes are refused and the leader keeps its term and role."""
    c = three()
    c.isolate("n3")
    c.run(60)
    c.heal()
    term = c.node("n1").term
    c.run(60)
    assert c.leader() == "n1" and c.node("n1").term == term
    assert c.node("n3").leader == "n1" and c.node("n3").term == term


# -- check-quorum ------------------------------------------------------------------------


def test_leader_without_majority_steps_down_within_two_election_timeouts() -> None:
    """Thesis §6.2: a leader that has not heard from a majority for an
    election timeout steps down (a response seen just before the partition
    may carry it through the first check)."""
    e = 10
    c = three(election_ticks=e)
    c.isolate("n1")
    c.run(e, ["n1"])
    assert c.node("n1").role is Role.LEADER
    c.run(e, ["n1"])
    assert c.node("n1").role is Role.FOLLOWER


def test_connected_leader_keeps_leading_and_no_check_quorum_keeps_isolated_one() -> None:
    """Thesis §6.2: the check does not fire while a majority answers; with
    check-quorum off an isolated leader stays leader (the reason to have it)."""
    c = three()
    c.run(100)
    assert c.leader() == "n1" and c.node("n1").term == 2
    c = three(check_quorum=False)
    c.isolate("n1")
    c.run(100, ["n1"])
    assert c.node("n1").role is Role.LEADER


def test_followers_in_lease_ignore_vote_requests() -> None:
    """Thesis §4.2.3: a server that heard from a current leader within the
    minimum election timeout ignores RequestVote (no term change, no vote)."""
    c = three(pre_vote=False)
    c.node("n3").campaign()
    c.flush(["n3"])
    votes = [m for m in c.pending() if m.type is MT.VOTE]
    assert len(votes) == 2
    for _ in votes:
        c.step_one()
    assert (c.node("n1").role, c.node("n1").term) == (Role.LEADER, 2)
    assert (c.node("n2").term, c.node("n2").vote) == (2, "n1")
    assert not [m for m in c.pending() if m.type is MT.VOTE_RESP]


def _run_until_converged(c: Cluster, limit: int = 400) -> str:
    """Until one leader, everyone at its term, and everyone following it."""
    for _ in range(limit):
        c.run(1)
        lead = c.leader()
        if lead is None:
            continue
        term = c.node(lead).term
        if all(c.node(i).term == term and c.node(i).leader == lead for i in c.ids):
            return lead
    raise AssertionError("the cluster did not converge")


def _term_ahead_by_failed_transfer(c: Cluster) -> None:
    """n3 gets TimeoutNow, campaigns (no pre-vote for a transfer) and is cut
    off before any vote arrives: its term is now one ahead."""
    c.drop(lambda m: m.frm == "n3" and m.type is MT.VOTE)
    c.node("n1").transfer_leadership("n3")
    c.deliver()
    c.heal()
    c.isolate("n3")


def _term_ahead_by_message(c: Cluster) -> None:
    """Step a higher-term message straight into n3."""
    c.isolate("n3")
    n3 = c.node("n3")
    n3.step(Message(MT.APPEND_RESP, "n2", "n3", n3.term + 3))


@pytest.mark.parametrize("force", [_term_ahead_by_failed_transfer, _term_ahead_by_message])
def test_pre_vote_check_quorum_node_with_term_ahead_rejoins(force: object) -> None:
    """The pre-vote + check-quorum livelock (etcd-io/etcd#8501): a node whose
    term ran ahead has its pre-votes ignored by followers in lease, and
    ignores the leader's lower-term appends. The node answers those appends
    with its term, the leader steps down, and the cluster converges on one
    term with a leader the node follows."""
    c = three(pre_vote=True, check_quorum=True)
    force(c)  # type: ignore[operator]
    assert c.node("n3").term > c.node("n1").term
    c.run(30)
    assert c.leader() == "n1"  # the majority kept working meanwhile
    c.propose("n1", "during")
    c.heal()
    lead = _run_until_converged(c)
    assert c.node("n3").leader == lead
    c.propose(lead, "after")
    c.deliver()
    assert c.applied("n3") == [b"during", b"after"]
