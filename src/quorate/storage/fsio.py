"""The few file-system moves durability rests on, each fsync timed.

``Syncer`` is the only place that calls fsync, so the fsync latency metric
and the benchmark-only ``fsync=False`` switch live in one spot. A file made
durable by rename also needs its directory fsynced, or the new name can
vanish in a power cut (ext4, XFS).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger("quorate.storage")

_datasync = getattr(os, "fdatasync", os.fsync)


class Syncer:
    """Runs (or, for benchmarks, skips) fsyncs and reports each duration."""

    __slots__ = ("enabled", "on_fsync", "count", "total_seconds", "last_seconds")

    def __init__(self, enabled: bool, on_fsync: Callable[[float], None] | None) -> None:
        self.enabled = enabled
        self.on_fsync = on_fsync
        self.count = 0
        self.total_seconds = 0.0
        self.last_seconds = 0.0

    def file(self, fd: int) -> None:
        """Data and the size of the file (fdatasync is enough for appends)."""
        self._timed(_datasync, fd)

    def directory(self, path: Path) -> None:
        """Names created, renamed or removed in ``path``."""
        if not self.enabled:
            return
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            self._timed(os.fsync, fd)
        finally:
            os.close(fd)

    def _timed(self, sync: Callable[[int], None], fd: int) -> None:
        if not self.enabled:
            return
        start = time.perf_counter()
        sync(fd)
        elapsed = time.perf_counter() - start
        self.count += 1
        self.total_seconds += elapsed
        self.last_seconds = elapsed
        if self.on_fsync is not None:
            try:
                self.on_fsync(elapsed)
            except Exception:  # a metrics hook must not fail a durable write
                log.exception("on_fsync hook failed")


def write_all(fd: int, data: bytes | memoryview) -> None:
    """One write call for the whole buffer in practice; loop on short writes."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def atomic_write(path: Path, chunks: Iterable[bytes], syncer: Syncer) -> None:
    """Replace ``path`` all at once: temp file in the same directory, write,
    fsync, rename, fsync the directory. A crash leaves the old file or the
    new one, plus at most a stray ``.tmp`` that readers ignore."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for chunk in chunks:
            write_all(fd, chunk)
        syncer.file(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    syncer.directory(path.parent)


def truncate_durably(path: Path, size: int, syncer: Syncer) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        syncer.file(fd)
    finally:
        os.close(fd)
