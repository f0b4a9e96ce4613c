"""Durable storage of a node's Raft state: the ``Storage`` contract and its
file-backed implementation (WAL segments with per-record CRC and group
commit, atomic snapshot files). The format is specified in docs/storage.md.
"""

from .base import Storage, check_compact, check_save
from .errors import StorageCorruption, StorageError
from .file_storage import DEFAULT_SEGMENT_BYTES, FileStorage

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "FileStorage",
    "Storage",
    "StorageCorruption",
    "StorageError",
    "check_compact",
    "check_save",
]
