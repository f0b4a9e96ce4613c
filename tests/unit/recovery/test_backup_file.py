"""The backup file format and the backup directory: round trip, every kind
of damage refused with BackupError naming the file (and nothing else),
orphans instead of overwrites, retention."""

from __future__ import annotations

import logging
import random
import struct
from pathlib import Path

import pytest

from quorate.recovery.backup_file import (
    MAGIC,
    Backup,
    BackupDir,
    BackupError,
    BackupHeader,
    backup_name,
    decode,
    encode,
    read,
)

ROWS = [("a", "1", 1, 1, 1), ("b/c", "two", 2, 5, 2), ("z", "", 3, 3, 1), ("ünïcode", "☃" * 10, 4, 4, 1)]


def header(counter: int = 7, **kw: object) -> BackupHeader:
    fields: dict[str, object] = {"counter": counter, "wall_time": 1_700_000_000.25, "cluster_id": "c1",
                                 "raft_index": 42, "node": "n1", "revision": 5, "keys": len(ROWS)}
    fields.update(kw)
    return BackupHeader(**fields)  # type: ignore[arg-type]


def test_round_trip_keeps_header_and_rows() -> None:
    data = encode(header(), ROWS)
    assert data.startswith(MAGIC)
    b = decode(data, "x")
    assert b.header == header()
    assert list(b.rows) == ROWS
    assert b.items() == [(r[0], r[1]) for r in ROWS]


def test_empty_store_round_trips() -> None:
    b = decode(encode(header(keys=0), []), "x")
    assert b.rows == () and b.counter == 7


@pytest.mark.parametrize("cut", [0, 3, 8, 12, 23, 24, 30, -5, -1])
def test_truncated_file_is_refused_naming_the_file(cut: int) -> None:
    data = encode(header(), ROWS)
    with pytest.raises(BackupError) as exc:
        decode(data[:cut], "/backups/backup-7.backup")
    assert "/backups/backup-7.backup" in str(exc.value)
    assert "truncated" in str(exc.value)


def test_every_flipped_byte_is_refused_with_backup_error_only() -> None:
    data = encode(header(), ROWS)
    for pos in range(len(data)):
        damaged = bytearray(data)
        damaged[pos] ^= 0x5A
        with pytest.raises(BackupError):
            decode(bytes(damaged), "f")


def test_random_garbage_never_raises_anything_else() -> None:
    rng = random.Random(1)
    good = encode(header(), ROWS)
    for _ in range(300):
        n = rng.randrange(0, 200)
        blob = MAGIC + bytes(rng.randrange(256) for _ in range(n)) if rng.random() < 0.5 else \
            good[:rng.randrange(len(good))] + bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
        try:
            decode(blob, "f")
        except BackupError:
            pass


def test_wrong_magic_version_and_trailing_bytes() -> None:
    data = encode(header(), ROWS)
    with pytest.raises(BackupError, match="wrong magic"):
        decode(b"{" + data[1:], "f")
    with pytest.raises(BackupError, match="wrong magic"):
        decode(b"hello, I am a text file that is long enough", "f")
    bumped = data[:8] + struct.pack(">H", 99) + data[10:]
    with pytest.raises(BackupError, match="version 99"):
        decode(bumped, "f")
    with pytest.raises(BackupError, match="after the end"):
        decode(data + b"\x00", "f")


def test_read_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="cannot read"):
        read(tmp_path / "nope.backup")


def test_header_validation() -> None:
    with pytest.raises(ValueError):
        header(counter=0)
    with pytest.raises(ValueError):
        header(raft_index=-1)
    with pytest.raises(ValueError):
        header(wall_time="yesterday")


def _write(d: BackupDir, counter: int, rows: list = ROWS):  # type: ignore[no-untyped-def,type-arg]
    return d.write(header(counter), rows)


def test_write_is_atomic_and_listed_by_counter(tmp_path: Path) -> None:
    d = BackupDir(tmp_path / "b", keep=10)
    for c in (1, 2, 3):
        _write(d, c)
    assert [c for c, _ in d.entries()] == [1, 2, 3] and d.orphans() == []
    assert [p.name for p in sorted((tmp_path / "b").iterdir())] == [backup_name(c) for c in (1, 2, 3)]
    newest = d.newest()
    assert isinstance(newest, Backup) and newest.counter == 3


def test_older_backup_never_overwrites_a_newer_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = BackupDir(tmp_path, keep=5, wall_clock=lambda: 1_700_000_000.0)
    _write(d, 10, [("k", "newer", 1, 1, 1)])
    _write(d, 11, [("k", "newest", 1, 2, 2)])
    with caplog.at_level(logging.WARNING, logger="quorate.recovery"):
        report = _write(d, 7, [("k", "older", 1, 1, 1)])
    names = sorted(p.name for p in report.orphaned)
    assert names == ["orphan-000000000010-20231114T221320Z.backup", "orphan-000000000011-20231114T221320Z.backup"]
    assert [c for c, _ in d.entries()] == [7]
    assert sorted(p.name for p in d.orphans()) == names
    assert read(d.orphans()[1]).items() == [("k", "newest")]
    assert "orphan" in caplog.text and "11" in caplog.text
    # The same counter orphaned twice at the same second gets a distinct name.
    _write(d, 11)
    _write(d, 8)
    assert len(d.orphans()) == 3


def test_retention_keeps_the_newest_n_and_never_orphans(tmp_path: Path) -> None:
    d = BackupDir(tmp_path, keep=3)
    _write(d, 20)
    d.orphan_newer_than(5, why="test")
    for c in range(1, 7):
        _write(d, c)
    assert [c for c, _ in d.entries()] == [4, 5, 6]
    assert len(d.orphans()) == 1


def test_newest_skips_damaged_files_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = BackupDir(tmp_path, keep=5)
    _write(d, 1)
    report = _write(d, 2)
    report.path.write_bytes(report.path.read_bytes()[:-10])
    (tmp_path / backup_name(3)).write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="quorate.recovery"):
        newest = d.newest()
    assert newest is not None and newest.counter == 1
    assert backup_name(2) in caplog.text and "truncated" in caplog.text
    assert backup_name(3) in caplog.text and "wrong magic" in caplog.text


def test_a_header_counter_that_disagrees_with_the_name_is_skipped(tmp_path: Path) -> None:
    d = BackupDir(tmp_path)
    _write(d, 1)
    (tmp_path / backup_name(9)).write_bytes(encode(header(4), ROWS))
    newest = d.newest()
    assert newest is not None and newest.counter == 1


def test_stale_temp_files_are_removed_and_ignored(tmp_path: Path) -> None:
    d = BackupDir(tmp_path)
    (tmp_path / ".tmp-backup-5-123").write_bytes(b"half a file")
    assert d.entries() == [] and d.newest() is None
    _write(d, 1)
    assert not (tmp_path / ".tmp-backup-5-123").exists()


def test_missing_directory_is_empty(tmp_path: Path) -> None:
    d = BackupDir(tmp_path / "absent")
    assert d.entries() == [] and d.orphans() == [] and d.newest() is None
