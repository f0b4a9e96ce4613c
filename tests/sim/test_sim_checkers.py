"""Each safety checker accepts a correct history and fails on a hand-made
violation, so a green sweep means something."""

from __future__ import annotations

import pytest

from quorate.raft.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    PersistentState,
    Snapshot,
    SnapshotMeta,
)
from quorate.sim.checkers import (
    CommittedLog,
    Durability,
    ElectionSafety,
    InvariantViolation,
    LeaderCompleteness,
    LogMatching,
    SnapshotImages,
    check_digests,
)


def e(index: int, term: int, data: bytes = b"x") -> Entry:
    return Entry(term, index, EntryKind.NORMAL, data)


def test_election_safety_one_leader_per_term() -> None:
    es = ElectionSafety()
    es.observe_leader("n1", 2)
    es.observe_leader("n1", 2)  # seen twice: same leader
    es.observe_leader("n2", 3)
    with pytest.raises(InvariantViolation, match="n1 and n3 were both leader in term 2"):
        es.observe_leader("n3", 2)


def test_log_matching_same_index_and_term_same_entry() -> None:
    lm = LogMatching()
    lm.observe_append("n1", e(5, 2, b"a"), 2)
    lm.observe_append("n2", e(5, 2, b"a"), 2)
    lm.observe_append("n3", e(5, 3, b"b"), 2)  # another term: fine
    with pytest.raises(InvariantViolation, match="index 5 term 2.*n1.*n4"):
        lm.observe_append("n4", e(5, 2, b"zzz"), 2)


def test_log_matching_same_entry_different_prefix() -> None:
    lm = LogMatching()
    lm.observe_append("n1", e(7, 3), 2)
    lm.observe_append("n2", e(7, 3), None)  # previous term unknown: no claim
    with pytest.raises(InvariantViolation, match="follows term 2 on n1 but term 1 on n3"):
        lm.observe_append("n3", e(7, 3), 1)


def test_state_machine_safety_one_entry_per_index() -> None:
    cl = CommittedLog()
    cl.observe_applied("n1", e(1, 1, b"a"))
    cl.observe_applied("n2", e(1, 1, b"a"))
    with pytest.raises(InvariantViolation, match="n1 applied .* at index 1 but n3 applied"):
        cl.observe_applied("n3", e(1, 2, b"a"))


def test_digests_of_equal_prefixes_must_match() -> None:
    check_digests([("n1", 5, "aa"), ("n2", 5, "aa"), ("n3", 4, "bb")])
    with pytest.raises(InvariantViolation, match="n1 and n3 both applied up to 5"):
        check_digests([("n1", 5, "aa"), ("n2", 4, "bb"), ("n3", 5, "cc")])


def test_snapshot_images_must_match() -> None:
    si = SnapshotImages()
    si.observe("n1", 40, "d1")
    si.observe("n2", 40, "d1")
    with pytest.raises(InvariantViolation, match="snapshots at index 40 from n1 and n3"):
        si.observe("n3", 40, "d2")


def _committed(*entries: Entry, by_term: int) -> CommittedLog:
    cl = CommittedLog()
    for entry in entries:
        cl.observe_applied("n1", entry)
    cl.observe_leader_commit(max(x.index for x in entries), by_term)
    return cl


def test_leader_completeness_new_leader_has_committed_entries() -> None:
    cl = _committed(e(1, 1), e(2, 1), e(3, 2), by_term=2)
    lc = LeaderCompleteness(cl)
    terms = {1: 1, 2: 1, 3: 2}
    lc.check_new_leader("n2", 3, 0, terms.get)
    lc.check_new_leader("n2", 3, 2, {3: 2}.get)  # 1..2 covered by its snapshot
    with pytest.raises(InvariantViolation, match="n3 became leader in term 4.*entry 3"):
        lc.check_new_leader("n3", 4, 0, {1: 1, 2: 1}.get)
    with pytest.raises(InvariantViolation, match="entry 2 .* is term 3"):
        lc.check_new_leader("n4", 4, 0, {1: 1, 2: 3, 3: 3}.get)


def test_leader_completeness_ignores_entries_committed_in_later_terms() -> None:
    # A stale candidate of term 3 may win after term 5 committed entry 3.
    cl = _committed(e(1, 1), e(2, 1), e(3, 5), by_term=5)
    LeaderCompleteness(cl).check_new_leader("n2", 3, 0, {1: 1, 2: 1}.get)


def _durability() -> tuple[Durability, CommittedLog]:
    cl = CommittedLog()
    for entry in (e(1, 1, b"a"), e(2, 1, b"b"), e(3, 2, b"c")):
        cl.observe_applied("n1", entry)
    return Durability(cl), cl


def test_commit_index_never_goes_back_without_a_crash() -> None:
    d, _ = _durability()
    d.observe_commit("n2", 3)
    d.observe_commit("n2", 3)
    with pytest.raises(InvariantViolation, match="commit index of n2 went back from 3 to 2"):
        d.observe_commit("n2", 2)
    d.reset_commit("n2", 1)  # after a restart it counts from what it recovered
    d.observe_commit("n2", 1)


def _state(entries: tuple[Entry, ...], term: int = 2, vote: str | None = None,
           snap_index: int = 0) -> PersistentState:
    snap = None
    if snap_index:
        snap = Snapshot(SnapshotMeta(snap_index, 1, ConfState(frozenset({"n1"}))), b"")
    return PersistentState(HardState(term, vote, 0), snap, entries)


def test_restart_must_keep_acknowledged_committed_entries() -> None:
    d, _ = _durability()
    d.observe_ack("n2", 3, 2)
    d.check_restart("n2", _state((e(1, 1, b"a"), e(2, 1, b"b"), e(3, 2, b"c"))))
    d.check_restart("n2", _state((e(3, 2, b"c"),), snap_index=2))
    with pytest.raises(InvariantViolation, match="n2 acknowledged up to 3.*entry 3.*missing"):
        d.check_restart("n2", _state((e(1, 1, b"a"), e(2, 1, b"b"))))
    with pytest.raises(InvariantViolation, match="entry 2 .* different"):
        d.check_restart("n2", _state((e(1, 1, b"a"), e(2, 1, b"X"), e(3, 2, b"c"))))


def test_restart_ignores_acks_of_entries_later_replaced() -> None:
    d, _ = _durability()
    d.observe_ack("n2", 3, 1)  # n2 acked a term-1 entry 3 that never committed
    d.check_restart("n2", _state((e(1, 1, b"a"), e(2, 1, b"b"))))


def test_restart_must_keep_term_and_vote() -> None:
    d, _ = _durability()
    d.observe_sent_term("n2", 4)
    with pytest.raises(InvariantViolation, match="sent messages in term 4 but restarted with term 3"):
        d.check_restart("n2", _state((), term=3))
    d2, _ = _durability()
    d2.observe_vote("n2", 5, "n3")
    d2.check_restart("n2", _state((), term=5, vote="n3"))
    d2.check_restart("n2", _state((), term=6, vote=None))
    with pytest.raises(InvariantViolation, match="voted for n3 in term 5.*vote n1"):
        d2.check_restart("n2", _state((), term=5, vote="n1"))
