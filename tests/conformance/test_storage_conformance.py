"""Every storage passes the same conformance suite: the in-memory one the
simulator uses and the file-backed one nodes run on (with default and with
tiny segments, so rotation and segment removal are exercised too)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from quorate.storage import FileStorage, Storage
from quorate.testing import MemoryStorage
from quorate.testing.storage_conformance import CHECKS, StorageFactory


def memory_factory(_: Path) -> StorageFactory:
    def reopen(storage: Storage) -> Storage:
        return MemoryStorage.from_state(storage.load())

    return StorageFactory(make=MemoryStorage, reopen=reopen)


def file_factory(segment_bytes: int) -> Callable[[Path], StorageFactory]:
    def factory(tmp_path: Path) -> StorageFactory:
        counter = itertools.count()

        def make() -> Storage:
            return FileStorage(tmp_path / f"s{next(counter)}", segment_bytes=segment_bytes)

        def reopen(storage: Storage) -> Storage:
            assert isinstance(storage, FileStorage)
            storage.close()
            return FileStorage(storage.dir, segment_bytes=segment_bytes)

        return StorageFactory(make=make, reopen=reopen)

    return factory


IMPLEMENTATIONS = {
    "memory": memory_factory,
    "file": file_factory(64 << 20),
    "file-small-segments": file_factory(512),
}


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("impl", sorted(IMPLEMENTATIONS))
def test_storage_conformance(impl: str, check: str, tmp_path: Path) -> None:
    CHECKS[check](IMPLEMENTATIONS[impl](tmp_path))
