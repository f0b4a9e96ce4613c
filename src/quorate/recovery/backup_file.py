"""Local backup files: the format, and the directory that keeps them.

Format (all integers big-endian)::

    magic        8 bytes   b"QRBK\\r\\n\\x1a\\n"  (a line-ending or text-mode
                           mangling breaks it, as PNG's does)
    version      u16       1
    flags        u16       0 (reserved)
    header_len   u32
    body_len     u64
    header       header_len bytes, msgpack map {counter, wall_time,
                 cluster_id, raft_index, node, revision, keys}
    body         body_len bytes, msgpack array of rows
                 [key, value, create_revision, mod_revision, version]
                 in key order, the keys of :func:`keys.in_backup` only
    crc32        u32       zlib.crc32 of everything from ``version`` to the
                           end of the body

The reader checks, in this order, the magic, the version, the lengths
against the file's size (a short file is *truncated*, a long one has
trailing bytes), the CRC, and then every field and row; any failure raises
:class:`BackupError` naming the file, and nothing is half-read.

A :class:`BackupDir` holds ``backup-<counter>.backup`` files. Writing goes
to a temp file that is fsynced, renamed into place, and the directory
fsynced, so a crash leaves either the old set of files or the new one.
A backup is never replaced by an older one: before writing counter C, every
backup with a counter above C is renamed to
``orphan-<counter>-<UTC time of the move>.backup`` and logged at WARNING
(seed 002: "move it to a name that won't get overwritten ... and log the
fact so somebody knows it's there"). Retention keeps the newest ``keep``
backups; orphans are never deleted by quorate.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from quorate.kv import CommandError, Put

log = logging.getLogger("quorate.recovery")

MAGIC = b"QRBK\r\n\x1a\n"
VERSION = 1
_PRELUDE = struct.Struct(">HHIQ")
_CRC = struct.Struct(">I")
_FIXED = len(MAGIC) + _PRELUDE.size + _CRC.size
MAX_HEADER_BYTES = 64 << 10

BACKUP_SUFFIX = ".backup"
_BACKUP_NAME = re.compile(r"^backup-(\d+)\.backup$")
_ORPHAN_NAME = re.compile(r"^orphan-(\d+)-[0-9TZ]+(?:-\d+)?\.backup$")
_TMP_PREFIX = ".tmp-backup-"

Row = tuple[str, str, int, int, int]


class BackupError(Exception):
    """A backup file cannot be used; the message names the file and why."""

    def __init__(self, source: str | Path, reason: str) -> None:
        super().__init__(f"{source}: not a usable quorate backup: {reason}")
        self.source = str(source)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class BackupHeader:
    """Who took a backup, when, and of which state. ``counter`` comes from
    the replicated store (an atomic increment), so a higher counter always
    means a later backup of the same store; ``wall_time`` is for people."""

    counter: int
    wall_time: float
    cluster_id: str
    raft_index: int
    node: str
    revision: int = 0
    keys: int = 0

    def __post_init__(self) -> None:
        if not _is_int(self.counter) or self.counter < 1:
            raise ValueError(f"counter must be an int >= 1, got {self.counter!r}")
        if not isinstance(self.wall_time, (int, float)) or isinstance(self.wall_time, bool):
            raise ValueError(f"wall_time must be a number, got {self.wall_time!r}")
        for name in ("raft_index", "revision", "keys"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if not isinstance(self.cluster_id, str) or not isinstance(self.node, str):
            raise ValueError("cluster_id and node must be strings")

    def to_json(self) -> dict[str, Any]:
        return {"counter": self.counter, "wall_time": self.wall_time, "cluster_id": self.cluster_id,
                "raft_index": self.raft_index, "node": self.node, "revision": self.revision,
                "keys": self.keys}

    @classmethod
    def from_json(cls, raw: Any) -> BackupHeader:
        if not isinstance(raw, dict):
            raise ValueError("the header is not a map")
        missing = [k for k in ("counter", "wall_time", "cluster_id", "raft_index", "node") if k not in raw]
        if missing:
            raise ValueError(f"the header lacks {', '.join(missing)}")
        return cls(counter=raw["counter"], wall_time=raw["wall_time"], cluster_id=raw["cluster_id"],
                   raft_index=raw["raft_index"], node=raw["node"], revision=raw.get("revision", 0),
                   keys=raw.get("keys", 0))


@dataclass(frozen=True, slots=True)
class Backup:
    header: BackupHeader
    rows: tuple[Row, ...] = field(repr=False)

    @property
    def counter(self) -> int:
        return self.header.counter

    def items(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.rows]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- encoding ------------------------------------------------------------------


def encode(header: BackupHeader, rows: Sequence[Row]) -> bytes:
    """The bytes of a backup file (see the module docstring)."""
    head = msgpack.packb(header.to_json(), use_bin_type=True)
    body = msgpack.packb(list(rows), use_bin_type=True)  # a row (a tuple) packs as an array
    if len(head) > MAX_HEADER_BYTES:
        raise ValueError("backup header too large")
    prelude = _PRELUDE.pack(VERSION, 0, len(head), len(body))
    crc = zlib.crc32(body, zlib.crc32(head, zlib.crc32(prelude)))
    return b"".join((MAGIC, prelude, head, body, _CRC.pack(crc)))


def decode(data: bytes, source: str | Path = "<bytes>") -> Backup:
    """A :class:`Backup` from file bytes; :class:`BackupError` (naming
    ``source``) for anything truncated, corrupt or of another format."""
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        if MAGIC.startswith(data[:len(MAGIC)]) and len(data) < len(MAGIC):
            raise BackupError(source, f"truncated: {len(data)} bytes, shorter than the file magic")
        raise BackupError(source, "wrong magic: this is not a quorate backup file")
    if len(data) < len(MAGIC) + _PRELUDE.size:
        raise BackupError(source, f"truncated: {len(data)} bytes, the fixed header alone needs "
                                  f"{len(MAGIC) + _PRELUDE.size}")
    version, flags, head_len, body_len = _PRELUDE.unpack_from(data, len(MAGIC))
    if version != VERSION:
        raise BackupError(source, f"format version {version}; this quorate reads version {VERSION}")
    expected = _FIXED + head_len + body_len
    if len(data) < expected:
        raise BackupError(source, f"truncated: {len(data)} bytes, the header says {expected}")
    if len(data) > expected:
        raise BackupError(source, f"corrupt: {len(data) - expected} bytes after the end of the backup")
    start = len(MAGIC)
    (stored_crc,) = _CRC.unpack_from(data, expected - _CRC.size)
    if zlib.crc32(data[start:expected - _CRC.size]) != stored_crc:
        raise BackupError(source, "corrupt: checksum mismatch (the file was damaged after it was written)")
    if flags != 0 or head_len > MAX_HEADER_BYTES:
        raise BackupError(source, "corrupt: impossible header fields")
    head_at = start + _PRELUDE.size
    body_at = head_at + head_len
    try:
        header = BackupHeader.from_json(_unpack(data[head_at:body_at]))
        rows = _rows(_unpack(data[body_at:body_at + body_len]))
    except (ValueError, TypeError) as exc:
        raise BackupError(source, f"corrupt: {exc}") from None
    return Backup(header, rows)


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # the unpacker's errors vary by build; all mean bad bytes
        raise ValueError(f"undecodable msgpack ({type(exc).__name__})") from None


def _rows(raw: Any) -> tuple[Row, ...]:
    if not isinstance(raw, list):
        raise ValueError("the body is not a list of rows")
    out: list[Row] = []
    previous = None
    for n, row in enumerate(raw):
        if not isinstance(row, list) or len(row) != 5:
            raise ValueError(f"row {n} is not [key, value, create, mod, version]")
        key, value, create, mod, version = row
        try:
            Put(key=key, value=value)
        except CommandError as exc:
            raise ValueError(f"row {n}: {exc}") from None
        if not all(_is_int(x) and x >= 0 for x in (create, mod, version)):
            raise ValueError(f"row {n}: revisions must be ints >= 0")
        if previous is not None and key <= previous:
            raise ValueError(f"row {n}: keys not in strictly ascending order")
        previous = key
        out.append((key, value, create, mod, version))
    return tuple(out)


def read(path: Path) -> Backup:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BackupError(path, f"cannot read it: {exc.strerror or exc}") from None
    return decode(data, path)


# -- the directory ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriteReport:
    path: Path
    orphaned: tuple[Path, ...] = ()
    removed: tuple[Path, ...] = ()


def backup_name(counter: int) -> str:
    return f"backup-{counter:012d}{BACKUP_SUFFIX}"


class BackupDir:
    """The backups of one node (see the module docstring). Not safe for two
    writers at once: the agent's backup loop is the only one while it runs."""

    def __init__(self, path: Path, *, keep: int = 5, fsync: bool = True,
                 wall_clock: Callable[[], float] = time.time) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.path = Path(path)
        self.keep = keep
        self.fsync = fsync
        self._wall_clock = wall_clock

    def entries(self) -> list[tuple[int, Path]]:
        """(counter, path) of every backup file, oldest first (by name:
        the files are not opened)."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            m = _BACKUP_NAME.match(name)
            if m:
                found.append((int(m.group(1)), self.path / name))
        return sorted(found)

    def orphans(self) -> list[Path]:
        try:
            return sorted(self.path / n for n in os.listdir(self.path) if _ORPHAN_NAME.match(n))
        except FileNotFoundError:
            return []

    def newest(self) -> Backup | None:
        """The valid backup with the highest counter. A damaged file is
        skipped with a WARNING naming it (and left where it is)."""
        for counter, path in reversed(self.entries()):
            try:
                backup = read(path)
            except BackupError as exc:
                log.warning("skipping a damaged backup: %s", exc)
                continue
            if backup.counter != counter:
                log.warning("skipping %s: its header says counter %d", path, backup.counter)
                continue
            return backup
        return None

    def write(self, header: BackupHeader, rows: Sequence[Row]) -> WriteReport:
        return self.write_bytes(header.counter, encode(header, rows))

    def write_bytes(self, counter: int, data: bytes) -> WriteReport:
        """Atomically store the backup ``data`` (already encoded) under
        ``counter``, after moving any newer backup aside as an orphan."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temps()
        orphaned = tuple(self.orphan_newer_than(counter, why=f"a backup with counter {counter} is being written"))
        final = self.path / backup_name(counter)
        tmp = self.path / f"{_TMP_PREFIX}{counter}-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        self._sync_dir()
        return WriteReport(final, orphaned, tuple(self.retain()))

    def orphan_newer_than(self, counter: int, *, why: str) -> list[Path]:
        """Rename every backup with a counter above ``counter`` to an orphan
        name; returns the new paths."""
        moved = []
        for n, path in self.entries():
            if n <= counter:
                continue
            target = self._orphan_path(n)
            os.replace(path, target)
            moved.append(target)
            log.warning("kept the newer backup %d as the orphan %s (%s; the store's state is older than it): "
                        "it is never deleted by quorate; inspect it with `quorate backup inspect %s`",
                        n, target, why, target)
        if moved:
            self._sync_dir()
        return moved

    def retain(self) -> list[Path]:
        """Delete all but the newest ``keep`` backups (orphans are kept)."""
        entries = self.entries()
        removed = [p for _, p in entries[:-self.keep]] if len(entries) > self.keep else []
        for path in removed:
            path.unlink(missing_ok=True)
        if removed:
            self._sync_dir()
        return removed

    def _orphan_path(self, counter: int) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._wall_clock()))
        base = f"orphan-{counter:012d}-{stamp}"
        target = self.path / f"{base}{BACKUP_SUFFIX}"
        n = 1
        while target.exists():
            target = self.path / f"{base}-{n}{BACKUP_SUFFIX}"
            n += 1
        return target

    def _remove_stale_temps(self) -> None:
        for name in os.listdir(self.path):
            if name.startswith(_TMP_PREFIX):
                (self.path / name).unlink(missing_ok=True)

    def _sync_dir(self) -> None:
        if not self.fsync:
            return
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def rows_of(kvs: Iterable[Any], keep: Callable[[str], bool]) -> list[Row]:
    """Backup rows from the store's entries, keeping the keys ``keep``
    accepts. A ``KeyValue`` is a row already (key, value, create_revision,
    mod_revision, version): no copy per key."""
    return [kv for kv in kvs if keep(kv.key)]
