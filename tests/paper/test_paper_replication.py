"""Raft §5.3, §5.4.2, §5.5: log replication, commitment, idempotent retries,
plus the replication mechanics around them (batching, pipelining, the
leader's own durability, proposals to a follower)."""

from __future__ import annotations

import random

import pytest

from quorate.raft import (
    ConfChange,
    ConfChangeType,
    Entry,
    HardState,
    Message,
    MessageType,
    NotLeader,
    PersistentState,
    RaftConfig,
    RaftNode,
    Role,
    bootstrap_state,
)
from quorate.testing.cluster import Cluster, three

MT = MessageType
IDS3 = ["n1", "n2", "n3"]



def elect_among(c: Cluster, nodes: list[str], limit: int = 300) -> str:
    """Let ``nodes`` run until one of them leads (others stay frozen)."""
    for _ in range(limit):
        c.run(1, nodes)
        lead = c.leader()
        if lead in nodes:
            return lead
    raise AssertionError(f"no leader among {nodes}")


def entries_to(c: Cluster, to: str) -> list[Message]:
    return c.sent(lambda m: m.type is MT.APPEND and m.to == to and bool(m.entries))


# -- §5.3 log replication ---------------------------------------------------------


def test_consistency_check_rejects_append_that_does_not_match() -> None:
    """Raft §5.3: a follower refuses AppendEntries whose previous index and
    term do not match an entry in its log, and keeps its log."""
    c = Cluster(IDS3, RaftConfig())
    n2 = c.node("n2")
    before = c.log_of("n2")
    for prev_index, prev_term in [(5, 1), (3, 2)]:
        n2.step(Message(MT.APPEND, "n1", "n2", 2, log_term=prev_term, index=prev_index,
                        entries=(Entry(2, prev_index + 1, data=b"x"),), commit=3))
        c.flush(["n2"])
        [resp] = c.queue
        c.queue.clear()
        assert resp.type is MT.APPEND_RESP and resp.reject and resp.index == prev_index
        assert c.log_of("n2") == before


def test_conflicting_entries_are_overwritten_by_the_leader() -> None:
    """Raft §5.3: the leader forces followers to duplicate its log; entries
    conflicting with it (uncommitted, from a deposed leader) are replaced."""
    c = three()
    c.isolate("n1")
    c.propose("n1", "lost-a")
    c.propose("n1", "lost-b")
    c.deliver()
    lead = elect_among(c, ["n2", "n3"])
    c.propose(lead, "kept")
    c.deliver()
    c.heal()
    c.run(30)
    assert c.log_of("n1") == c.log_of(lead)
    assert all(c.applied(i) == [b"kept"] for i in IDS3)


def test_fast_backtracking_converges_in_few_round_trips() -> None:
    """Raft §5.3 (the optimization at the end): with the conflicting term and
    index in the rejection, the leader skips a whole divergent term per round
    trip instead of one entry. Here 50 divergent entries cost one rejection."""
    c = three()
    c.isolate("n1")
    for k in range(50):
        c.propose("n1", f"old{k}")
    c.deliver()
    lead = elect_among(c, ["n2", "n3"])
    for k in range(50):
        c.propose(lead, f"new{k}")
    c.deliver()
    other = "n3" if lead == "n2" else "n2"
    c.node(lead).transfer_leadership(other)  # a leader whose progress starts at its tail
    c.deliver()
    assert c.leader() == other and c.node(other).last_index > 50
    mark = len(c.trace)
    c.heal()
    c.run(3)
    after = [m for _, m in c.trace[mark:]]
    rejects = [m for m in after if m.type is MT.APPEND_RESP and m.frm == "n1" and m.reject]
    appends = [m for m in after if m.type is MT.APPEND and m.to == "n1"]
    assert len(rejects) <= 2, f"{len(rejects)} rejections to skip 50 divergent entries"
    assert len(appends) <= 6
    assert c.log_of("n1") == c.log_of(other)


# -- §5.4.2 committing entries from previous terms ------------------------------


def _figure8_states() -> dict[str, PersistentState]:
    """Figure 8 (b)->(c): index 6 holds 6/2 on S1, S2 and 6/3 on S5 only;
    S3, S4 voted for S5 in term 3."""
    ids = ["n1", "n2", "n3", "n4", "n5"]
    base = bootstrap_state(ids).entries
    def st(extra: tuple[Entry, ...], vote: str | None) -> PersistentState:
        return PersistentState(HardState(term=3, vote=vote, commit=5), None, base + extra)
    return {
        "n1": st((Entry(2, 6, data=b"t2"),), None),
        "n2": st((Entry(2, 6, data=b"t2"),), None),
        "n3": st((), "n5"),
        "n4": st((), "n5"),
        "n5": st((Entry(3, 6, data=b"t3"),), "n5"),
    }


