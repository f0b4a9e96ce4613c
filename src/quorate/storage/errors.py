"""The two ways storage says no, kept apart because they call for different
actions: a ``StorageError`` is the caller's bug (fix the code), a
``StorageCorruption`` is damage on disk (an operator must look; the node
refuses to start rather than run with silently lost data)."""

from __future__ import annotations

from pathlib import Path


class StorageError(Exception):
    """A write that would leave the log inconsistent, or use after close."""


class StorageCorruption(Exception):
    """The files on disk cannot be trusted; names the file and byte offset."""

    def __init__(self, path: Path, offset: int | None, reason: str) -> None:
        where = str(path) if offset is None else f"{path} at byte offset {offset}"
        super().__init__(f"storage corrupt: {where}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason
