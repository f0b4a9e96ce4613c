"""Rebuilding the log from the newest snapshot and the WAL segments.

Replay is "last write wins, and a write truncates what follows": an entry
at index i drops every entry at i or later, then stands at i unless the
snapshot already covers it. A ``SnapshotMarker`` drops every entry (the
leader's snapshot replaced the log). Because only a prefix of segments is
ever removed, and only once the newest snapshot covers all it holds, what is
left replays to exactly the log that was saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from quorate.raft.types import Entry, HardState

from .errors import StorageCorruption
from .records import Item, SnapshotMarker
from .wal import TornTail, list_segments, scan_segment


class LogMirror:
    """The entries after the snapshot, exactly as the files hold them."""

    __slots__ = ("base", "entries")

    def __init__(self, base: int = 0) -> None:
        self.base = base
        # Invariant: contiguous, starting at base + 1.
        self.entries: list[Entry] = []

    @property
    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.base

    def term_at(self, index: int) -> int | None:
        pos = index - self.base - 1
        return self.entries[pos].term if 0 <= pos < len(self.entries) else None

    def put(self, entry: Entry) -> None:
        """Write ``entry``; it truncates everything from its index on."""
        pos = entry.index - self.base - 1
        if pos == len(self.entries):  # the common case: plain append
            self.entries.append(entry)
            return
        if pos > len(self.entries):
            raise ValueError(f"entry {entry.index} leaves a gap after {self.last_index}")
        if pos < 0:
            self.entries.clear()
            return
        del self.entries[pos:]
        self.entries.append(entry)

    def reset(self, base: int) -> None:
        """A leader's snapshot at ``base`` replaced the log."""
        self.base = base
        self.entries = []

    def compact(self, index: int) -> None:
        del self.entries[: index - self.base]
        self.base = index


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    seq: int
    path: Path
    size: int  # bytes of intact frames
    max_index: int
    frames: int


@dataclass(frozen=True, slots=True)
class Replayed:
    hard_state: HardState
    log: LogMirror
    last_marker: SnapshotMarker | None
    segments: list[SegmentInfo]
    torn: TornTail | None  # to be truncated by the caller


class _Replay:
    __slots__ = ("snapshot_index", "hard_state", "log", "marker")

    def __init__(self, snapshot_index: int) -> None:
        self.snapshot_index = snapshot_index
        self.hard_state = HardState()
        self.log = LogMirror(snapshot_index)
        self.marker: SnapshotMarker | None = None

    def frame(self, path: Path, offset: int, items: list[Item]) -> int:
        """Apply one frame; returns the highest index it wrote."""
        top = 0
        for item in items:
            if isinstance(item, Entry):
                try:
                    self.log.put(item)
                except ValueError as exc:
                    raise StorageCorruption(path, offset, str(exc)) from exc
                if item.index > top:
                    top = item.index
            elif isinstance(item, HardState):
                self.hard_state = item
            else:
                if item.index > self.snapshot_index:
                    raise StorageCorruption(
                        path, offset,
                        f"the log was replaced by snapshot {item.index}, "
                        f"but the newest snapshot file is {self.snapshot_index}",
                    )
                self.log.entries.clear()
                self.marker = item
                top = max(top, item.index)
        return top


def replay(wal_dir: Path, snapshot_index: int) -> Replayed:
    """Read every segment; raises ``StorageCorruption`` on damage that is not
    a torn tail (which is reported, for the caller to truncate)."""
    state = _Replay(snapshot_index)
    segments: list[SegmentInfo] = []
    torn: TornTail | None = None
    found = list_segments(wal_dir)
    for n, (seq, path) in enumerate(found):
        scan = scan_segment(path, is_last=n == len(found) - 1)
        top = 0
        for offset, items in scan.frames:
            top = max(top, state.frame(path, offset, items))
        segments.append(SegmentInfo(seq, path, scan.valid_end, top, len(scan.frames)))
        torn = scan.torn
    return Replayed(state.hard_state, state.log, state.marker, segments, torn)
