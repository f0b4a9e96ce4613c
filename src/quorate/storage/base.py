"""The storage contract shared by every implementation.

A node's durable state is its hard state, its latest snapshot and the log
entries after that snapshot. ``save`` persists step 1 of a ``Ready`` (see
``quorate.raft.ready``) and returns only once all of it is durable, so the
caller may then send the messages that depend on it. The preconditions are
checked here, once, so that every implementation refuses the same bad
writes with the same ``StorageError`` and before touching anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from quorate.raft.types import Entry, HardState, PersistentState, Snapshot

from .errors import StorageError


@runtime_checkable
class Storage(Protocol):
    def load(self) -> PersistentState:
        """What a restarting node reads back: exactly what was saved."""
        ...

    def save(self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None) -> None:
        """Persist ``snapshot`` (a leader's: it replaces the log), then
        ``entries`` (one at an index already stored replaces it and all after
        it, Raft §5.3), then ``hard_state``; durable when this returns.
        A refused save (``StorageError``) changes nothing."""
        ...

    def compact(self, snapshot: Snapshot) -> None:
        """Keep a snapshot the node took itself at an applied index; entries up
        to its index go, later ones stay. Older or equal snapshots are a no-op."""
        ...

    def close(self) -> None:
        """Release files; further calls raise ``StorageError``."""
        ...


def check_save(
    snapshot_index: int,
    last_index: int,
    hard_state: HardState | None,
    entries: Sequence[Entry],
    snapshot: Snapshot | None,
) -> None:
    """Refuse a save that would leave a gap, write at or below the snapshot,
    go back to an older snapshot, or commit past the end of the log."""
    if snapshot is not None:
        if snapshot.meta.index < snapshot_index:
            raise StorageError(
                f"snapshot {snapshot.meta.index} is older than the stored {snapshot_index}"
            )
        snapshot_index = last_index = snapshot.meta.index
    for entry in entries:
        if entry.index <= snapshot_index:
            raise StorageError(
                f"entry {entry.index} is at or below the snapshot index {snapshot_index}"
            )
        if entry.index > last_index + 1:
            raise StorageError(f"entry {entry.index} leaves a gap after {last_index}")
        last_index = entry.index
    if hard_state is not None and hard_state.commit > last_index:
        raise StorageError(
            f"hard state commits {hard_state.commit} but the log ends at {last_index}"
        )


def check_compact(
    snapshot_index: int,
    last_index: int,
    term_at: Callable[[int], int | None],
    snapshot: Snapshot,
) -> bool:
    """True when ``compact(snapshot)`` has work to do; raise when it must not
    (beyond the log, or a term that contradicts the stored entry)."""
    index = snapshot.meta.index
    if index <= snapshot_index:
        return False
    if index > last_index:
        raise StorageError(f"cannot compact to {index}: the log ends at {last_index}")
    term = term_at(index)
    if term is not None and term != snapshot.meta.term:
        raise StorageError(
            f"snapshot term {snapshot.meta.term} at {index} differs from the log's {term}"
        )
    return True
