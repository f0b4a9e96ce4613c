"""The five start-up cases of seed 002 (DESIGN.md S5), one test each, and
the edge cases of nodes that start while a recovery is under way."""

from __future__ import annotations

from quorate.recovery.startup import Action, StoreFacts, decide


def test_case_1_neither_counter_runs_normally() -> None:
    d = decide(None, StoreFacts(None))
    assert (d.action, d.case) == (Action.NORMAL, 1)
    assert "new node on a new store" in d.reason


def test_case_2_store_only_runs_normally() -> None:
    d = decide(None, StoreFacts(12))
    assert (d.action, d.case) == (Action.NORMAL, 2)
    assert "12" in d.reason


def test_case_3_local_only_enters_recovery_mode() -> None:
    d = decide(7, StoreFacts(None))
    assert (d.action, d.case) == (Action.RECOVERY, 3)
    assert "lost its data" in d.reason and "7" in d.reason


def test_case_4_local_lower_or_equal_runs_normally() -> None:
    for local in (3, 12):
        d = decide(local, StoreFacts(12))
        assert (d.action, d.case, d.orphan_above) == (Action.NORMAL, 4, None)


def test_case_5_local_higher_refuses_to_start() -> None:
    d = decide(15, StoreFacts(12))
    assert (d.action, d.case) == (Action.REFUSE, 5)
    assert "rolled back" in d.reason and "--accept-rollback" in d.reason and "recovery mode" in d.reason


def test_case_5_with_accept_rollback_runs_and_orphans_the_newer_backups() -> None:
    d = decide(15, StoreFacts(12), accept_rollback=True)
    assert (d.action, d.case, d.orphan_above) == (Action.NORMAL, 5, 12)


def test_case_5_names_the_recovery_that_chose_an_older_backup() -> None:
    d = decide(15, StoreFacts(12, recovered_from=("n2", 12)))
    assert d.action is Action.REFUSE and "restored backup 12 of n2" in d.reason


def test_a_recovery_under_way_is_joined_with_or_without_a_backup() -> None:
    for local in (None, 3, 99):
        d = decide(local, StoreFacts(None, recovery_in_progress=True))
        assert (d.action, d.case) == (Action.RECOVERY, 0)
    assert "no backup of its own" in decide(None, StoreFacts(None, True)).reason


def test_accept_rollback_changes_nothing_elsewhere() -> None:
    for local, stored in ((None, None), (None, 4), (4, None), (3, 4)):
        plain = decide(local, StoreFacts(stored))
        assert decide(local, StoreFacts(stored), accept_rollback=True) == plain
