"""MemoryStorage: the durable state a simulated node finds after a crash."""

from __future__ import annotations

import pytest

from quorate.raft.types import (
    ConfState,
    Entry,
    HardState,
    PersistentState,
    Snapshot,
    SnapshotMeta,
)
from quorate.testing import MemoryStorage, StorageError


def entries(lo: int, hi: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, data=f"e{i}".encode()) for i in range(lo, hi + 1)]


def snap(index: int, term: int = 1) -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, ConfState(frozenset({"n1"}))), b"img")


def test_empty_load() -> None:
    assert MemoryStorage().load() == PersistentState()


def test_append_and_load_round_trip() -> None:
    s = MemoryStorage()
    s.append(entries(1, 3))
    s.set_hard_state(HardState(term=1, vote="n1", commit=2))
    state = s.load()
    assert [e.index for e in state.entries] == [1, 2, 3]
    assert state.hard_state == HardState(1, "n1", 2)
    assert state.snapshot is None
    assert s.last_index == 3


def test_append_at_existing_index_truncates_the_tail() -> None:
    s = MemoryStorage()
    s.append(entries(1, 5))
    s.append([Entry(2, 3, data=b"new")])
    assert [(e.index, e.term) for e in s.load().entries] == [(1, 1), (2, 1), (3, 2)]


def test_append_with_gap_is_refused() -> None:
    s = MemoryStorage()
    s.append(entries(1, 2))
    with pytest.raises(StorageError, match="gap"):
        s.append([Entry(1, 4)])


def test_apply_snapshot_replaces_the_log() -> None:
    s = MemoryStorage()
    s.append(entries(1, 5))
    s.apply_snapshot(snap(3))
    state = s.load()
    assert state.snapshot == snap(3)
    assert state.entries == ()
    assert s.last_index == 3
    s.append(entries(4, 4, term=2))
    assert [e.index for e in s.load().entries] == [4]


def test_append_below_snapshot_is_refused() -> None:
    s = MemoryStorage()
    s.apply_snapshot(snap(5))
    with pytest.raises(StorageError, match="snapshot"):
        s.append(entries(5, 5))


def test_older_snapshot_is_refused() -> None:
    s = MemoryStorage()
    s.apply_snapshot(snap(5))
    with pytest.raises(StorageError, match="older"):
        s.apply_snapshot(snap(4))


def test_compact_drops_entries_up_to_the_index_only() -> None:
    s = MemoryStorage()
    s.append(entries(1, 6))
    s.compact(snap(4))
    state = s.load()
    assert state.snapshot == snap(4)
    assert [e.index for e in state.entries] == [5, 6]
    assert s.entry(4) is None and s.entry(5) is not None
    s.compact(snap(2))  # older than what is held: nothing changes
    assert s.load() == state


def test_compact_beyond_log_or_with_wrong_term_is_refused() -> None:
    s = MemoryStorage()
    s.append(entries(1, 3))
    with pytest.raises(StorageError, match="ends at"):
        s.compact(snap(4))
    with pytest.raises(StorageError, match="term"):
        s.compact(snap(2, term=7))


def test_from_state_reproduces_the_state() -> None:
    state = PersistentState(HardState(3, "n2", 7), snap(5), tuple(entries(6, 8, term=3)))
    assert MemoryStorage.from_state(state).load() == state
