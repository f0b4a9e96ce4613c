"""The recovery records read into a view: states, suggestion, damage."""

from __future__ import annotations

from quorate.recovery.keys import COMPLETE_KEY, COUNTER_KEY, OFFERS_PREFIX, PROCEED_KEY, in_backup, parse_counter
from quorate.recovery.state import Offer, RecoveryView, complete_value, offer_value


def view(*items: tuple[str, str]) -> RecoveryView:
    return RecoveryView.from_items(items)


def test_no_records_is_none_unless_this_node_is_in_recovery_mode() -> None:
    v = view()
    assert v.state(active=False) == "none" and v.state(active=True) == "waiting"
    assert not v.in_progress and v.suggested() is None


def test_waiting_suggests_the_highest_counter_then_latest_time() -> None:
    v = view((OFFERS_PREFIX + "n1", offer_value(5, 100.0)), (OFFERS_PREFIX + "n2", offer_value(9, 50.0)),
             (OFFERS_PREFIX + "n3", offer_value(None, None)), (OFFERS_PREFIX + "n4", offer_value(9, 60.0)))
    assert v.state(False) == "waiting" and v.in_progress
    assert v.suggested() == Offer("n4", 9, 60.0)
    assert v.offer("n3") == Offer("n3", None, None)
    assert v.all_offered(["n1", "n2", "n3"]) and not v.all_offered(["n1", "n5"]) and not v.all_offered([])


def test_proceeding_then_complete() -> None:
    offers = ((OFFERS_PREFIX + "n1", offer_value(5, 1.0)),)
    assert view(*offers, (PROCEED_KEY, "n1")).state(True) == "proceeding"
    done = view(*offers, (PROCEED_KEY, "n1"), (COMPLETE_KEY, complete_value("n1", 5, 2.0)))
    assert done.state(False) == "complete" and not done.in_progress
    assert done.complete is not None and (done.complete.node, done.complete.counter) == ("n1", 5)


def test_damaged_records_do_not_break_the_view() -> None:
    v = view((OFFERS_PREFIX + "n1", "{not json"), (OFFERS_PREFIX + "n2", '{"counter": true}'),
             (OFFERS_PREFIX + "n3", '["list"]'), (COMPLETE_KEY, "garbage"))
    assert [o.counter for o in v.offers] == [None, None, None]
    assert v.complete is None and v.suggested() is None and v.in_progress


def test_bookkeeping_keys_are_not_backed_up() -> None:
    assert in_backup("app/x") and in_backup("_quorate/groups/web")
    assert not in_backup(COUNTER_KEY) and not in_backup(PROCEED_KEY) and not in_backup("_quorate/members/n1")


def test_parse_counter() -> None:
    assert parse_counter("12") == 12 and parse_counter(" 3 ") == 3
    assert parse_counter(None) is None and parse_counter("0") is None and parse_counter("x") is None
