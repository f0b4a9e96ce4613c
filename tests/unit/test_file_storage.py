"""FileStorage on disk: rotation, recovery of torn tails, refusal of real
corruption, atomic snapshot files, group commit, and a kill -9 test with a
real child process."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorate.raft.types import Entry, HardState, PersistentState
from quorate.storage import FileStorage, StorageCorruption, StorageError
from quorate.storage.records import MAGIC
from quorate.storage.wal import segment_name
from quorate.testing import MemoryStorage
from quorate.testing.storage_conformance import entries, snap

LOGGER = "quorate.storage"


def segments(dir: Path) -> list[Path]:
    return sorted((dir / "wal").glob("*.seg"))


def flip(path: Path, offset: int) -> None:
    buf = bytearray(path.read_bytes())
    buf[offset] ^= 0x5A
    path.write_bytes(bytes(buf))


def write_batches(dir: Path, count: int, **kwargs: object) -> tuple[list[list[Entry]], list[int]]:
    """``count`` saves of 3 entries each; returns the batches and the WAL
    size after each save (so frame k spans sizes[k-1]..sizes[k])."""
    batches, sizes = [], []
    with FileStorage(dir, **kwargs) as storage:  # type: ignore[arg-type]
        for k in range(count):
            batch = entries(3 * k + 1, 3 * k + 3, tag=f"b{k}.")
            storage.save(HardState(1, "n1", 3 * k), batch, None)
            batches.append(batch)
            sizes.append(segments(dir)[-1].stat().st_size)
    return batches, sizes


def flat(batches: list[list[Entry]]) -> tuple[Entry, ...]:
    return tuple(e for batch in batches for e in batch)


# -- segments ------------------------------------------------------------------


def test_segments_rotate_and_covered_ones_are_removed(tmp_path: Path) -> None:
    batches, _ = write_batches(tmp_path, 30, segment_bytes=300)
    names = [p.name for p in segments(tmp_path)]
    assert len(names) >= 5
    assert names[0] == segment_name(1, 1)
    assert [int(n.split("-")[0]) for n in names] == list(range(1, len(names) + 1))
    with FileStorage(tmp_path, segment_bytes=300) as storage:
        assert storage.load().entries == flat(batches)
        storage.compact(snap(60))
        left = segments(tmp_path)
        assert 1 <= len(left) < len(names)
        assert left[-1].name == names[-1]  # the segment being written stays
        expected = storage.load()
        assert [e.index for e in expected.entries] == list(range(61, 91))
    with FileStorage(tmp_path, segment_bytes=300) as storage:
        assert storage.load() == expected


def test_hard_state_survives_removal_of_the_segments_that_wrote_it(tmp_path: Path) -> None:
    with FileStorage(tmp_path, segment_bytes=200) as storage:
        storage.save(HardState(7, "n2", 0), entries(1, 3), None)
        for k in range(1, 20):
            storage.save(None, entries(3 * k + 1, 3 * k + 3), None)
        storage.save(HardState(7, "n2", 50), (), None)
        storage.save(None, entries(61, 70), None)
        storage.compact(snap(50))
        assert segments(tmp_path)[0].name != segment_name(1, 1)
    with FileStorage(tmp_path) as storage:
        assert storage.load().hard_state == HardState(7, "n2", 50)


def test_one_write_and_one_fsync_per_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs: list[float] = []
    with FileStorage(tmp_path, on_fsync=fsyncs.append) as storage:
        storage.save(HardState(1, "n1", 0), entries(1, 1), None)  # opens the first segment
        writes = 0
        real_write = os.write

        def counting_write(fd: int, data: bytes) -> int:
            nonlocal writes
            writes += 1
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", counting_write)
        fsyncs.clear()
        storage.save(HardState(1, "n1", 1), entries(2, 101), None)
        assert (writes, len(fsyncs)) == (1, 1)
        assert fsyncs[0] > 0 and storage.fsync_count >= 1


def test_fsync_off_warns_at_open(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        FileStorage(tmp_path, fsync=False).close()
    assert "fsync is OFF" in caplog.text


def test_a_directory_is_opened_by_one_storage_at_a_time(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    with pytest.raises(StorageError, match="in use"):
        FileStorage(tmp_path)
    storage.close()
    storage.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        storage.load()
    FileStorage(tmp_path).close()


# -- torn tails are truncated ----------------------------------------------------


@pytest.mark.parametrize("cut", ["mid-header", "mid-payload"])
def test_torn_tail_is_truncated_with_a_warning(
    tmp_path: Path, cut: str, caplog: pytest.LogCaptureFixture
) -> None:
    batches, sizes = write_batches(tmp_path, 5)
    seg = segments(tmp_path)[-1]
    os.truncate(seg, sizes[3] + 7 if cut == "mid-header" else sizes[4] - 3)
    with caplog.at_level(logging.WARNING, logger=LOGGER), FileStorage(tmp_path) as storage:
        assert storage.load() == PersistentState(HardState(1, "n1", 9), None, flat(batches[:4]))
    assert f"{seg} at byte offset {sizes[3]}" in caplog.text
    assert seg.stat().st_size == sizes[3]


def test_flipped_crc_of_the_last_record_is_truncated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    batches, sizes = write_batches(tmp_path, 5)
    seg = segments(tmp_path)[-1]
    flip(seg, sizes[3] + 8)  # the CRC field of the last frame
    with caplog.at_level(logging.WARNING, logger=LOGGER), FileStorage(tmp_path) as storage:
        assert storage.load().entries == flat(batches[:4])
        storage.save(None, entries(13, 14, term=2), None)  # writing goes on after the cut
    assert f"byte offset {sizes[3]}" in caplog.text and "CRC mismatch" in caplog.text
    with FileStorage(tmp_path) as storage:
        assert [e.index for e in storage.load().entries] == list(range(1, 15))


def test_hard_state_of_a_torn_save_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    with FileStorage(tmp_path) as storage:
        storage.save(HardState(3, "n1", 0), entries(1, 2), None)
        size = segments(tmp_path)[-1].stat().st_size
        storage.save(HardState(4, "n2", 2), (), None)
    os.truncate(segments(tmp_path)[-1], size + 10)  # power cut mid-write
    with FileStorage(tmp_path) as storage:
        assert storage.load().hard_state == HardState(3, "n1", 0)


def test_a_segment_left_empty_by_a_crash_is_removed(tmp_path: Path) -> None:
    batches, _ = write_batches(tmp_path, 3)
    empty = tmp_path / "wal" / segment_name(2, 10)
    empty.write_bytes(b"")
    with FileStorage(tmp_path, segment_bytes=1) as storage:
        assert not empty.exists()
        storage.save(None, entries(10, 10), None)
    assert [p.name.split("-")[0] for p in segments(tmp_path)] == [f"{1:020d}", f"{2:020d}"]
    with FileStorage(tmp_path) as storage:
        assert storage.load().entries == (*flat(batches), *entries(10, 10))


# -- corruption before the tail refuses to start ---------------------------------


def test_flipped_byte_in_an_early_record_refuses_to_start(tmp_path: Path) -> None:
    _, sizes = write_batches(tmp_path, 5)
    seg = segments(tmp_path)[-1]
    flip(seg, sizes[1] + 20)  # inside frame 2's payload; frames 3..5 are intact
    with pytest.raises(StorageCorruption) as info:
        FileStorage(tmp_path)
    assert f"{seg} at byte offset {sizes[1]}" in str(info.value)
    assert "intact record follows" in str(info.value)
    assert seg.stat().st_size == sizes[4]  # nothing was cut


def test_damage_in_a_segment_that_others_follow_refuses_to_start(tmp_path: Path) -> None:
    write_batches(tmp_path, 10, segment_bytes=200)
    first = segments(tmp_path)[0]
    os.truncate(first, first.stat().st_size - 1)
    with pytest.raises(StorageCorruption, match=f"{first.name} at byte offset"):
        FileStorage(tmp_path)


def test_a_missing_segment_refuses_to_start(tmp_path: Path) -> None:
    write_batches(tmp_path, 10, segment_bytes=200)
    segments(tmp_path)[1].unlink()
    with pytest.raises(StorageCorruption, match="missing"):
        FileStorage(tmp_path)


def test_a_checksummed_record_we_cannot_decode_is_not_a_torn_tail(tmp_path: Path) -> None:
    write_batches(tmp_path, 2)
    seg = segments(tmp_path)[-1]
    payload = b"\xc1"  # never valid msgpack
    length = len(payload).to_bytes(4, "little")
    crc = zlib.crc32(payload, zlib.crc32(length)).to_bytes(4, "little")
    with seg.open("ab") as f:
        f.write(MAGIC + length + crc + payload)
    with pytest.raises(StorageCorruption, match="undecodable"):
        FileStorage(tmp_path)


def test_commit_beyond_the_recovered_log_refuses_to_start(tmp_path: Path) -> None:
    with FileStorage(tmp_path) as storage:
        storage.save(HardState(1, "n1", 3), entries(1, 5), None)
        first = segments(tmp_path)[-1].stat().st_size
        storage.save(None, entries(6, 10), None)
        second = segments(tmp_path)[-1].stat().st_size
        storage.save(HardState(1, "n1", 10), (), None)
    seg = segments(tmp_path)[-1]
    buf = seg.read_bytes()
    seg.write_bytes(buf[:first] + buf[second:])  # entries 6..10 gone, commit 10 kept
    with pytest.raises(StorageCorruption, match="commits index 10 but the recovered log ends at 5"):
        FileStorage(tmp_path)


# -- snapshot files ------------------------------------------------------------------


def test_corrupt_snapshot_file_refuses_to_start(tmp_path: Path) -> None:
    with FileStorage(tmp_path) as storage:
        storage.save(HardState(1, "n1", 8), entries(1, 10), None)
        storage.compact(snap(8, data=b"x" * 100))
    path = tmp_path / "snap" / f"{8:020d}.snap"
    flip(path, path.stat().st_size - 10)
    with pytest.raises(StorageCorruption, match=f"{path.name}.*CRC mismatch"):
        FileStorage(tmp_path)
    os.truncate(path, 30)
    with pytest.raises(StorageCorruption, match="header says"):
        FileStorage(tmp_path)


def test_only_the_two_newest_snapshots_are_kept(tmp_path: Path) -> None:
    with FileStorage(tmp_path) as storage:
        storage.save(HardState(1, "n1", 40), entries(1, 40), None)
        for index in (10, 20, 30, 40):
            storage.compact(snap(index))
    assert sorted(p.name for p in (tmp_path / "snap").iterdir()) == [f"{30:020d}.snap", f"{40:020d}.snap"]


def test_snapshot_write_interrupted_before_its_rename_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with FileStorage(tmp_path) as storage:
        storage.save(HardState(1, "n1", 8), entries(1, 10), None)
        storage.compact(snap(5))
        expected = storage.load()
    tmp = tmp_path / "snap" / f"{8:020d}.snap.tmp"
    tmp.write_bytes(b"QSNP half a snapshot")
    with caplog.at_level(logging.WARNING, logger=LOGGER), FileStorage(tmp_path) as storage:
        assert storage.load() == expected
    assert not tmp.exists()
    assert str(tmp) in caplog.text


def test_leader_snapshot_whose_wal_record_was_lost_is_completed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with FileStorage(tmp_path) as storage:
        storage.save(HardState(1, "n1", 3), entries(1, 10), None)
        size = segments(tmp_path)[-1].stat().st_size
        storage.save(HardState(2, "n2", 15), (), snap(15, term=2))
    os.truncate(segments(tmp_path)[-1], size)  # crash after the snapshot file, before the WAL
    with caplog.at_level(logging.WARNING, logger=LOGGER), FileStorage(tmp_path) as storage:
        assert storage.load() == PersistentState(HardState(1, "n1", 3), snap(15, term=2), ())
        storage.save(HardState(2, "n2", 16), entries(16, 17, term=2), None)
    assert "interrupted install of snapshot 15" in caplog.text
    with FileStorage(tmp_path) as storage:
        assert [e.index for e in storage.load().entries] == [16, 17]


# -- kill -9 a real writer ---------------------------------------------------------

PLAN = '''
from quorate.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta

def ops():
    """Saves (some overwriting an uncommitted tail) and compactions."""
    terms, last, commit, base, term, k = {}, 0, 0, 0, 1, 0
    while True:
        k += 1
        if k % 10 == 0 and commit > base:
            base = commit
            meta = SnapshotMeta(base, terms[base], ConfState(frozenset({"n1"})))
            yield ("compact", Snapshot(meta, b"img%d" % k))
            continue
        lo = last + 1
        if k % 7 == 0 and last > max(commit, base):
            lo, term = last, term + 1
        last = lo + k % 5
        for i in range(lo, last + 1):
            terms[i] = term
        commit = max(commit, lo - 1)
        batch = [Entry(term, i, data=b"%d:%d:" % (k, i) * 8) for i in range(lo, last + 1)]
        yield ("save", HardState(term, "n1", commit), batch)
'''

CHILD = PLAN + '''
import sys
from quorate.storage import FileStorage
storage = FileStorage(sys.argv[1], segment_bytes=2048)
print("ready", flush=True)
for n, op in enumerate(ops()):
    if op[0] == "save":
        storage.save(op[1], op[2], None)
    else:
        storage.compact(op[1])
    print(n, flush=True)
'''


def _model_after(count: int) -> PersistentState:
    namespace: dict[str, object] = {}
    exec(PLAN, namespace)
    model = MemoryStorage()
    for _, op in zip(range(count), namespace["ops"]()):  # type: ignore[operator]
        if op[0] == "save":
            model.save(op[1], op[2], None)
        else:
            model.compact(op[1])
    return model.load()


def test_kill_9_loses_nothing_that_was_reported_saved(tmp_path: Path) -> None:
    rng = random.Random(20240607)
    progress = []
    for trial in range(10):
        dir = tmp_path / f"t{trial}"
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(dir)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.02, 0.4))
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL, "the writer died on its own"
        done = [int(line) for line in child.stdout.read().split()]
        child.stdout.close()
        reported = done[-1] + 1 if done else 0
        progress.append(reported)
        with FileStorage(dir, segment_bytes=2048) as storage:
            recovered = storage.load()
        # Each op is atomic: we find everything reported, plus maybe the op in flight.
        assert recovered in (_model_after(reported), _model_after(reported + 1)), (
            f"trial {trial}: recovered state matches neither op {reported} nor {reported + 1}"
        )
    assert sum(n > 20 for n in progress) >= 5, f"the writer barely ran: {progress}"


# -- fuzzing the tail ------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_wal(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[int], list[list[Entry]]]:
    dir = tmp_path_factory.mktemp("wal-fuzz")
    batches, sizes = write_batches(dir, 6)
    return segments(dir)[-1].read_bytes(), sizes, batches


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    how=st.sampled_from(["append", "overwrite", "truncate"]),
    back=st.integers(min_value=0, max_value=1000),
    junk=st.one_of(st.binary(max_size=64), st.binary(max_size=32).map(lambda b: MAGIC + b)),
)
def test_fuzzed_tail_is_truncated_or_refused_never_anything_else(
    saved_wal: tuple[bytes, list[int], list[list[Entry]]], how: str, back: int, junk: bytes
) -> None:
    original, sizes, batches = saved_wal
    at = max(0, len(original) - back)
    if how == "append":
        mutated = original + junk
    elif how == "overwrite":
        mutated = original[:at] + junk + original[at + len(junk) :]
    else:
        mutated = original[:at]
    with tempfile.TemporaryDirectory() as raw:
        dir = Path(raw)
        (dir / "wal").mkdir()
        (dir / "wal" / segment_name(1, 1)).write_bytes(mutated)
        try:
            storage = FileStorage(dir)
        except StorageCorruption:
            # Refusing is only right when an intact record survived the damage.
            assert how == "overwrite" and at < sizes[-2]
            return
        with storage:
            got = storage.load().entries
            # What survives is a whole number of batches, as they were saved.
            assert any(got == flat(batches[:n]) for n in range(len(batches) + 1))
            if at >= sizes[-2] or how == "append":
                assert len(got) >= len(flat(batches[:-1]))
            storage.save(None, entries(len(got) + 1, len(got) + 1, term=9), None)
        with FileStorage(dir) as storage:
            assert len(storage.load().entries) == len(got) + 1
