"""Durable storage on local files: WAL segments, snapshot files, one lock.

Layout of the data directory (the byte formats are in ``records.py``,
``snapshots.py`` and docs/storage.md)::

    LOCK                      flock'ed while open: one process per directory
    wal/<seq>-<first>.seg     frames; each save() appends one, then fsyncs
    snap/<index>.snap         newest snapshot (plus one older), atomic writes

The hard state lives in the WAL, in the same frame as the entries it goes
with, so one ``save()`` costs one write and one fsync (two more when it
carries a leader's snapshot, one more when it opens a segment). Opening
replays everything; afterwards ``load()`` answers from memory (the entries
are the very objects the core holds, so this costs no copy).

Not thread-safe: one caller at a time (the runtime uses a single IO thread).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from quorate.raft.types import Entry, HardState, PersistentState, Snapshot

from .base import check_compact, check_save
from .errors import StorageCorruption, StorageError
from .fsio import Syncer, truncate_durably
from .records import Item, SnapshotMarker, encode_frame
from .replay import LogMirror, Replayed, replay
from .snapshots import Origin, SnapshotDir
from .wal import SegmentWriter, segment_name

log = logging.getLogger("quorate.storage")

DEFAULT_SEGMENT_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class _Sealed:
    """A segment no longer written to; it goes once a snapshot covers
    ``max_index`` (its highest entry or marker index) and all before it."""

    path: Path
    max_index: int


class FileStorage:
    """The ``Storage`` contract on a directory; see the module docstring."""

    def __init__(
        self,
        dir: Path | str,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = True,
        on_fsync: Callable[[float], None] | None = None,
    ) -> None:
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes must be positive, not {segment_bytes}")
        self.dir = Path(dir)
        self._segment_bytes = segment_bytes
        self._syncer = Syncer(fsync, on_fsync)
        self._wal_dir = self.dir / "wal"
        self._snaps = SnapshotDir(self.dir / "snap", self._syncer)
        self._closed = False
        self._failed: OSError | None = None
        self._writer: SegmentWriter | None = None
        self._sealed: list[_Sealed] = []  # older segments, oldest first
        self._next_seq = 1
        self._snapshot: Snapshot | None = None
        self._hard_state = HardState()
        self._log = LogMirror()
        if not fsync:
            log.warning("%s: fsync is OFF; nothing written is durable (benchmarks only)", self.dir)
        self._lock_fd = _lock(self.dir, self._syncer)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    # -- reads ---------------------------------------------------------------

    @property
    def snapshot_index(self) -> int:
        return self._log.base

    @property
    def last_index(self) -> int:
        return self._log.last_index

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    @property
    def fsync_count(self) -> int:
        return self._syncer.count

    @property
    def fsync_seconds_total(self) -> float:
        return self._syncer.total_seconds

    def load(self) -> PersistentState:
        self._check_usable()
        return PersistentState(self._hard_state, self._snapshot, tuple(self._log.entries))

    # -- writes --------------------------------------------------------------

    def save(self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None) -> None:
        self._check_usable()
        check_save(self._log.base, self._log.last_index, hard_state, entries, snapshot)
        if hard_state is None and not entries and snapshot is None:
            return
        items: list[Item] = []
        with self._guard():
            if snapshot is not None:
                # Durable before the marker that makes it the log's base.
                self._snaps.write(snapshot, Origin.LEADER)
                items.append(SnapshotMarker(snapshot.meta.index, snapshot.meta.term))
            items.extend(entries)
            if hard_state is not None:
                items.append(hard_state)
            self._append(items)
            if snapshot is not None:
                self._snapshot = snapshot
                self._log.reset(snapshot.meta.index)
            for entry in entries:
                self._log.put(entry)
            if hard_state is not None:
                self._hard_state = hard_state
            if snapshot is not None:
                self._snaps.prune()

    def compact(self, snapshot: Snapshot) -> None:
        self._check_usable()
        if not check_compact(self._log.base, self._log.last_index, self._log.term_at, snapshot):
            return
        index = snapshot.meta.index
        with self._guard():
            self._snaps.write(snapshot, Origin.LOCAL)
            self._snapshot = snapshot
            self._log.compact(index)
            # Only a prefix goes (see replay.py), oldest first. The directory
            # fsync keeps a crash from bringing back an older segment without
            # a newer one, which would read as a missing segment.
            removed = 0
            while self._sealed and self._sealed[0].max_index <= index:
                gone = self._sealed.pop(0)
                gone.path.unlink()
                removed += 1
                log.info("removed WAL segment %s: snapshot %d covers it", gone.path.name, index)
            if removed:
                self._syncer.directory(self._wal_dir)
            self._snaps.prune()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.close()
        os.close(self._lock_fd)

    def __enter__(self) -> FileStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------

    def _append(self, items: list[Item]) -> None:
        """One frame, one write, one fsync; a new segment first if due."""
        frame = encode_frame(items)
        top = max((i.index for i in items if not isinstance(i, HardState)), default=0)
        writer = self._writer
        if writer is not None and writer.size < self._segment_bytes:
            writer.append(frame, top, self._syncer)
            return
        writer = self._new_segment()
        writer.append(encode_frame([self._hard_state]) + frame, top, self._syncer)
        self._syncer.directory(self._wal_dir)

    def _new_segment(self) -> SegmentWriter:
        old = self._writer
        if old is not None:
            old.close()
            self._sealed.append(_Sealed(old.path, old.max_index))
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        path = self._wal_dir / segment_name(seq, self._log.last_index + 1)
        self._writer = SegmentWriter(seq, path, 0, 0, create=True)
        return self._writer

    def _open(self) -> None:
        """Check everything first; only then touch the files."""
        newest = self._snaps.newest()
        snapshot, origin = newest if newest is not None else (None, None)
        replayed = replay(self._wal_dir, snapshot.meta.index if snapshot else 0)
        self._snapshot = snapshot
        self._hard_state = replayed.hard_state
        self._log = replayed.log
        marker = None
        if snapshot is not None and origin is Origin.LEADER:
            marker = SnapshotMarker(snapshot.meta.index, snapshot.meta.term)
            if replayed.last_marker == marker:
                marker = None
            else:  # crash between the snapshot file and its WAL record
                self._log.reset(marker.index)
        if self._hard_state.commit > self._log.last_index:
            raise StorageCorruption(
                self._wal_dir, None,
                f"the hard state commits index {self._hard_state.commit} but the recovered log "
                f"ends at {self._log.last_index}: acknowledged entries are missing",
            )
        self._snaps.remove_temp_files()
        self._recover_tail(replayed)
        if marker is not None:
            log.warning("completing the interrupted install of snapshot %d", marker.index)
            self._append([marker])

    def _recover_tail(self, replayed: Replayed) -> None:
        segments = list(replayed.segments)
        torn = replayed.torn
        if torn is not None:
            log.warning(
                "torn write at the tail of %s at byte offset %d (%s): truncating %d bytes",
                torn.path, torn.offset, torn.reason, torn.size - torn.offset,
            )
            truncate_durably(torn.path, torn.offset, self._syncer)
        if segments:
            self._next_seq = segments[-1].seq + 1
        if segments and segments[-1].frames == 0:
            # Opened but its first write never completed: it has no hard-state
            # header, so it must not be written to; a new one will be made.
            empty = segments.pop()
            log.warning("removing %s: it holds no complete record", empty.path)
            empty.path.unlink()
            self._syncer.directory(self._wal_dir)
            self._next_seq = empty.seq
        if segments:
            last = segments.pop()
            self._writer = SegmentWriter(last.seq, last.path, last.size, last.max_index, create=False)
        self._sealed = [_Sealed(s.path, s.max_index) for s in segments]

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """After a failed write or fsync the file's state is unknown (and a
        retried fsync may lie): refuse all further use until reopened."""
        try:
            yield
        except OSError as exc:
            self._failed = exc
            raise

    def _check_usable(self) -> None:
        if self._closed:
            raise StorageError(f"{self.dir}: storage is closed")
        if self._failed is not None:
            raise StorageError(
                f"{self.dir}: an earlier write failed ({self._failed}); reopen to recover"
            )


def _lock(dir: Path, syncer: Syncer) -> int:
    """Create the directory layout if missing and take the exclusive lock."""
    new_dir = not dir.is_dir()
    created = new_dir or not (dir / "wal").is_dir() or not (dir / "snap").is_dir()
    for sub in ("wal", "snap"):
        (dir / sub).mkdir(parents=True, exist_ok=True)
    if new_dir:
        syncer.directory(dir.parent)
    if created:
        syncer.directory(dir)
    fd = os.open(dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StorageError(f"{dir} is in use by another process (LOCK is held)") from None
    return fd
