"""Fuzzing the backup reader (``recovery/backup_file.py``).

Backups come from outside (``quorate backup restore FILE``, the restore
endpoint, files left in a data directory), so ``decode`` must answer any
bytes with a Backup of the right shape or a BackupError: never another
exception, never a hang, never memory beyond a multiple of the file. The
CRC stops random damage early, so the "sealed" targets recompute it around
header and body values of the wrong shape to reach the field checks.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import pytest
from fuzz_support import U64, MemoryMeter, guarded, memory_bound, msgpack_scalars, msgpack_values, mutated, nested, pack
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from quorate.recovery.backup_file import (
    MAGIC,
    Backup,
    BackupDir,
    BackupError,
    BackupHeader,
    backup_name,
    decode,
    encode,
)

pytestmark = pytest.mark.fuzz

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HEADER = BackupHeader(counter=7, wall_time=1.7e9, cluster_id="c1", raft_index=42, node="n1", revision=9, keys=3)
ROWS = [("a", "1", 1, 2, 1), ("b/c", "\u00e9", 3, 3, 1), ("z", "", 4, 9, 5)]
SEED = encode(HEADER, ROWS)
_PRELUDE = struct.Struct(">HHIQ")


def sealed(head: bytes, body: bytes, *, version: int = 1, flags: int = 0) -> bytes:
    """A backup file with right lengths and CRC around any header and body."""
    prelude = _PRELUDE.pack(version, flags, len(head), len(body))
    crc = zlib.crc32(body, zlib.crc32(head, zlib.crc32(prelude)))
    return MAGIC + prelude + head + body + struct.pack(">I", crc)


def _any(valid: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(valid, msgpack_scalars, msgpack_values)


counts = _any(st.integers(min_value=-2, max_value=U64))
headers = st.fixed_dictionaries(
    {"counter": counts, "wall_time": _any(st.floats()), "cluster_id": _any(st.text(max_size=4)),
     "raft_index": counts, "node": _any(st.text(max_size=4))},
    optional={"revision": counts, "keys": counts, "extra": msgpack_values},
)
rows = st.lists(
    st.one_of(
        st.tuples(_any(st.text(max_size=6)), _any(st.text(max_size=6)), counts, counts, counts).map(list),
        msgpack_values,
    ),
    max_size=5,
)


def _check(data: bytes, meter: MemoryMeter) -> None:
    out = meter.run(lambda: decode(data, "fuzz.backup"))
    assert out.peak <= memory_bound(len(data)), (out.peak, len(data))
    if out.error is not None:
        assert isinstance(out.error, BackupError), repr(out.error)
        assert out.error.source == "fuzz.backup"
        return
    backup = out.value
    assert isinstance(backup, Backup)
    h = backup.header
    assert type(h.counter) is int and h.counter >= 1 and type(h.cluster_id) is str and type(h.node) is str
    assert all(type(v) is int and v >= 0 for v in (h.raft_index, h.revision, h.keys))
    keys = [r[0] for r in backup.rows]
    assert keys == sorted(set(keys)), "rows must be in strictly ascending key order"
    for key, value, *revisions in backup.rows:
        assert type(key) is str and key and type(value) is str
        assert all(type(v) is int and v >= 0 for v in revisions)
    if isinstance(h.wall_time, float) and not math.isfinite(h.wall_time):
        return  # NaN never equals itself: the round trip below cannot hold
    assert decode(encode(h, backup.rows)) == backup, "what is accepted encodes back to itself"


@SETTINGS
@given(st.one_of(mutated(SEED), st.binary(max_size=200), st.binary(max_size=40).map(lambda b: MAGIC + b)))
@example(b"")
@example(MAGIC[:5])
@example(MAGIC + _PRELUDE.pack(1, 0, 0xFFFFFFFF, U64))
@example(MAGIC + _PRELUDE.pack(1, 0, 0, U64) + b"\x00" * 4)
@example(SEED + b"\x00")
def test_damaged_backup_files(data: bytes) -> None:
    """Bit flips, extreme lengths, cuts and garbage, at the byte level."""
    with MemoryMeter() as meter:
        _check(data, meter)


@SETTINGS
@given(st.one_of(headers.map(pack), msgpack_values.map(pack), st.binary(max_size=20)),
       st.one_of(rows.map(pack), msgpack_values.map(pack), st.binary(max_size=20)))
@example(pack(HEADER.to_json()), pack([["b", "x", 1, 1, 1], ["a", "y", 1, 1, 1]]))  # keys out of order
@example(pack(HEADER.to_json()), pack([["a", "x", 1, 1, 1], ["a", "y", 1, 1, 1]]))  # a duplicate key
@example(pack(HEADER.to_json()), pack([["", "x", 1, 1, 1]]))  # an empty key
@example(pack(HEADER.to_json()), pack([[["a"], "x", 1, 1, 1]]))  # an unhashable key
@example(pack(HEADER.to_json()), pack([["a", "x", True, 1, 1]]))  # a bool revision
@example(pack({**HEADER.to_json(), "counter": True}), pack([]))
@example(pack({**HEADER.to_json(), "wall_time": "noon"}), pack([]))
@example(pack({**HEADER.to_json(), "node": None}), pack([]))
@example(pack({1: 2}), pack([]))  # a non-string map key
@example(pack(HEADER.to_json()), nested(100_000))
@example(nested(100_000, header=b"\x81\xa0"), pack([]))
def test_sealed_backups_with_wrong_shapes(head: bytes, body: bytes) -> None:
    """A right CRC around headers and rows of the wrong shape: missing and
    extra fields, every msgpack type in every field, 64-bit edges."""
    with MemoryMeter() as meter:
        _check(sealed(head, body), meter)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(mutated(SEED), st.just(SEED)), min_size=1, max_size=3))
def test_backup_dir_newest_skips_damaged_files(tmp_path_factory: pytest.TempPathFactory, files: list[bytes]) -> None:
    """``BackupDir.newest`` (what a restarting node reads) never raises on
    damaged files: it skips them and returns a valid backup or None."""
    root: Path = tmp_path_factory.mktemp("backups")
    for n, data in enumerate(files, start=HEADER.counter):  # the later names hold counter 7: skipped too
        (root / backup_name(n)).write_bytes(data)
    newest = guarded(BackupDir(root, fsync=False).newest)
    if files[0] == SEED:
        assert newest == decode(SEED)
    else:
        assert newest is None or (isinstance(newest, Backup) and newest.counter == HEADER.counter)