def test_figure8_old_term_entry_is_not_committed_by_counting_replicas() -> None:
    """Raft §5.4.2 and Figure 8: a leader never commits an entry from an
    earlier term by counting replicas; here 6/2 sits on four of five servers
    under leader S1 (term 4) yet stays uncommitted, and rightly so: S5 can
    still be elected and overwrite it."""
    c = Cluster(sorted(_figure8_states()), RaftConfig(max_entries_per_append=1),
                states=_figure8_states())
    c.crash("n5")
    # S1's term-4 entry (its no-op at 7) never reaches a server that could take it.
    c.drop(lambda m: m.type is MT.APPEND and any(e.index == 7 for e in m.entries)
           and c.node(m.to).term_at(6) is not None)
    c.elect("n1")
    n1 = c.node("n1")
    assert (n1.role, n1.term) == (Role.LEADER, 4)
    c.run(3)
    holders = [i for i in ("n1", "n2", "n3", "n4") if c.node(i).term_at(6) == 2]
    assert len(holders) == 4
    assert n1.commit_index == 5, "an old-term entry was committed by counting replicas"
    # Figure 8 (d): S1 crashes, S5 comes back and wins with its later last term.
    c.crash("n1")
    c.heal()
    c.restart("n5")
    c.drop(lambda m: m.type in (MT.PRE_VOTE, MT.VOTE) and m.frm != "n5")
    lead = elect_among(c, ["n2", "n3", "n4", "n5"])
    assert lead == "n5"
    c.run(3)
    assert all(c.node(i).term_at(6) == 3 for i in ("n2", "n3", "n4", "n5"))
    c.check_invariants()
    assert c.applied("n2") == [b"t3"]


# -- §5.5 follower and candidate crashes: retries are harmless -------------------


def test_duplicate_and_late_appends_are_idempotent() -> None:
    """Raft §5.5: RPCs are idempotent; a retried or late AppendEntries with
    entries the follower already has changes nothing."""
    c = three()
    c.propose("n1", "a")
    c.flush(["n1"])
    [first] = [m for m in c.pending() if m.to == "n2" and m.entries]
    c.deliver()
    c.propose("n1", "b")
    c.deliver()
    n2 = c.node("n2")
    log_before, commit_before = c.log_of("n2"), n2.commit_index
    for _ in range(2):
        n2.step(first)
        c.flush(["n2"])
    c.deliver()
    assert c.log_of("n2") == log_before and n2.commit_index == commit_before
    assert c.applied("n2") == [b"a", b"b"]
    c.check_invariants()


def test_retried_vote_request_gets_the_same_answer() -> None:
    """Raft §5.5: a retried RequestVote from the candidate voted for is
    granted again (it is the same vote), never counted against it."""
    c = Cluster(IDS3, RaftConfig(pre_vote=False))
    n3 = c.node("n3")
    req = Message(MT.VOTE, "n1", "n3", 2, log_term=1, index=3)
    answers = []
    for _ in range(2):
        n3.step(req)
        c.flush(["n3"])
        answers.append([(m.type, m.reject, m.term) for m in c.queue])
        c.queue.clear()
    assert answers[0] == answers[1] == [(MT.VOTE_RESP, False, 2)]


# -- the mechanics around replication ---------------------------------------------


def test_proposal_to_a_follower_raises_not_leader_with_hint() -> None:
    """Raft §8 (clients): a follower rejects a request and points at the
    leader it knows; with no leader known the hint is empty."""
    c = three()
    with pytest.raises(NotLeader) as err:
        c.propose("n2", "x")
    assert err.value.leader == "n1"
    with pytest.raises(NotLeader):
        c.node("n2").propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, "n9"))
    with pytest.raises(NotLeader):
        c.node("n2").transfer_leadership("n3")
    fresh = Cluster(IDS3)
    with pytest.raises(NotLeader) as err:
        fresh.propose("n2", "x")
    assert err.value.leader is None
    with pytest.raises(NotLeader):
        fresh.node("n2").read_index(b"r")


