"""quorum.py against brute force over every subset of the voters: the
oracle is the definition of a majority, not a cleverer formula."""

from __future__ import annotations

from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.raft.quorum import VoteResult, committed_index, has_quorum, majority, vote_result

NAMES = [f"n{i}" for i in range(1, 8)]
voter_sets = st.sets(st.sampled_from(NAMES), max_size=7)
FAST = settings(max_examples=200, deadline=None)


def majorities(voters: set[str]) -> list[set[str]]:
    """Every subset holding more than half of ``voters``."""
    vs = sorted(voters)
    return [set(s) for k in range(len(vs) + 1) for s in combinations(vs, k) if 2 * k > len(vs)]


@FAST
@given(voters=voter_sets, data=st.data())
def test_committed_index_is_the_best_index_some_majority_holds(voters: set[str], data: st.DataObject) -> None:
    match = data.draw(st.dictionaries(st.sampled_from(NAMES), st.integers(0, 20)))
    oracle = max((min(match.get(v, 0) for v in q) for q in majorities(voters)), default=0)
    assert committed_index(voters, match) == oracle


@FAST
@given(voters=voter_sets, data=st.data())
def test_vote_result_matches_subset_oracle(voters: set[str], data: st.DataObject) -> None:
    votes = data.draw(st.dictionaries(st.sampled_from(NAMES), st.booleans()))
    qs = majorities(voters)
    granted = {v for v, ok in votes.items() if ok}
    possible = {v for v in voters if votes.get(v) is not False}
    if any(q <= granted for q in qs):
        oracle = VoteResult.WON
    elif any(q <= possible for q in qs):
        oracle = VoteResult.PENDING
    else:
        oracle = VoteResult.LOST
    assert vote_result(voters, votes) is oracle


@FAST
@given(voters=voter_sets, present=st.sets(st.sampled_from(NAMES)))
def test_has_quorum_matches_subset_oracle(voters: set[str], present: set[str]) -> None:
    assert has_quorum(voters, present) == any(q <= present for q in majorities(voters))


@given(st.integers(1, 50))
def test_any_two_majorities_intersect(n: int) -> None:
    """The property every safety argument rests on (Raft §5.2)."""
    assert 2 * majority(n) > n and majority(n) <= n
