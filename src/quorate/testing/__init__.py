"""Fakes and conformance helpers shared by tests and the simulator."""

from .memory_storage import MemoryStorage, StorageError

__all__ = ["MemoryStorage", "StorageError"]