@pytest.mark.parametrize(("max_ents", "expected"), [(512, 1), (30, 4)])
def test_proposals_are_batched_into_few_appends(max_ents: int, expected: int) -> None:
    """Batching: proposals made before the next Ready go out together, in
    appends of at most max_entries_per_append entries."""
    c = three(max_entries_per_append=max_ents)
    mark = len(entries_to(c, "n2"))
    for k in range(100):
        c.propose("n1", f"v{k}")
    c.deliver()
    sent = entries_to(c, "n2")[mark:]
    assert len(sent) == expected
    assert sum(len(m.entries) for m in sent) == 100
    assert len(c.applied("n2")) == 100


def test_pipelining_keeps_up_to_max_inflight_appends_in_flight() -> None:
    """Pipelining (thesis §10.2.2): a follower in replicate state gets
    several appends before any is acknowledged, at most max_inflight."""
    c = three(max_inflight=3, max_entries_per_append=1)
    for k in range(10):
        c.propose("n1", f"v{k}")
        c.flush(["n1"])  # one Ready per proposal, nothing delivered yet
    assert len([m for m in c.pending() if m.to == "n2" and m.entries]) == 3
    peak = 0
    while c.queue:
        # An unacknowledged append is either queued or its acknowledgement is.
        unacked = [m for m in c.queue if (m.type is MT.APPEND and m.to == "n2" and m.entries)
                   or (m.type is MT.APPEND_RESP and m.frm == "n2")]
        peak = max(peak, len(unacked))
        c.step_one()
    assert peak == 3
    assert c.applied("n2") == [f"v{k}".encode() for k in range(10)]


def _lose_acks_of_a_full_window() -> Cluster:
    """n2's acknowledgements of two appends (max_inflight=2) are lost."""
    c = three(max_inflight=2, max_entries_per_append=1)
    lost = c.drop(lambda m: m.type is MT.APPEND_RESP and m.frm == "n2")
    for k in range(4):
        c.propose("n1", f"v{k}")
        c.deliver()
    c.undrop(lost)
    return c


def _follower_down_during_64_appends() -> Cluster:
    """Default settings: n2 is down while the leader sends it 64 appends."""
    c = three()
    c.crash("n2")
    for k in range(64):
        c.propose("n1", f"v{k}")
        c.deliver()
    c.restart("n2")
    return c


@pytest.mark.parametrize("setup", [_lose_acks_of_a_full_window, _follower_down_during_64_appends])
def test_follower_recovers_after_its_whole_inflight_window_is_lost(setup: object) -> None:
    """Pipelining must not cost liveness (Raft §5.3: the leader retries
    indefinitely): if every append in a full window, or every
    acknowledgement, is lost, the heartbeat round trip must get replication
    to that follower going again."""
    c = setup()  # type: ignore[operator]
    c.run(20)
    assert c.applied("n2") == c.applied("n1")


def test_leader_counts_its_own_entry_only_once_durable() -> None:
    """Durability (thesis §10.2.1): the leader's own log counts towards a
    majority only after its Ready was persisted (advance), so a commit never
    rests on an unsynced leader write."""
    c = three()
    n1 = c.node("n1")
    index = c.propose("n1", "x")
    rd = n1.ready()  # persisting... advance() not called yet
    assert [e.index for e in rd.entries] == [index]
    for msg in rd.messages:
        if msg.to == "n2":
            c.node("n2").step(msg)
    c.flush(["n2"])
    [ack] = [m for m in c.queue if m.to == "n1"]
    c.queue.clear()
    n1.step(ack)
    assert n1.commit_index < index, "committed with n2 alone while n1's write was not durable"
    c.members["n1"].store.save(rd)
    n1.advance(rd)
    assert n1.commit_index == index


def test_single_node_commits_after_its_own_write_is_durable() -> None:
    """Durability (thesis §10.2.1) for a one-node cluster: nothing commits
    before the caller acknowledged the write with advance()."""
    node = RaftNode("n1", RaftConfig(), random.Random(0), bootstrap_state(["n1"]), applied=0)
    node.campaign()
    while node.has_ready():
        node.advance(node.ready())
    assert node.role is Role.LEADER
    index = node.propose(b"x")
    rd = node.ready()
    assert rd.committed_entries == () and node.commit_index < index
    node.advance(rd)
    rd = node.ready()
    assert [e.data for e in rd.committed_entries] == [b"x"]
    node.advance(rd)
