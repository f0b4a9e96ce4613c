"""WAL segment files: naming, reading one back, appending to the last one.

Segments are ``wal/<seq, 20 digits>-<first index, 20 digits>.seg``; ``seq``
counts up from 1 without gaps (only a prefix is ever removed), ``first
index`` is the log's last index + 1 when the segment was opened, for people
reading a listing. Every segment starts with a frame holding the hard state
of that moment, so removing older segments never loses it. Frames never span
segments; a new segment is opened when the current one has reached
``segment_bytes``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import StorageCorruption
from .fsio import Syncer, write_all
from .records import Item, check_frame, decode_items, find_intact_frame

_NAME = re.compile(r"^(\d{20})-(\d{20})\.seg$")


def segment_name(seq: int, first_index: int) -> str:
    return f"{seq:020d}-{first_index:020d}.seg"


def list_segments(wal_dir: Path) -> list[tuple[int, Path]]:
    """``(seq, path)`` in order; a missing segment in the middle is corruption."""
    found = sorted(
        (int(m.group(1)), wal_dir / m.group(0))
        for m in (_NAME.match(p.name) for p in wal_dir.iterdir())
        if m
    )
    for (seq, _), (next_seq, path) in zip(found, found[1:]):
        if next_seq != seq + 1:
            raise StorageCorruption(path, None, f"segment {seq + 1} is missing before it")
    return found


@dataclass(frozen=True, slots=True)
class TornTail:
    """A damaged end of the last segment that nothing valid follows."""

    path: Path
    offset: int
    size: int
    reason: str


@dataclass(frozen=True, slots=True)
class SegmentScan:
    frames: list[tuple[int, list[Item]]]  # (byte offset, items) of each intact frame
    valid_end: int
    torn: TornTail | None


def scan_segment(path: Path, *, is_last: bool) -> SegmentScan:
    """Every intact frame of ``path``. A bad frame is a torn write only at
    the tail of the last segment with no intact frame after it; anywhere
    else it is damage to data that was acknowledged, and we refuse."""
    buf = path.read_bytes()
    frames: list[tuple[int, list[Item]]] = []
    offset = 0
    while offset < len(buf):
        checked = check_frame(buf, offset)
        if isinstance(checked, str):
            return SegmentScan(frames, offset, _torn_or_corrupt(path, buf, offset, checked, is_last))
        end, payload = checked
        try:
            frames.append((offset, decode_items(payload)))
        except ValueError as exc:
            raise StorageCorruption(path, offset, str(exc)) from exc
        offset = end
    return SegmentScan(frames, offset, None)


def _torn_or_corrupt(path: Path, buf: bytes, offset: int, reason: str, is_last: bool) -> TornTail:
    if not is_last:
        raise StorageCorruption(path, offset, f"{reason} in a segment that later segments follow")
    try:
        later = find_intact_frame(buf, offset + 1)
    except ValueError as exc:
        raise StorageCorruption(path, offset, f"{reason}, and {exc}") from exc
    if later is not None:
        raise StorageCorruption(
            path, offset, f"{reason}, yet an intact record follows at byte offset {later}"
        )
    return TornTail(path, offset, len(buf), reason)


class SegmentWriter:
    """The open last segment: appends a buffer with one write and one fsync."""

    __slots__ = ("seq", "path", "size", "max_index", "_fd")

    def __init__(self, seq: int, path: Path, size: int, max_index: int, *, create: bool) -> None:
        flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT | os.O_EXCL if create else 0)
        self._fd = os.open(path, flags, 0o644)
        self.seq = seq
        self.path = path
        self.size = size
        # Highest entry (or marker) index written here: the segment may go
        # once a snapshot covers it.
        self.max_index = max_index

    def append(self, data: bytes, max_index: int, syncer: Syncer) -> None:
        write_all(self._fd, data)
        self.size += len(data)
        self.max_index = max(self.max_index, max_index)
        syncer.file(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
