"""Fuzzing the storage read path: FileStorage opened on damaged files.

Real data directories are written once with FileStorage (several segments,
a leader's snapshot, a compaction); each example copies them, damages the
WAL segments or the snapshot file, and opens the directory through the real
recovery path (snapshot read, segment scan, replay, torn-tail repair).

The contract: opening either succeeds with a well-formed state that a
second open reads back unchanged, or raises StorageCorruption; no other
exception, no hang, and memory proportional to the bytes on disk. Frames
and snapshot files carry CRCs, so random damage stops at the checksum; the
"CRC-valid" targets re-seal the damage so the decoders behind it are
reached too.
"""

from __future__ import annotations

import contextlib
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fuzz_support import U64, MemoryMeter, memory_bound, msgpack_scalars, msgpack_values, mutated, nested, pack
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from quorate.raft.types import Entry, EntryKind, HardState, PersistentState
from quorate.storage import FileStorage, StorageCorruption
from quorate.storage.records import MAGIC, encode_frame
from quorate.storage.snapshots import MAGIC as SNAP_MAGIC
from quorate.storage.wal import segment_name
from quorate.testing.storage_conformance import entries, snap

pytestmark = pytest.mark.fuzz

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Layout:
    """The files of a data directory: name -> bytes, under wal/ and snap/."""

    wal: dict[str, bytes]
    snap: dict[str, bytes]

    def write(self, root: Path) -> Path:
        for sub, files in (("wal", self.wal), ("snap", self.snap)):
            (root / sub).mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (root / sub / name).write_bytes(data)
        return root

    @property
    def size(self) -> int:
        return sum(map(len, self.wal.values())) + sum(map(len, self.snap.values()))


def _read_layout(root: Path) -> Layout:
    return Layout(
        {p.name: p.read_bytes() for p in sorted((root / "wal").iterdir())},
        {p.name: p.read_bytes() for p in sorted((root / "snap").iterdir())},
    )


def _build_seeds() -> tuple[Layout, Layout]:
    """Two real directories: one small segment of plain saves, and one with
    several segments, a leader's snapshot and a later compaction."""
    with tempfile.TemporaryDirectory() as tmp:
        simple = Path(tmp, "simple")
        with FileStorage(simple, fsync=False) as s:
            s.save(HardState(1, "n1", 0), entries(1, 3), None)
            s.save(HardState(2, "n2", 2), [Entry(2, 3, EntryKind.CONF_CHANGE, b'{"type": "add_voter"}')], None)
            s.save(HardState(2, "n2", 3), [], None)
        rich = Path(tmp, "rich")
        with FileStorage(rich, fsync=False, segment_bytes=120) as s:
            s.save(HardState(1, "n1", 0), entries(1, 4), None)
            s.save(HardState(2, None, 4), entries(5, 6, term=2), None)
            s.save(HardState(3, "n3", 6), [], snap(8, term=3))
            s.save(None, entries(9, 12, term=3), None)
            s.save(HardState(3, "n3", 11), [], None)
            s.compact(snap(10, term=3))
            s.save(HardState(4, "n1", 12), entries(13, 14, term=4), None)
            s.save(HardState(4, "n1", 14), entries(14, 16, term=4, tag="r"), None)  # overwrites 14
            s.save(HardState(5, None, 16), entries(17, 18, term=5), None)
        return _read_layout(simple), _read_layout(rich)


SIMPLE, RICH = _build_seeds()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-storage")


