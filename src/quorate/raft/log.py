"""The replicated log as one node holds it in memory.

Layout: a snapshot covers indices up to ``snapshot_index`` (its term is
``snapshot_term``); ``_entries[i]`` has index ``snapshot_index + 1 + i``.
The whole tail since the last snapshot stays in memory; compaction (driven
by the state machine's snapshots) keeps it bounded.

Invariants: ``snapshot_index <= applied <= committed <= last_index``;
entries above ``stable`` have not been handed to storage yet; committed
entries are never truncated (a conflict below ``committed`` is a safety
violation and raises).
"""

from __future__ import annotations

from .types import ConfChange, ConfState, Entry, EntryKind, Snapshot, SnapshotMeta


class LogCorruption(AssertionError):
    """The log was asked to do something Raft's safety argument rules out."""


class RaftLog:
    def __init__(self, snapshot: Snapshot | None, entries: tuple[Entry, ...], committed: int) -> None:
        self.snapshot: Snapshot | None = snapshot  # latest snapshot, to send to laggards
        meta = snapshot.meta if snapshot else SnapshotMeta()
        self.snapshot_index = meta.index
        self.snapshot_term = meta.term
        self._entries: list[Entry] = []
        for e in entries:
            if e.index <= self.snapshot_index:
                continue
            if e.index != self.last_index + 1:
                raise LogCorruption(f"stored log has a gap before index {e.index}")
            self._entries.append(e)
        if committed > self.last_index:
            raise LogCorruption(f"commit index {committed} beyond last stored index {self.last_index}")
        self.committed = max(committed, self.snapshot_index)
        self.applied = self.snapshot_index
        self.stable = self.last_index  # everything we were built from is durable
        # A snapshot received from the leader and not yet persisted/installed.
        self.pending_snapshot: Snapshot | None = None

    # -- reading -----------------------------------------------------------

    @property
    def first_index(self) -> int:
        return self.snapshot_index + 1

    @property
    def last_index(self) -> int:
        return self._entries[-1].index if self._entries else self.snapshot_index

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.snapshot_term

    def term_at(self, index: int) -> int | None:
        """Term of ``index``; None when compacted away or not yet written."""
        if index == self.snapshot_index:
            return self.snapshot_term
        if index < self.snapshot_index or index > self.last_index:
            return None
        return self._entries[index - self.snapshot_index - 1].term

    def match_term(self, index: int, term: int) -> bool:
        return self.term_at(index) == term

    def entry(self, index: int) -> Entry:
        return self._entries[index - self.snapshot_index - 1]

    def slice(self, lo: int, hi: int, max_count: int | None = None) -> list[Entry]:
        """Entries with ``lo <= index < hi``; ``lo`` must not be compacted."""
        if lo < self.first_index:
            raise LogCorruption(f"slice from {lo} reaches into the snapshot at {self.snapshot_index}")
        hi = min(hi, self.last_index + 1)
        if max_count is not None:
            hi = min(hi, lo + max_count)
        off = self.snapshot_index + 1
        return self._entries[lo - off : hi - off]

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: a candidate's log at least as up to date as ours."""
        return last_term > self.last_term or (
            last_term == self.last_term and last_index >= self.last_index
        )

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """Largest index <= ``index`` whose term is <= ``term``: where a
        rejected append should probe next (fast backtracking, Raft §5.3)."""
        index = min(index, self.last_index)
        while index > self.snapshot_index:
            t = self.term_at(index)
            if t is not None and t <= term:
                break
            index -= 1
        return index

    # -- writing -----------------------------------------------------------

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Append ``entries``, truncating any conflicting suffix first."""
        if not entries:
            return
        first = entries[0].index
        if first <= self.committed:
            raise LogCorruption(f"truncating committed index {first} (committed {self.committed})")
        if first > self.last_index + 1:
            raise LogCorruption(f"append at {first} leaves a gap after {self.last_index}")
        del self._entries[first - self.snapshot_index - 1 :]
        self.stable = min(self.stable, first - 1)
        self._entries.extend(entries)

    def maybe_append(self, index: int, log_term: int, committed: int, entries: tuple[Entry, ...]) -> int | None:
        """Follower side of AppendEntries (Raft §5.3). Returns the last index
        known to match the leader, or None if the consistency check fails."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        for i, e in enumerate(entries):
            if self.term_at(e.index) != e.term:
                self.append(entries[i:])
                break
        self.commit_to(min(committed, last_new))
        return last_new

    def commit_to(self, index: int) -> bool:
        if index <= self.committed:
            return False
        if index > self.last_index:
            raise LogCorruption(f"commit {index} beyond last index {self.last_index}")
        self.committed = index
        return True

    def unstable_entries(self) -> tuple[Entry, ...]:
        if self.stable >= self.last_index:
            return ()
        return tuple(self.slice(max(self.stable + 1, self.first_index), self.last_index + 1))

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` are durable, unless replaced meanwhile."""
        if self.term_at(index) == term and index > self.stable:
            self.stable = index

    # -- snapshots ---------------------------------------------------------

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log with a snapshot from the leader."""
        meta = snapshot.meta
        self._entries = []
        self.snapshot = snapshot
        self.snapshot_index = meta.index
        self.snapshot_term = meta.term
        self.committed = meta.index
        self.stable = meta.index
        self.pending_snapshot = snapshot

    def compact(self, snapshot: Snapshot) -> None:
        """Drop entries covered by a snapshot the state machine made."""
        index = snapshot.meta.index
        if index <= self.snapshot_index:
            return
        if index > self.applied:
            raise LogCorruption(f"compacting to {index} beyond applied {self.applied}")
        del self._entries[: index - self.snapshot_index]
        self.snapshot = snapshot
        self.snapshot_index = index
        self.snapshot_term = snapshot.meta.term

    def conf_at(self, base: ConfState, index: int) -> ConfState:
        """Membership after applying the log's conf changes up to ``index``
        on top of ``base`` (the configuration at ``snapshot_index``)."""
        conf = base
        for e in self.slice(self.first_index, index + 1):
            if e.kind is EntryKind.CONF_CHANGE:
                conf = conf.apply(ConfChange.decode(e.data))
        return conf
