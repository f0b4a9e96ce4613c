"""The quorum-loss decision (S2, S3): every case of the table in
recovery/quorum.py, and properties over random observations: nothing is
ever forced while a missing voter may be alive, and only the survivor with
the most up-to-date log forces."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.providers.base import InstanceState
from quorate.recovery.quorum import (
    Follow,
    Force,
    Observation,
    PeerFacts,
    RestartInPlace,
    Wait,
    decide,
    recovery_leader,
)

T, R, U = InstanceState.TERMINATED, InstanceState.RUNNING, InstanceState.UNKNOWN
V3 = frozenset({"n1", "n2", "n3"})


def facts(node: str, last: tuple[int, int] = (2, 10), voters: frozenset[str] = V3, epoch: int = 0,
          sees: frozenset[str] | None = None, verdicts: dict[str, InstanceState] | None = None,
          leader: str | None = None) -> PeerFacts:
    return PeerFacts(node, epoch, 3, last[0], last[1], last[1], voters, leader,
                     sees if sees is not None else frozenset(), verdicts or {})


def obs(me: str, answers: dict[str, PeerFacts], verdicts: dict[str, InstanceState],
        intact: dict[str, bool] | None = None, voters: frozenset[str] = V3, leaderless: float = 10.0,
        auto: bool = True) -> Observation:
    return Observation(me, voters, answers, verdicts, intact or {}, leaderless, 5.0, auto)


def agreeing(ids: list[str], verdicts: dict[str, InstanceState], voters: frozenset[str] = V3,
             logs: dict[str, tuple[int, int]] | None = None) -> dict[str, PeerFacts]:
    survivors = frozenset(ids)
    return {i: facts(i, (logs or {}).get(i, (2, 10)), voters, sees=survivors, verdicts=verdicts) for i in ids}


def test_within_the_grace_period_it_waits() -> None:
    d = decide(obs("n1", agreeing(["n1"], {"n2": T, "n3": T}), {"n2": T, "n3": T}, leaderless=1.0))
    assert isinstance(d, Wait) and "grace" in d.reason


def test_a_majority_answering_is_ordinary_raft() -> None:
    d = decide(obs("n1", agreeing(["n1", "n2"], {"n3": T}), {"n3": T}))
    assert isinstance(d, Wait) and "majority" in d.reason


def test_dead_with_intact_state_are_restarted_in_place_first() -> None:
    d = decide(obs("n1", agreeing(["n1"], {"n2": T, "n3": T}), {"n2": T, "n3": T}, {"n2": True, "n3": False}))
    assert d == RestartInPlace(("n2",), d.reason)  # type: ignore[union-attr]


def test_restart_in_place_even_when_another_missing_voter_may_be_alive() -> None:
    d = decide(obs("n1", agreeing(["n1"], {"n2": T, "n3": R}), {"n2": T, "n3": R}, {"n2": True}))
    assert isinstance(d, RestartInPlace) and d.members == ("n2",)


def test_alive_or_unknown_missing_voters_are_never_forced_out() -> None:
    for verdict in (R, U, InstanceState.STARTING):
        d = decide(obs("n1", agreeing(["n1"], {"n2": T, "n3": verdict}), {"n2": T, "n3": verdict}))
        assert isinstance(d, Wait) and "not confirmed dead" in d.reason
        assert d.missing["n3"] == verdict.value and d.command == "quorate recover --from n1"


def test_the_most_up_to_date_survivor_forces_and_the_other_follows() -> None:
    voters = frozenset({"n1", "n2", "n3", "n4", "n5"})
    dead = {"n3": T, "n4": T, "n5": T}
    answers = agreeing(["n1", "n2"], dead, voters, {"n1": (3, 40), "n2": (3, 41)})
    d2 = decide(obs("n2", answers, dead, voters=voters))
    assert isinstance(d2, Force) and d2.voters == {"n1", "n2"} and d2.removed == {"n3", "n4", "n5"}
    assert d2.epoch == 1
    d1 = decide(obs("n1", answers, dead, voters=voters))
    assert d1 == Follow("n2", d1.reason)  # type: ignore[union-attr]


def test_ties_go_to_the_lowest_id_and_terms_beat_indexes() -> None:
    assert recovery_leader({"b": facts("b", (3, 5)), "a": facts("a", (3, 5))}) == "a"
    assert recovery_leader({"a": facts("a", (2, 99)), "b": facts("b", (3, 1))}) == "b"


def test_survivors_that_see_different_facts_wait() -> None:
    dead = {"n3": T, "n4": T, "n5": T}
    voters = frozenset({"n1", "n2", "n3", "n4", "n5"})
    answers = agreeing(["n1", "n2"], dead, voters)
    answers["n2"] = facts("n2", voters=voters, sees=frozenset({"n2"}), verdicts=dead)  # n2 does not reach n1
    d = decide(obs("n1", answers, dead, voters=voters))
    assert isinstance(d, Wait) and "disagree" in d.reason and "reaches" in d.reason
    answers = agreeing(["n1", "n2"], dead, voters)
    answers["n2"] = facts("n2", voters=voters, sees=frozenset({"n1", "n2"}), verdicts={**dead, "n5": U})
    assert "provider says" in decide(obs("n1", answers, dead, voters=voters)).reason
    answers = agreeing(["n1", "n2"], dead, voters)
    answers["n2"] = facts("n2", voters=voters, epoch=1, sees=frozenset({"n1", "n2"}), verdicts=dead)
    assert "epoch" in decide(obs("n1", answers, dead, voters=voters)).reason


def test_survivors_one_membership_change_apart_recover_from_the_newest() -> None:
    """n4 was promoted while n1 was cut off: n2 holds the newer configuration
    and the longer log. Both see n3 and n4 dead for good; n2 forces {n1, n2},
    n1 follows (it used to think a majority answered and wait forever)."""
    v4 = frozenset({"n1", "n2", "n3", "n4"})
    dead = {"n3": T, "n4": T}
    answers = {"n1": facts("n1", (2, 18), V3, sees=frozenset({"n1", "n2"}), verdicts=dead),
               "n2": facts("n2", (2, 20), v4, sees=frozenset({"n1", "n2"}), verdicts=dead)}
    d1 = decide(obs("n1", answers, dead, voters=V3))
    assert isinstance(d1, Follow) and d1.leader == "n2"
    d2 = decide(obs("n2", answers, dead, voters=v4))
    assert isinstance(d2, Force) and d2.voters == {"n1", "n2"} and d2.removed == {"n3", "n4"}


def test_with_auto_recovery_off_it_only_says_what_to_run() -> None:
    d = decide(obs("n1", agreeing(["n1"], {"n2": T, "n3": T}), {"n2": T, "n3": T}, auto=False))
    assert isinstance(d, Wait) and "off" in d.reason and d.command == "quorate recover --from n1"


_states = st.sampled_from([T, R, U, InstanceState.STARTING])


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    n = draw(st.integers(1, 7))
    voters = [f"n{i}" for i in range(1, n + 1)]
    me = draw(st.sampled_from(voters))
    answering = sorted(set(draw(st.lists(st.sampled_from(voters), max_size=n))) | {me})
    missing = [v for v in voters if v not in answering]
    verdicts = {m: draw(_states) for m in missing}
    intact = {m: draw(st.booleans()) for m in missing}
    answers = {}
    for a in answering:
        sees = frozenset(answering) if draw(st.integers(0, 9)) else frozenset({a})
        theirs = dict(verdicts) if draw(st.integers(0, 9)) else {m: draw(_states) for m in missing}
        answers[a] = PeerFacts(a, draw(st.integers(0, 1)), 5, draw(st.integers(1, 3)), draw(st.integers(0, 9)),
                               0, frozenset(voters), None, sees, theirs)
    return Observation(me, frozenset(voters), answers, verdicts, intact, draw(st.floats(0, 20)), 5.0,
                       draw(st.booleans()))


@settings(max_examples=400, deadline=None)
@given(observations())
def test_force_only_when_safe_and_only_by_the_most_up_to_date(o: Observation) -> None:
    d = decide(o)
    missing = o.voters - set(o.answers)
    if isinstance(d, Force):
        assert all(o.verdicts[m] is T and not o.intact[m] for m in missing)  # confirmed dead, state gone
        assert all(all(f.verdicts.get(m) is T for m in missing) for f in o.answers.values())  # all agree
        assert recovery_leader(o.answers) == o.me and o.auto_recover
        assert d.voters == frozenset(o.answers) and d.removed == missing
        assert len(o.answers) * 2 <= len(o.voters) and o.leaderless_s >= o.grace_s
    if isinstance(d, RestartInPlace):
        assert all(m in missing and o.verdicts[m] is T and o.intact[m] for m in d.members)
    if isinstance(d, Follow):
        assert d.leader != o.me and d.leader == recovery_leader(o.answers)