@contextlib.contextmanager
def _fresh(base: Path) -> Iterator[Path]:
    """A new empty directory per example (removed after it)."""
    path = Path(tempfile.mkdtemp(dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _open(root: Path) -> PersistentState:
    with FileStorage(root, fsync=False) as storage:
        state = storage.load()
        assert storage.last_index == (state.entries[-1].index if state.entries else storage.snapshot_index)
        return state


def _check_state(state: PersistentState) -> None:
    """What recovery accepted is what a node can run on: exact types,
    non-negative numbers, a contiguous log after the snapshot, and a commit
    index inside the recovered log."""
    hs = state.hard_state
    assert type(hs.term) is int and type(hs.commit) is int and hs.term >= 0 and hs.commit >= 0, hs
    assert hs.vote is None or type(hs.vote) is str, hs
    base = 0
    if state.snapshot is not None:
        meta = state.snapshot.meta
        assert type(meta.index) is int and type(meta.term) is int and meta.index >= 0 and meta.term >= 0, meta
        for ids in (meta.conf.voters, meta.conf.learners):
            assert isinstance(ids, frozenset) and all(type(m) is str for m in ids), meta.conf
        assert type(state.snapshot.data) is bytes
        base = meta.index
    for i, e in enumerate(state.entries):
        assert type(e.term) is int and e.term >= 0 and isinstance(e.kind, EntryKind) and type(e.data) is bytes, e
        assert e.index == base + 1 + i, f"entry {i} has index {e.index}, expected {base + 1 + i}"
    assert hs.commit <= (state.entries[-1].index if state.entries else base)


def _check_open(layout: Layout, root: Path, meter: MemoryMeter) -> None:
    """Open ``layout`` as a data directory: StorageCorruption, or a
    well-formed state that survives a second open (after the first one
    repaired a torn tail) unchanged."""
    layout.write(root)
    out = meter.run(lambda: _open(root))
    assert out.peak <= memory_bound(layout.size, constant=2 << 20), (out.peak, layout.size)
    if out.error is not None:
        assert isinstance(out.error, StorageCorruption), repr(out.error)
        event(f"refused: {out.error.reason[:30]}")
        return
    event("opened")
    state = out.value
    assert isinstance(state, PersistentState)
    _check_state(state)
    assert _open(root) == state, "a second open read back a different state"


# -- damaged WAL segments ------------------------------------------------------------


def _damaged_wal(seed: Layout) -> st.SearchStrategy[Layout]:
    names = sorted(seed.wal)

    @st.composite
    def build(draw: st.DrawFn) -> Layout:
        wal = dict(seed.wal)
        for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True)):
            wal[name] = draw(mutated(wal[name]))
        if len(names) > 1 and draw(st.integers(0, 9)) == 0:
            del wal[draw(st.sampled_from(names))]  # a segment gone from the middle or an end
        return Layout(wal, seed.snap)

    return build()


@SETTINGS
@given(st.one_of(_damaged_wal(SIMPLE), _damaged_wal(RICH)))
def test_damaged_segments_open_or_are_corrupt(base: Path, layout: Layout) -> None:
    """Bit flips, overwritten lengths, insertions, deletions and cuts in
    one or two segments (and a segment deleted now and then)."""
    with MemoryMeter() as meter:
        with _fresh(base) as root:
            _check_open(layout, root, meter)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.booleans())
@example(MAGIC + struct.pack("<II", 0xFFFFFFFF, 0), True)
@example(MAGIC + struct.pack("<II", 0x7FFFFFFF, 0) + b"x" * 20, False)
@example((MAGIC + struct.pack("<II", 0xFFFFFFF0, 0)) * 20, True)
def test_garbage_segments(base: Path, data: bytes, with_header: bool) -> None:
    """A segment of random bytes, alone or after a real first frame."""
    head = encode_frame([HardState(1, "n1", 0)]) if with_header else b""
    with MemoryMeter() as meter:
        with _fresh(base) as root:
            _check_open(Layout({segment_name(1, 1): head + data}, {}), root, meter)


# -- CRC-valid frames with payloads that are not ours ---------------------------------


def _sealed(payload: bytes) -> bytes:
    """A frame whose header and CRC are right for ``payload``."""
    length = len(payload).to_bytes(4, "little")
    return MAGIC + length + zlib.crc32(payload, zlib.crc32(length)).to_bytes(4, "little") + payload


def _any(valid: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(valid, msgpack_scalars)


ints = _any(st.integers(min_value=-3, max_value=20) | st.sampled_from([2**63 - 1, U64, -(2**63)]))
items = st.one_of(
    st.tuples(_any(st.just(1)), ints, ints, _any(st.sampled_from([0, 1, 2])), _any(st.binary(max_size=6))).map(list),
    st.tuples(_any(st.just(2)), ints, _any(st.none() | st.text(max_size=3)), ints).map(list),
    st.tuples(_any(st.just(3)), ints, ints).map(list),
    msgpack_values,
)
payloads = st.one_of(st.lists(items, max_size=6).map(pack), msgpack_values.map(pack), st.binary(max_size=40))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(payloads, min_size=1, max_size=3), st.booleans())
@example([pack([[1, 1, 0, 0, b""]])], True)  # an entry at index 0
@example([pack([[2, 1, None, -1]])], True)  # a negative commit
@example([pack([[1, -1, 1, 0, b""], [2, -1, None, 1]])], True)  # a negative term
@example([pack([[3, -5, 1]])], True)  # a marker below every snapshot
@example([pack([[1, 1, U64, 0, b""]])], True)  # an entry far past the end
@example([nested(50_000)], False)
@example([pack([[1, 1, 1, 0, b""]]), pack([[1, 2, 1, 0, b""], [2, 1, "n1", 2]]), pack([[1, 1, 1, 0, b"x"]])], True)
def test_sealed_frames_with_foreign_payloads(base: Path, frames: list[bytes], with_header: bool) -> None:
    """Frames that pass the CRC but hold msgpack of the wrong shape, items
    with type-confused or out-of-range fields, or not msgpack at all."""
    head = encode_frame([HardState(1, "n1", 0)]) if with_header else b""
    segment = head + b"".join(_sealed(p) for p in frames)
    with MemoryMeter() as meter:
        with _fresh(base) as root:
            _check_open(Layout({segment_name(1, 1): segment}, {}), root, meter)


