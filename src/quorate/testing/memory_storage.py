"""An in-memory stand-in for the durable store of one node.

It keeps exactly what a node must find again after a crash: the hard state,
the latest snapshot, and the log entries after that snapshot. Everything
written here counts as durable (as if fsynced), so a crash in the simulator
loses only what was never written. The file-backed storage must behave the
same way; both are meant to pass one conformance suite.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from quorate.raft.types import Entry, HardState, PersistentState, Snapshot
from quorate.storage.base import check_save
from quorate.storage.errors import StorageError

__all__ = ["MemoryStorage", "StorageError"]


class MemoryStorage:
    """Hard state, snapshot and the entries after the snapshot, in memory."""

    __slots__ = ("_hard_state", "_snapshot", "_entries")

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot: Snapshot | None = None
        # Invariant: _entries are contiguous and start at snapshot index + 1.
        self._entries: list[Entry] = []

    @classmethod
    def from_state(cls, state: PersistentState) -> MemoryStorage:
        """A storage already holding ``state`` (e.g. ``bootstrap_state``)."""
        storage = cls()
        if state.snapshot is not None:
            storage.apply_snapshot(state.snapshot)
        storage.append(state.entries)
        storage.set_hard_state(state.hard_state)
        return storage

    # -- reads ---------------------------------------------------------------

    @property
    def snapshot_index(self) -> int:
        return 0 if self._snapshot is None else self._snapshot.meta.index

    @property
    def last_index(self) -> int:
        return self._entries[-1].index if self._entries else self.snapshot_index

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def entry(self, index: int) -> Entry | None:
        """The stored entry at ``index``, or None (compacted or absent)."""
        pos = index - self.snapshot_index - 1
        if 0 <= pos < len(self._entries):
            return self._entries[pos]
        return None

    def load(self) -> PersistentState:
        """What a restarting node reads back."""
        return PersistentState(self._hard_state, self._snapshot, tuple(self._entries))

    # -- writes --------------------------------------------------------------

    def set_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def append(self, entries: Iterable[Entry]) -> None:
        """Append entries; one at an index already stored replaces it and
        every entry after it (the new leader's log wins, Raft §5.3)."""
        for entry in entries:
            self._append_one(entry)

    def _append_one(self, entry: Entry) -> None:
        if entry.index <= self.snapshot_index:
            raise StorageError(
                f"entry {entry.index} is at or below the snapshot index {self.snapshot_index}"
            )
        if entry.index > self.last_index + 1:
            raise StorageError(f"entry {entry.index} leaves a gap after {self.last_index}")
        del self._entries[entry.index - self.snapshot_index - 1 :]
        self._entries.append(entry)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Install a snapshot received from the leader: it replaces the log."""
        if snapshot.meta.index < self.snapshot_index:
            raise StorageError(
                f"snapshot {snapshot.meta.index} is older than the stored {self.snapshot_index}"
            )
        self._snapshot = snapshot
        self._entries = []

    def compact(self, snapshot: Snapshot) -> None:
        """Record a snapshot the node took itself; entries up to its index go,
        the ones after it stay."""
        index = snapshot.meta.index
        if index <= self.snapshot_index:
            return
        if index > self.last_index:
            raise StorageError(f"cannot compact to {index}: the log ends at {self.last_index}")
        stored = self.entry(index)
        if stored is not None and stored.term != snapshot.meta.term:
            raise StorageError(
                f"snapshot term {snapshot.meta.term} at {index} differs from the log's {stored.term}"
            )
        del self._entries[: index - self.snapshot_index]
        self._snapshot = snapshot

    # -- the Storage contract (quorate.storage.Storage) ------------------------

    def save(self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None) -> None:
        """Step 1 of a Ready, all or nothing: checked first, as FileStorage
        does, so a refused save leaves the state as it was."""
        check_save(self.snapshot_index, self.last_index, hard_state, entries, snapshot)
        if snapshot is not None:
            self.apply_snapshot(snapshot)
        self.append(entries)
        if hard_state is not None:
            self.set_hard_state(hard_state)

    def close(self) -> None:
        """Nothing to release: the state outlives the node, as a disk would."""
