"""The watch history: in-order events, prefix filtering, and a clear
Compacted error (never a silent gap) for revisions that fell out."""

import pytest

from quorate.kv import Compacted, EventHistory, EventType, WatchEvent


def _put(rev: int, key: str = "a") -> WatchEvent:
    return WatchEvent(EventType.PUT, key, rev, f"v{rev}", rev)


def test_events_since_revision_in_order_and_by_prefix() -> None:
    h = EventHistory(capacity=10)
    for rev, key in enumerate(["a/1", "b/1", "a/2", "a/3"], start=1):
        h.append(_put(rev, key))
    assert [e.revision for e in h.since(2)] == [2, 3, 4]
    assert [e.key for e in h.since(1, "a/")] == ["a/1", "a/2", "a/3"]
    assert h.since(5) == []


def test_revisions_that_fell_out_are_compacted() -> None:
    h = EventHistory(capacity=3)
    for rev in range(1, 6):
        h.append(_put(rev))
    assert h.first_revision == 3
    with pytest.raises(Compacted) as err:
        h.since(2)
    assert err.value.oldest == 3 and "compacted" in str(err.value)
    assert [e.revision for e in h.since(3)] == [3, 4, 5]


def test_reset_after_snapshot_forgets_the_past() -> None:
    h = EventHistory(capacity=10)
    h.append(_put(1))
    h.reset(revision=40)
    with pytest.raises(Compacted):
        h.since(40)
    assert h.since(41) == []
    h.append(_put(41))
    assert [e.revision for e in h.since(41)] == [41]


def test_out_of_order_event_is_refused() -> None:
    h = EventHistory(capacity=10)
    h.append(_put(2))
    with pytest.raises(ValueError):
        h.append(_put(2))