# -- damaged snapshot files ------------------------------------------------------------

_SNAP_HEADER = struct.Struct("<4sB3xIQI")


def _snapshot_file(meta: bytes, data: bytes, *, magic: bytes = SNAP_MAGIC, version: int = 1) -> bytes:
    """A snapshot file with a right CRC around any meta and data."""
    head = _SNAP_HEADER.pack(magic, version, len(meta), len(data), 0)[:-4]
    crc = zlib.crc32(data, zlib.crc32(meta, zlib.crc32(head)))
    return head + crc.to_bytes(4, "little") + meta + data


_RICH_SNAP = max(RICH.snap)  # the newest: the only one ever read
ids = _any(st.lists(_any(st.text(max_size=3)), max_size=3))
metas = st.one_of(
    st.tuples(_any(st.just(10)), ints, ids, ids, _any(st.sampled_from(["leader", "local", "other"]))).map(list),
    msgpack_values,
).map(pack)


@SETTINGS
@given(st.one_of(
    mutated(RICH.snap[_RICH_SNAP]).map(lambda b: ("raw", b)),
    st.tuples(metas, st.binary(max_size=16)).map(lambda md: ("sealed", _snapshot_file(*md))),
))
@example(("sealed", _snapshot_file(pack([10, 3, "n1", [], "local"]), b"")))  # voters as a string
@example(("sealed", _snapshot_file(pack([10, "3", ["n1"], [], "local"]), b"")))  # term as a string
@example(("sealed", _snapshot_file(pack([10, -3, ["n1"], [], "local"]), b"")))  # a negative term
@example(("sealed", _snapshot_file(pack([10, 3, {"n1": 1}, [], "local"]), b"")))  # voters as a map
@example(("sealed", _snapshot_file(pack([10, 3, [1, 2], [], "local"]), b"")))  # ids as ints
@example(("sealed", _snapshot_file(pack([True, 3, ["n1"], [], "local"]), b"")))  # index as a bool
@example(("sealed", _snapshot_file(pack([10, 3, ["n1"], [], "local"])[:-1], b"")))
@example(("raw", _SNAP_HEADER.pack(SNAP_MAGIC, 1, 0xFFFFFFFF, U64, 0)))
def test_damaged_snapshot_files(base: Path, damage: tuple[str, bytes]) -> None:
    """The newest snapshot file of the rich directory, damaged at random
    (the CRC catches it) or rewritten with a right CRC around a meta of the
    wrong shape: StorageCorruption, or a snapshot of the right types."""
    _, data = damage
    layout = Layout(RICH.wal, {**RICH.snap, _RICH_SNAP: data})
    with MemoryMeter() as meter:
        with _fresh(base) as root:
            _check_open(layout, root, meter)


def test_seeds_open_cleanly(base: Path) -> None:
    """The undamaged seeds are accepted (or every example above would only
    be testing refusals)."""
    for layout in (SIMPLE, RICH):
        assert len(layout.wal) >= 1
        with _fresh(base) as root:
            layout.write(root)
            state = _open(root)
            _check_state(state)
            assert state.entries
    assert len(RICH.wal) >= 3 and len(RICH.snap) == 2


def test_a_tail_full_of_record_headers_is_refused_without_a_hang(base: Path) -> None:
    """Regression (found here): after a bad frame, recovery looks for an
    intact one, paying a CRC over the length each candidate header claims.
    A 4 MiB tail of headers each claiming "the rest of the file" made that
    quadratic (minutes; hours for a 64 MiB segment). It is now refused as
    corruption once the checks cost more than a budget linear in the file."""
    count = (4 << 20) // 12
    tail = b"".join(MAGIC + struct.pack("<II", (count - i - 1) * 12, 0) for i in range(count))
    segment = encode_frame([HardState(1, "n1", 0)]) + tail
    with MemoryMeter() as meter, _fresh(base) as root:
        Layout({segment_name(1, 1): segment}, {}).write(root)
        out = meter.run(lambda: _open(root))
    assert isinstance(out.error, StorageCorruption), repr(out.error)
    assert "record-like headers" in out.error.reason
    assert out.peak <= memory_bound(len(segment), per_byte=4), out.peak
