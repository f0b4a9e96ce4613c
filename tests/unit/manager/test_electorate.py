"""The electorate rules (S4, seed 004 Habitat): health classes, when an
operator's removal is refused, which failed members the leader cleans up,
and the quorum advice. Pure functions: examples, then Hypothesis
properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.manager.electorate import (
    ALIVE,
    DEPARTED,
    FAILED,
    SUSPECT,
    MemberState,
    cleanup,
    health,
    majority,
    quorum_advice,
    removal_refusal,
)

SUSPECT_AFTER = 1.0   # an election timeout
DEAD_AFTER = 10.0     # the dead-member timeout


def alive(m: str, voter: bool = True, last: float = 0.1) -> MemberState:
    return MemberState(m, voter, last, 0.0, False)


def down(m: str, for_s: float, voter: bool = True, confirmed: bool = False,
         last: float | None = None) -> MemberState:
    """Not heard from for ``for_s`` seconds (``last`` None: never heard from)."""
    return MemberState(m, voter, for_s if last is None else last, for_s, confirmed)


def clean(states: list[MemberState], min_voters: int = 3, replacements: int = 0) -> list[str]:
    return cleanup(states, suspect_after_s=SUSPECT_AFTER, dead_after_s=DEAD_AFTER, min_voters=min_voters,
                   replacements_waiting=replacements)


def h(m: MemberState) -> str:
    return health(m, suspect_after_s=SUSPECT_AFTER, dead_after_s=DEAD_AFTER)


# -- health -----------------------------------------------------------------------------------


def test_health_classes_are_the_four_documented_words() -> None:
    assert (ALIVE, SUSPECT, FAILED, DEPARTED) == ("alive", "suspect", "failed", "departed")


@pytest.mark.parametrize(("state", "expected"), [
    # heard from within an election timeout: alive
    (MemberState("a", True, 0.0, 0.0, False), ALIVE),
    (MemberState("a", True, SUSPECT_AFTER - 1e-6, 0.0, False), ALIVE),
    # alive wins over a provider that says terminated (heard from it just now)
    (MemberState("a", True, 0.1, 0.0, True), ALIVE),
    # exactly an election timeout without news: no longer alive, not failed yet
    (MemberState("a", True, SUSPECT_AFTER, SUSPECT_AFTER, False), SUSPECT),
    (MemberState("a", True, 5.0, 5.0, False), SUSPECT),
    (MemberState("a", True, DEAD_AFTER - 1e-6, DEAD_AFTER - 1e-6, False), SUSPECT),
    # never heard from since this node started, down for a while
    (MemberState("a", True, None, 0.0, False), SUSPECT),
    (MemberState("a", True, None, 3.0, False), SUSPECT),
    # unreachable for the dead-member timeout (inclusive): failed
    (MemberState("a", True, DEAD_AFTER, DEAD_AFTER, False), FAILED),
    (MemberState("a", True, None, DEAD_AFTER, False), FAILED),
    (MemberState("a", False, 100.0, 100.0, False), FAILED),
    # the provider confirms it terminated: failed at once
    (MemberState("a", True, SUSPECT_AFTER, 0.0, True), FAILED),
    (MemberState("a", True, None, 0.0, True), FAILED),
])
def test_health(state: MemberState, expected: str) -> None:
    assert h(state) == expected


def test_majority() -> None:
    assert [majority(n) for n in range(1, 8)] == [1, 2, 2, 3, 3, 4, 4]


# -- removal_refusal ---------------------------------------------------------------------------


def test_removing_an_alive_member_is_refused_naming_it() -> None:
    why = removal_refusal({"a", "b", "c"}, {"a", "b", "c"}, "b")
    assert why is not None
    assert why.startswith("b is alive") and "--force" in why and "quorate members leave" in why


def test_removing_an_alive_learner_is_refused_too() -> None:
    why = removal_refusal({"a", "b", "c"}, {"a", "b", "c", "l"}, "l")
    assert why is not None and why.startswith("l is alive")


def test_an_alive_target_is_refused_as_alive_even_when_the_quorum_would_break_too() -> None:
    why = removal_refusal({"a", "b", "c"}, {"a", "b"}, "b")
    assert why is not None and why.startswith("b is alive")


def test_removing_a_dead_voter_that_breaks_the_quorum_is_refused_with_the_numbers() -> None:
    # 3 voters, only a alive: without b, 2 voters of which 1 alive, below 2.
    why = removal_refusal({"a", "b", "c"}, {"a"}, "b")
    assert why == ("removing b leaves 2 voters of which 1 are alive, below the 2 a quorum needs; "
                   "use --force to remove it anyway")
    # 5 voters, 2 alive: without d, 4 voters of which 2 alive, below 3.
    why = removal_refusal({"a", "b", "c", "d", "e"}, {"a", "b"}, "d")
    assert why is not None and "leaves 4 voters of which 2 are alive, below the 3 a quorum needs" in why


def test_a_member_leaving_is_judged_as_if_it_were_gone() -> None:
    # The API takes a leaving member out of the alive set: 5 voters, 2 dead,
    # c leaves -> 4 voters of which 2 alive: refused with the numbers.
    voters = {"a", "b", "c", "d", "e"}
    why = removal_refusal(voters, {"a", "b", "c"} - {"c"}, "c")
    assert why is not None and "removing c leaves 4 voters of which 2 are alive, below the 3" in why
    # 5 voters, all alive: c may leave (4 voters, 4 alive).
    assert removal_refusal(voters, voters - {"c"}, "c") is None


@pytest.mark.parametrize(("voters", "alive_set", "target"), [
    ({"a", "b", "c"}, {"a", "b"}, "c"),                 # 3 voters, c dead: 2 of 2 remain alive
    ({"a", "b", "c", "d", "e"}, {"a", "b", "c"}, "d"),  # 5 voters, 2 dead: 3 of 4 alive
    ({"a", "b", "c", "d"}, {"a", "b"}, "c"),            # 4 voters, 2 dead: 2 of 3 alive
    ({"a", "b"}, {"a"}, "b"),                           # 2 voters, b dead: 1 of 1 alive
])
def test_removing_a_dead_voter_that_keeps_the_quorum_is_allowed(voters: set[str], alive_set: set[str],
                                                                  target: str) -> None:
    assert removal_refusal(voters, alive_set, target) is None


def test_removing_a_dead_learner_is_allowed_whatever_the_voters() -> None:
    assert removal_refusal({"a", "b", "c"}, {"a"}, "l") is None  # the voters have no quorum; l counts for nothing
    assert removal_refusal({"a", "b", "c"}, {"a", "b", "c"}, "l") is None


# -- cleanup -----------------------------------------------------------------------------------


def test_cleanup_removes_nothing_from_a_healthy_cluster() -> None:
    assert clean([alive("a"), alive("b"), alive("c"), alive("l", voter=False)]) == []


def test_failed_learners_are_always_removed() -> None:
    # Even at the voter minimum, and confirmed dead or timed out alike.
    states = [alive("a"), alive("b"), alive("c"), down("l1", 20.0, voter=False),
              down("l2", 0.5, voter=False, confirmed=True, last=2.0)]
    assert clean(states, min_voters=3) == ["l1", "l2"]
    # A suspect learner is not (yet).
    assert clean([alive("a"), alive("b"), alive("c"), down("l", 5.0, voter=False)]) == []


def test_learners_do_not_use_up_the_voter_budget() -> None:
    states = [alive("a"), alive("b"), alive("c"), alive("d"), down("e", 30.0),
              down("l1", 40.0, voter=False), down("l2", 50.0, voter=False)]
    assert sorted(clean(states, min_voters=3)) == ["e", "l1", "l2"]


def test_a_voter_is_removed_only_past_the_dead_timeout() -> None:
    base = [alive("a"), alive("b"), alive("c"), alive("d")]
    assert clean(base + [down("e", DEAD_AFTER - 0.01)]) == []       # suspect
    assert clean(base + [down("e", DEAD_AFTER)]) == ["e"]           # failed, timed out
    assert clean(base + [down("e", 3.0, confirmed=True)]) == []     # failed, but no replacement waits


def test_a_confirmed_dead_voter_is_removed_at_once_when_a_replacement_waits() -> None:
    states = [alive("a"), alive("b"), alive("c"), alive("d"), down("e", 3.0, confirmed=True)]
    assert clean(states, replacements=1) == ["e"]
    # One replacement makes room for one confirmed-dead voter, not two.
    states = [alive("a"), alive("b"), alive("c"), down("d", 4.0, confirmed=True), down("e", 3.0, confirmed=True)]
    assert clean(states, min_voters=1, replacements=1) == ["d"]
    assert clean(states, min_voters=1, replacements=2) == ["d", "e"]


def test_cleanup_never_goes_below_min_voters() -> None:
    # 3 voters, minimum 3: a voter failed long ago stays.
    states = [alive("a"), alive("b"), down("c", 1000.0)]
    assert clean(states, min_voters=3) == []
    # 5 voters, minimum 4, three failed: only one may go, the longest down.
    states = [alive("a"), alive("b"), down("c", 20.0), down("d", 40.0), down("e", 30.0)]
    assert clean(states, min_voters=4) == ["d"]
    # Already below the minimum: nothing.
    assert clean([alive("a"), down("b", 100.0)], min_voters=3) == []


def test_a_replacement_does_not_count_against_min_voters() -> None:
    # Habitat's second row: 3 voters, one dead, a fourth member joining. The
    # dead one goes first (3 -> 2 voters + the newcomer = 3 again).
    states = [alive("n1"), alive("n2"), down("n3", 1000.0)]
    assert clean(states, min_voters=3, replacements=1) == ["n3"]
    states = [alive("n1"), alive("n2"), down("n3", 2.0, confirmed=True)]
    assert clean(states, min_voters=3, replacements=1) == ["n3"]
    # ... but the (N-1)//2 cap still holds: 3 voters, two dead, two joining.
    states = [alive("n1"), down("n2", 100.0), down("n3", 200.0)]
    assert clean(states, min_voters=3, replacements=2) == ["n3"]


def test_cleanup_never_removes_more_than_a_minority_per_pass() -> None:
    # 5 voters, 4 failed, minimum 1: at most (5-1)//2 = 2, the longest down.
    states = [alive("a"), down("b", 15.0), down("c", 50.0), down("d", 30.0), down("e", 40.0)]
    assert clean(states, min_voters=1) == ["c", "e"]
    # 7 voters, 6 failed: 3.
    states = [alive("a")] + [down(f"v{i}", 10.0 + i) for i in range(6)]
    assert clean(states, min_voters=1) == ["v5", "v4", "v3"]
    # 2 voters: (2-1)//2 = 0, whatever the replacements.
    assert clean([alive("a"), down("b", 100.0)], min_voters=1, replacements=3) == []


def test_cleanup_takes_the_longest_down_first_ties_by_id() -> None:
    states = [alive("a"), alive("b"), alive("c"), down("z", 20.0), down("y", 20.0), down("x", 60.0),
              alive("d"), alive("e")]
    assert clean(states, min_voters=1) == ["x", "y", "z"]
    assert clean(states, min_voters=6) == ["x", "y"]
    assert clean(states, min_voters=7) == ["x"]


def test_cleanup_leaves_suspects_and_alive_members_alone() -> None:
    states = [alive("a"), alive("b"), alive("c"), down("d", 5.0), down("e", 5.0, voter=False)]
    assert clean(states, min_voters=1, replacements=2) == []


# -- quorum_advice -----------------------------------------------------------------------------


def test_no_advice_while_the_live_voters_are_a_majority() -> None:
    assert quorum_advice({"a", "b", "c"}, {"a", "b", "c"}, {}) == []
    assert quorum_advice({"a", "b", "c"}, {"a", "b"}, {"c": 100.0}) == []
    assert quorum_advice({"a", "b", "c", "d", "e"}, {"a", "b", "c"}, {"d": 1.0, "e": 2.0}) == []


def test_five_voters_three_dead_need_exactly_two_removed_the_longest_down() -> None:
    voters = {"n1", "n2", "n3", "n4", "n5"}
    advice = quorum_advice(voters, {"n1", "n2"}, {"n3": 30.0, "n4": 50.0, "n5": 10.0})
    assert advice == ["n4", "n3"]
    assert quorum_advice(voters, {"n4", "n5"}, {"n1": 5.0, "n2": 5.0, "n3": 5.0}) == ["n1", "n2"]  # ties: by id


def test_three_voters_one_alive_need_both_dead_removed() -> None:
    assert quorum_advice({"a", "b", "c"}, {"a"}, {"b": 1.0, "c": 2.0}) == ["c", "b"]


def test_four_voters_two_alive_need_one_removed() -> None:
    # Habitat's fourth row: 1 and 4 alive, 2 and 3 confirmed: one removal
    # leaves 3 voters, of which 2 alive.
    assert quorum_advice({"1", "2", "3", "4"}, {"1", "4"}, {"2": 10.0, "3": 600.0}) == ["3"]


def test_habitat_last_row_one_of_five_alive_needs_four_removed() -> None:
    voters = {"n1", "n4", "n5", "n6", "n7"}
    advice = quorum_advice(voters, {"n7"}, {"n1": 4.0, "n4": 3.0, "n5": 2.0, "n6": 1.0})
    assert advice == ["n1", "n4", "n5", "n6"]


def test_alive_non_voters_do_not_count_and_unknown_down_times_go_last() -> None:
    voters = {"a", "b", "c", "d", "e"}
    assert quorum_advice(voters, {"a", "b", "l1", "l2"}, {"c": 3.0, "d": 7.0}) == ["d", "c"]


def test_no_advice_when_no_voter_is_alive() -> None:
    assert quorum_advice({"a", "b", "c"}, set(), {"a": 1.0, "b": 1.0, "c": 1.0}) is None
    assert quorum_advice({"a", "b", "c"}, {"l"}, {}) is None


# -- properties --------------------------------------------------------------------------------


@st.composite
def electorates(draw: st.DrawFn) -> tuple[list[MemberState], int, int]:
    n_voters = draw(st.integers(1, 9))
    n_learners = draw(st.integers(0, 3))
    states = []
    for i in range(n_voters + n_learners):
        last = draw(st.one_of(st.none(), st.floats(0.0, 3 * DEAD_AFTER, allow_nan=False)))
        if last is not None and last < SUSPECT_AFTER:
            down_for = 0.0
        else:
            down_for = draw(st.floats(0.0, 3 * DEAD_AFTER, allow_nan=False))
        states.append(MemberState(f"m{i}", i < n_voters, last, down_for, draw(st.booleans())))
    return states, draw(st.integers(1, 7)), draw(st.integers(0, 3))


@settings(max_examples=400, deadline=None)
@given(electorates())
def test_cleanup_properties(case: tuple[list[MemberState], int, int]) -> None:
    states, min_voters, replacements = case
    gone = clean(states, min_voters=min_voters, replacements=replacements)
    by_id = {m.id: m for m in states}
    voters = [m for m in states if m.voter]
    n = len(voters)
    removed_voters = [m for m in gone if by_id[m].voter]
    assert len(set(gone)) == len(gone) and set(gone) <= set(by_id)
    # Never more than a minority of the voters in one pass.
    assert len(removed_voters) <= (n - 1) // 2
    # Never below the minimum (or below N when already there), save for
    # the replacements waiting, which restore the count.
    left = n - len(removed_voters)
    assert left + replacements >= min(n, min_voters)
    if replacements == 0:
        assert left >= min(n, min_voters)
    # Only failed members; never an alive (or suspect) one.
    for m in gone:
        assert h(by_id[m]) == FAILED
    # A voter goes only timed out, or confirmed dead with a replacement for it.
    early = [m for m in removed_voters if by_id[m].down_for_s < DEAD_AFTER]
    assert all(by_id[m].confirmed_dead for m in early) and len(early) <= replacements
    # Every failed learner goes.
    assert {m.id for m in states if not m.voter and h(m) == FAILED} <= set(gone)
    # Longest down first among the voters removed, and none passed over for
    # a shorter-down one with the same standing.
    downs = [by_id[m].down_for_s for m in removed_voters]
    assert downs == sorted(downs, reverse=True)
    timed_out = [m for m in voters if h(m) == FAILED and m.down_for_s >= DEAD_AFTER]
    if replacements == 0 and removed_voters:
        shortest = min(by_id[m].down_for_s for m in removed_voters)
        assert all(m.down_for_s <= shortest for m in timed_out if m.id not in removed_voters)


@st.composite
def quorum_cases(draw: st.DrawFn) -> tuple[set[str], set[str], dict[str, float]]:
    voters = {f"v{i}" for i in range(draw(st.integers(1, 11)))}
    alive_set = draw(st.sets(st.sampled_from(sorted(voters)))) | draw(st.sets(st.sampled_from(["l1", "l2"])))
    down_for = {m: draw(st.floats(0.0, 1000.0, allow_nan=False)) for m in sorted(voters - alive_set)}
    return voters, alive_set, down_for


@settings(max_examples=400, deadline=None)
@given(quorum_cases())
def test_quorum_advice_properties(case: tuple[set[str], set[str], dict[str, float]]) -> None:
    voters, alive_set, down_for = case
    live = voters & alive_set
    advice = quorum_advice(voters, alive_set, down_for)
    if not live:
        assert advice is None
        return
    assert advice is not None
    if len(live) >= majority(len(voters)):
        assert advice == []
        return
    # Only dead voters, each once.
    assert advice and len(set(advice)) == len(advice) and set(advice) <= voters - alive_set
    # Afterwards the live voters are a majority of the remaining voters...
    assert len(live) >= majority(len(voters) - len(advice))
    # ... and one removal fewer would not do.
    assert len(live) < majority(len(voters) - (len(advice) - 1))
    # The longest down go first.
    rest = voters - alive_set - set(advice)
    assert all(down_for[a] >= down_for[r] for a in advice for r in rest)
    assert [down_for[a] for a in advice] == sorted((down_for[a] for a in advice), reverse=True)
