"""WAL frames: the unit of atomicity, checksum and group commit.

One ``save()`` writes exactly one frame (the others are the hard-state
header that opens each segment and the marker written at open to finish an
interrupted snapshot install), so a crash leaves either the whole batch or
none of it, and the checksum covers what one fsync made durable. That is what makes the recovery rule sound: a bad frame with a
valid frame after it cannot be a torn write, because the later frame was
only written after the earlier one's fsync returned.

Layout of a frame (little endian)::

    magic   4 bytes   b"\\xd7QW1"  (format version 1)
    length  u32       payload size in bytes
    crc     u32       zlib.crc32 over the 4 length bytes, then the payload
    payload msgpack   array of items, each an array tagged by its first field:
                      [1, term, index, kind, data]  an Entry
                      [2, term, vote|nil, commit]   a HardState
                      [3, index, term]              a SnapshotMarker
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import msgpack

from quorate.raft.types import Entry, EntryKind, HardState

from .errors import StorageError

MAGIC = b"\xd7QW1"
_HEADER = struct.Struct("<4sII")
HEADER_SIZE = _HEADER.size
MAX_PAYLOAD = (1 << 31) - 1
_ENTRY, _HARD_STATE, _MARKER = 1, 2, 3
_KINDS = {kind.value: kind for kind in EntryKind}
_SCAN_BUDGET_PER_BYTE = 8  # bytes checksummed per byte of buffer by find_intact_frame
_SCAN_BUDGET_BASE = 16 << 20


@dataclass(frozen=True, slots=True)
class SnapshotMarker:
    """The point in the WAL where a leader's snapshot replaced the log: every
    entry written before it is gone."""

    index: int
    term: int


Item = Entry | HardState | SnapshotMarker


def encode_frame(items: Iterable[Item]) -> bytes:
    payload: bytes = msgpack.packb([_encode_item(item) for item in items], use_bin_type=True)
    if len(payload) > MAX_PAYLOAD:
        raise StorageError(f"a batch of {len(payload)} bytes exceeds the frame limit {MAX_PAYLOAD}")
    length = len(payload).to_bytes(4, "little")
    crc = zlib.crc32(payload, zlib.crc32(length))
    return MAGIC + length + crc.to_bytes(4, "little") + payload


def _encode_item(item: Item) -> tuple[object, ...]:
    if isinstance(item, Entry):
        return (_ENTRY, item.term, item.index, item.kind.value, item.data)
    if isinstance(item, HardState):
        return (_HARD_STATE, item.term, item.vote, item.commit)
    return (_MARKER, item.index, item.term)


def check_frame(buf: bytes, offset: int) -> tuple[int, memoryview] | str:
    """``(end, payload)`` of an intact frame at ``offset``, else why not."""
    if len(buf) - offset < HEADER_SIZE:
        return "partial record header"
    magic, length, crc = _HEADER.unpack_from(buf, offset)
    if magic != MAGIC:
        return "bad record magic"
    start = offset + HEADER_SIZE
    end = start + length
    if end > len(buf):
        return f"record of {length} bytes runs past the end of the file"
    view = memoryview(buf)
    payload = view[start:end]
    if zlib.crc32(payload, zlib.crc32(view[offset + 4 : offset + 8])) != crc:
        return "CRC mismatch"
    return end, payload


def find_intact_frame(buf: bytes, start: int) -> int | None:
    """Offset of the first intact frame at or after ``start``, if any.

    Each candidate costs a CRC over the length its header claims, so bytes
    full of record-like headers (entry data is the clients') would make the
    search quadratic: hours for one damaged segment. Past a budget linear in
    the buffer it raises ``ValueError`` instead, and the caller refuses to
    start (the safe side: it cannot tell a torn write from damage)."""
    budget = _SCAN_BUDGET_PER_BYTE * len(buf) + _SCAN_BUDGET_BASE
    pos = buf.find(MAGIC, start)
    while pos != -1:
        if len(buf) - pos >= HEADER_SIZE:
            length = _HEADER.unpack_from(buf, pos)[1]
            if pos + HEADER_SIZE + length <= len(buf):  # only then is a CRC computed
                budget -= length
                if budget < 0:
                    raise ValueError("too many record-like headers to check after it")
        if not isinstance(check_frame(buf, pos), str):
            return pos
        pos = buf.find(MAGIC, pos + 1)
    return None


def decode_items(payload: memoryview) -> list[Item]:
    """The items of an intact frame. Raises ``ValueError`` when the payload
    passed its checksum but is not ours (another version, or a bug)."""
    try:
        raw = msgpack.unpackb(payload, raw=False, use_list=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ValueError(f"undecodable record payload ({exc})") from exc
    if not isinstance(raw, tuple):
        raise ValueError("record payload is not an array")
    return [_decode_item(item) for item in raw]


def _nat(value: object) -> bool:
    """An int >= 0: terms and indices are never negative, and a bool is not
    an int here (``True`` must not read as index 1)."""
    return type(value) is int and value >= 0


def _decode_item(item: object) -> Item:
    # Plain checks rather than ``match``: this runs once per entry on replay.
    if type(item) is tuple and item:
        tag = item[0]
        if tag == _ENTRY and len(item) == 5:
            _, term, index, kind, data = item
            if _nat(term) and _nat(index) and type(data) is bytes:
                if type(kind) is int and kind in _KINDS:
                    return Entry(term, index, _KINDS[kind], data)
        elif tag == _HARD_STATE and len(item) == 4:
            _, term, vote, commit = item
            if _nat(term) and (vote is None or type(vote) is str) and _nat(commit):
                return HardState(term, vote, commit)
        elif tag == _MARKER and len(item) == 3:
            _, index, term = item
            if _nat(index) and _nat(term):
                return SnapshotMarker(index, term)
    raise ValueError(f"unknown record item {item!r:.80}")
