"""log.py's RaftLog against a plain Python list of terms (index i at
position i - 1, with everything up to the snapshot index kept as well)."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from quorate.raft import Entry, Snapshot, SnapshotMeta
from quorate.raft.log import LogCorruption, RaftLog


def run_of_terms(start_term: int) -> st.SearchStrategy[list[int]]:
    """Non-decreasing terms starting at ``start_term`` or later (Raft logs)."""
    return st.lists(st.integers(0, 2), min_size=1, max_size=6).map(
        lambda steps: [start_term + sum(steps[: k + 1]) for k in range(len(steps))])


class RaftLogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.log = RaftLog(None, (), 0)
        self.terms: list[int] = []  # model: terms[i - 1] is the term of index i
        self.committed = 0
        self.snap = 0

    def t(self, i: int) -> int | None:
        if i == 0:
            return 0
        return self.terms[i - 1] if 1 <= i <= len(self.terms) else None

    def entries(self, first: int, terms: list[int]) -> tuple[Entry, ...]:
        return tuple(Entry(term, first + k) for k, term in enumerate(terms))

    def _append_model(self, first: int, terms: list[int]) -> None:
        self.terms = self.terms[: first - 1] + terms

    # -- rules -----------------------------------------------------------------

    @rule(data=st.data())
    def append(self, data: st.DataObject) -> None:
        last = len(self.terms)
        first = data.draw(st.integers(max(self.snap, self.committed - 1) + 1, last + 2))
        terms = data.draw(run_of_terms(self.t(first - 1) or 1))
        ents = self.entries(first, terms)
        if first <= self.committed or first > last + 1:
            with pytest.raises(LogCorruption):
                self.log.append(ents)
            return
        self.log.append(ents)
        self._append_model(first, terms)

    @rule(data=st.data())
    def maybe_append(self, data: st.DataObject) -> None:
        last = len(self.terms)
        index = data.draw(st.integers(self.committed, last + 1))
        true_term = self.t(index)
        log_term = data.draw(st.sampled_from([true_term or 1, (true_term or 0) + 1]))
        terms = data.draw(st.lists(st.integers(log_term, log_term + 2), max_size=5).map(sorted))
        leader_commit = data.draw(st.integers(0, index + len(terms) + 2))
        ents = self.entries(index + 1, terms)
        if self.t(index) != log_term:
            assert self.log.maybe_append(index, log_term, leader_commit, ents) is None
            return
        conflict = next((e.index for e in ents if self.t(e.index) != e.term), None)
        if conflict is not None and conflict <= self.committed:
            with pytest.raises(LogCorruption):
                self.log.maybe_append(index, log_term, leader_commit, ents)
            return
        assert self.log.maybe_append(index, log_term, leader_commit, ents) == index + len(ents)
        if conflict is not None:
            self._append_model(conflict, terms[conflict - index - 1:])
        self.committed = max(self.committed, min(leader_commit, index + len(ents)))

    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        to = data.draw(st.integers(0, len(self.terms)))
        self.log.commit_to(to)
        self.committed = max(self.committed, to)

    @precondition(lambda self: self.committed > self.snap)
    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        self.log.applied = self.committed
        at = data.draw(st.integers(self.snap + 1, self.committed))
        self.log.compact(Snapshot(SnapshotMeta(at, self.t(at) or 0)))
        self.snap = at

    @rule(index=st.integers(0, 40), term=st.integers(0, 12))
    def find_conflict_by_term(self, index: int, term: int) -> None:
        top = min(index, len(self.terms))
        hits = [i for i in range(self.snap + 1, top + 1) if (self.t(i) or 0) <= term]
        expected = max(hits) if hits else min(top, self.snap)
        assert self.log.find_conflict_by_term(index, term) == expected

    @rule(last_index=st.integers(0, 40), last_term=st.integers(0, 12))
    def is_up_to_date(self, last_index: int, last_term: int) -> None:
        mine = (self.t(len(self.terms)) or 0, len(self.terms))
        assert self.log.is_up_to_date(last_index, last_term) == ((last_term, last_index) >= mine)

    # -- invariants --------------------------------------------------------------

    @invariant()
    def agrees_with_model(self) -> None:
        log = self.log
        assert (log.last_index, log.committed, log.snapshot_index) == (len(self.terms), self.committed, self.snap)
        assert log.last_term == (self.t(len(self.terms)) or 0)
        assert log.first_index == self.snap + 1
        for i in range(0, len(self.terms) + 2):
            assert log.term_at(i) == (self.t(i) if i >= self.snap else None), f"term_at({i})"
        got = [(e.index, e.term) for e in log.slice(self.snap + 1, len(self.terms) + 1)]
        assert got == [(i, self.t(i)) for i in range(self.snap + 1, len(self.terms) + 1)]


TestRaftLog = RaftLogMachine.TestCase
TestRaftLog.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
