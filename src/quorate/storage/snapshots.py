"""Snapshot files: one state-machine image per file, written atomically.

File ``snap/<index, 20 digits>.snap`` (little endian)::

    magic     4 bytes  b"QSNP"
    version   u8       1
    (pad)     3 bytes
    meta_len  u32
    data_len  u64
    crc       u32      zlib.crc32 over the 20 header bytes before it,
                       then meta, then data
    meta      msgpack  [index, term, [voters...], [learners...], origin]
    data      bytes    opaque to storage (the state machine's image)

``origin`` says whether the leader sent it (it replaced the whole log, and a
``SnapshotMarker`` in the WAL records when) or the node took it itself
(entries after it stay). The newest file is the node's snapshot; one older
file is kept for forensics, never read. A damaged newest file refuses to
start: the WAL before it may already be gone, so falling back is not safe.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import struct
import zlib
from pathlib import Path

import msgpack

from quorate.raft.types import ConfState, Snapshot, SnapshotMeta

from .errors import StorageCorruption
from .fsio import Syncer, atomic_write

log = logging.getLogger("quorate.storage")

MAGIC = b"QSNP"
VERSION = 1
_HEADER = struct.Struct("<4sB3xIQI")
_CRC_AT = _HEADER.size - 4
_NAME = re.compile(r"^(\d{20})\.snap$")
KEEP = 2


class Origin(enum.Enum):
    LEADER = "leader"  # installed from the leader: replaced the log
    LOCAL = "local"  # taken by this node: compacted the log


def snapshot_name(index: int) -> str:
    return f"{index:020d}.snap"


def encode_snapshot(snapshot: Snapshot, origin: Origin) -> tuple[bytes, bytes]:
    """Header-and-meta, then data (kept apart so a big image is not copied)."""
    m = snapshot.meta
    meta = msgpack.packb(
        [m.index, m.term, sorted(m.conf.voters), sorted(m.conf.learners), origin.value],
        use_bin_type=True,
    )
    head = _HEADER.pack(MAGIC, VERSION, len(meta), len(snapshot.data), 0)[:_CRC_AT]
    crc = zlib.crc32(snapshot.data, zlib.crc32(meta, zlib.crc32(head)))
    return head + crc.to_bytes(4, "little") + meta, snapshot.data


def decode_snapshot(path: Path, buf: bytes) -> tuple[Snapshot, Origin]:
    if len(buf) < _HEADER.size:
        raise StorageCorruption(path, 0, "snapshot file shorter than its header")
    magic, version, meta_len, data_len, crc = _HEADER.unpack_from(buf)
    if magic != MAGIC or version != VERSION:
        raise StorageCorruption(path, 0, f"not a version {VERSION} snapshot file")
    meta_end = _HEADER.size + meta_len
    if meta_end + data_len != len(buf):
        raise StorageCorruption(
            path, len(buf), f"snapshot file is {len(buf)} bytes, its header says {meta_end + data_len}"
        )
    view = memoryview(buf)
    if zlib.crc32(view[_HEADER.size :], zlib.crc32(view[:_CRC_AT])) != crc:
        raise StorageCorruption(path, _CRC_AT, "snapshot CRC mismatch")
    try:
        index, term, voters, learners, origin = msgpack.unpackb(view[_HEADER.size : meta_end])
        meta = SnapshotMeta(_nat(index), _nat(term), ConfState(_ids(voters), _ids(learners)))
        return Snapshot(meta, bytes(view[meta_end:])), Origin(origin)
    except Exception as exc:  # CRC passed: written by another version or a bug
        raise StorageCorruption(path, _HEADER.size, f"undecodable snapshot meta ({exc})") from exc


def _nat(value: object) -> int:
    """An index or term: an int >= 0 (not a bool, not a string)."""
    if type(value) is not int or value < 0:
        raise ValueError(f"{value!r:.40} is not an index or term")
    return value


def _ids(value: object) -> frozenset[str]:
    """Voters or learners: a list of node ids (``frozenset`` alone would
    turn a string into its characters and a map into its keys)."""
    if type(value) is not list or not all(type(m) is str for m in value):
        raise ValueError(f"{value!r:.40} is not a list of node ids")
    return frozenset(value)


class SnapshotDir:
    """The ``snap/`` directory: newest snapshot, atomic writes, retention."""

    __slots__ = ("path", "_syncer")

    def __init__(self, path: Path, syncer: Syncer) -> None:
        self.path = path
        self._syncer = syncer

    def remove_temp_files(self) -> None:
        """A ``.tmp`` is a write that never reached its rename: not durable,
        never acknowledged, safe to drop."""
        for tmp in sorted(self.path.glob("*.tmp")):
            log.warning("removing %s: a snapshot write interrupted before its rename", tmp)
            tmp.unlink()

    def indices(self) -> list[int]:
        found = (_NAME.match(p.name) for p in self.path.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def newest(self) -> tuple[Snapshot, Origin] | None:
        indices = self.indices()
        if not indices:
            return None
        path = self.path / snapshot_name(indices[-1])
        snapshot, origin = decode_snapshot(path, path.read_bytes())
        if snapshot.meta.index != indices[-1]:
            raise StorageCorruption(path, None, f"holds index {snapshot.meta.index}, not its name's")
        return snapshot, origin

    def write(self, snapshot: Snapshot, origin: Origin) -> None:
        path = self.path / snapshot_name(snapshot.meta.index)
        atomic_write(path, encode_snapshot(snapshot, origin), self._syncer)

    def prune(self) -> None:
        """Keep the newest ``KEEP`` files. Unlinks need no fsync: a file that
        comes back after a crash is older than the newest and never read."""
        for index in self.indices()[:-KEEP]:
            os.unlink(self.path / snapshot_name(index))
