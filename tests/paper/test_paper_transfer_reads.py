"""Thesis §3.10 (leadership transfer) and §6.4 (ReadIndex reads)."""

from __future__ import annotations

import pytest

from quorate.raft import MessageType, RaftConfig, ReadState, Role, TransferInProgress
from quorate.testing.cluster import Cluster, three

MT = MessageType
IDS3 = ["n1", "n2", "n3"]



# -- thesis §3.10 leadership transfer ------------------------------------------------


def test_transfer_catches_target_up_then_sends_timeout_now() -> None:
    """Thesis §3.10: the leader first brings the target's log up to date,
    then sends TimeoutNow; the target campaigns at once and wins."""
    c = three()
    lagging = c.drop(lambda m: m.type is MT.APPEND and m.to == "n3")
    for k in range(3):
        c.propose("n1", f"v{k}")
    c.deliver()
    c.undrop(lagging)
    last = c.node("n1").last_index
    assert c.node("n3").last_index < last
    mark = len(c.trace)
    c.node("n1").transfer_leadership("n3")
    c.deliver()
    kinds = [(m.type, m.frm, m.index) for _, m in c.trace[mark:]]
    caught_up = kinds.index((MT.APPEND_RESP, "n3", last))
    timeout_now = [k for k, m in enumerate(kinds) if m[0] is MT.TIMEOUT_NOW]
    assert timeout_now and timeout_now[0] > caught_up
    assert c.leader() == "n3"
    assert c.node("n3").term == c.node("n1").term == 3
    assert c.node("n1").role is Role.FOLLOWER


def test_transfer_to_caught_up_target_completes_without_waiting() -> None:
    """Thesis §3.10: a transfer is quick when the target is up to date; the
    forced campaign is accepted even by followers in their leader lease."""
    c = three()
    c.node("n1").transfer_leadership("n2")
    c.deliver()
    assert c.leader() == "n2"
    c.propose("n2", "after")
    c.deliver()
    assert all(c.applied(i) == [b"after"] for i in IDS3)


def test_proposals_during_transfer_raise_transfer_in_progress() -> None:
    """Thesis §3.10: the leader stops accepting client requests while a
    transfer is in progress."""
    c = three()
    c.isolate("n3")
    c.node("n1").transfer_leadership("n3")
    with pytest.raises(TransferInProgress) as err:
        c.propose("n1", "x")
    assert err.value.target == "n3"


def test_transfer_to_unreachable_node_times_out_after_an_election_timeout() -> None:
    """Thesis §3.10: if the transfer does not complete within an election
    timeout the leader aborts it and resumes accepting requests."""
    cfg = RaftConfig(election_ticks=10)
    c = three(election_ticks=10)
    c.isolate("n3")
    c.node("n1").transfer_leadership("n3")
    c.run(cfg.election_ticks - 1)
    with pytest.raises(TransferInProgress):
        c.propose("n1", "x")
    c.run(1)
    index = c.propose("n1", "x")
    c.deliver()
    assert c.leader() == "n1" and c.node("n1").commit_index >= index


# -- thesis §6.4 ReadIndex ------------------------------------------------------------


def test_read_index_is_the_commit_index_after_a_heartbeat_round() -> None:
    """Thesis §6.4: the read index is the leader's commit index, released
    only after a majority confirmed its leadership by a heartbeat round."""
    c = three()
    c.propose("n1", "a")
    c.deliver()
    commit = c.node("n1").commit_index
    c.node("n1").read_index(b"r1")
    c.flush(["n1"])
    assert c.read_states("n1") == []
    assert {m.to for m in c.pending() if m.type is MT.HEARTBEAT and m.context == b"r1"} == {"n2", "n3"}
    c.deliver()
    assert c.read_states("n1") == [ReadState(commit, b"r1")]


def test_partitioned_stale_leader_cannot_serve_read_index() -> None:
    """Thesis §6.4: a deposed leader that does not know it yet cannot get a
    majority's confirmation, so it never releases a (stale) read."""
    c = three()
    c.isolate("n1")
    for _ in range(300):
        c.run(1, ["n2", "n3"])
        if c.leader() in ("n2", "n3"):
            break
    new = c.leader()
    assert new in ("n2", "n3") and c.node("n1").role is Role.LEADER
    c.propose(new, "fresh")
    c.deliver()
    c.node("n1").read_index(b"stale")
    c.run(3, ["n1"])
    c.heal()
    c.run(5)
    assert not any(rs.request_ctx == b"stale" for rs in c.read_states("n1"))
    assert c.node("n1").role is Role.FOLLOWER
    c.node(new).read_index(b"ok")
    c.deliver()
    [rs] = c.read_states(new)
    assert rs.index == c.node(new).commit_index and c.applied(new) == [b"fresh"]


def test_follower_read_index_goes_through_the_leader() -> None:
    """Thesis §6.4.1 (reads on followers): the follower asks the leader for
    its read index and may serve the read once it has applied that far."""
    c = three()
    c.propose("n1", "a")
    c.deliver()
    c.node("n3").read_index(b"f1")
    c.deliver()
    assert c.read_states("n3") == [ReadState(c.node("n1").commit_index, b"f1")]
    assert c.sent(lambda m: m.type is MT.READ_INDEX and m.frm == "n3" and m.to == "n1")
    assert c.sent(lambda m: m.type is MT.READ_INDEX_RESP and m.to == "n3")


def test_reads_wait_for_the_leaders_first_commit_in_its_term() -> None:
    """Thesis §6.4 step 1: a new leader does not know the commit index until
    an entry of its own term (its no-op) commits; reads wait for that."""
    c = Cluster(IDS3, RaftConfig())
    acks = c.drop(lambda m: m.type is MT.APPEND_RESP)
    c.elect("n1")
    n1 = c.node("n1")
    noop = n1.last_index
    n1.read_index(b"early")
    c.deliver()
    assert c.read_states("n1") == []
    assert not c.sent(lambda m: m.context == b"early")
    c.undrop(acks)
    c.run(2)
    assert c.read_states("n1") == [ReadState(noop, b"early")]


def test_new_leader_with_a_lagging_commit_index_does_not_serve_a_stale_read() -> None:
    """Thesis §6.4 step 1, why it matters: a new leader may not know that an
    entry in its log is committed; answering a read with its own commit index
    then could miss that write. Waiting for its no-op to commit fixes it."""
    c = three()
    index = c.propose("n1", "x")
    c.drop(lambda m: m.type in (MT.APPEND, MT.HEARTBEAT) and m.commit >= index)
    c.deliver()
    assert c.node("n1").commit_index >= index  # committed on n1 only as far as anyone knows
    c.crash("n1")
    c.heal()
    acks = c.drop(lambda m: m.type is MT.APPEND_RESP)
    for _ in range(300):
        c.run(1)
        if c.leader() is not None:
            break
    lead = c.leader()
    assert lead is not None and c.node(lead).commit_index < index
    c.node(lead).read_index(b"after-x")
    c.deliver()
    assert c.read_states(lead) == []
    c.undrop(acks)
    c.run(2)
    [rs] = c.read_states(lead)
    assert rs.index > index and c.applied(lead) == [b"x"]
