"""Append + fsync latency of FileStorage (group commit: one write, one fsync
per save), for batches of 1 and of 100 small entries, next to the raw cost
of an fdatasync on the same file system and the CPU cost with fsync off.

    python bench/storage_fsync.py [--saves 400] [--dir DIR] [--json bench/results/storage_fsync.json]

DIR should be on the disk a node's data directory would use (default: a
temporary directory under the current one).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from quorate.raft.types import Entry, HardState
from quorate.storage import FileStorage

ENTRY_BYTES = 100


@dataclass(frozen=True, slots=True)
class Result:
    case: str
    batch: int
    saves: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    fsync_p50_ms: float | None  # the fsync inside each save (on_fsync hook)
    fsyncs_per_save: float
    entries_per_s: float
    reopen_ms: float | None  # replaying what was written


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3


def bench_storage(root: Path, batch: int, saves: int, fsync: bool) -> Result:
    dir = Path(tempfile.mkdtemp(dir=root))
    fsyncs: list[float] = []
    payload = os.urandom(ENTRY_BYTES)
    storage = FileStorage(dir, fsync=fsync, on_fsync=fsyncs.append)
    index, latencies = 0, []
    for n in range(saves + 10):  # 10 warm-up saves (the first opens a segment)
        entries = [Entry(1, index + i + 1, data=payload) for i in range(batch)]
        fsyncs_before = len(fsyncs)
        start = time.perf_counter()
        storage.save(HardState(1, "n1", index), entries, None)
        elapsed = time.perf_counter() - start
        index += batch
        if n >= 10:
            latencies.append(elapsed)
        else:
            del fsyncs[fsyncs_before:]
    storage.close()
    start = time.perf_counter()
    FileStorage(dir, fsync=fsync).close()
    reopen = (time.perf_counter() - start) * 1e3
    shutil.rmtree(dir)
    return Result(
        case="fsync" if fsync else "no-fsync (CPU only)",
        batch=batch,
        saves=saves,
        p50_ms=_pct(latencies, 0.5),
        p90_ms=_pct(latencies, 0.9),
        p99_ms=_pct(latencies, 0.99),
        mean_ms=statistics.fmean(latencies) * 1e3,
        max_ms=max(latencies) * 1e3,
        fsync_p50_ms=_pct(fsyncs, 0.5) if fsyncs else None,
        fsyncs_per_save=len(fsyncs) / saves,
        entries_per_s=batch * saves / sum(latencies),
        reopen_ms=reopen,
    )


def bench_raw_fdatasync(root: Path, saves: int) -> Result:
    """The floor: append 100 bytes and fdatasync, no encoding, no storage."""
    path = Path(tempfile.mkdtemp(dir=root)) / "raw"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    latencies = []
    for _ in range(saves):
        start = time.perf_counter()
        os.write(fd, b"x" * ENTRY_BYTES)
        os.fdatasync(fd)
        latencies.append(time.perf_counter() - start)
    os.close(fd)
    shutil.rmtree(path.parent)
    return Result("raw write+fdatasync", 1, saves, _pct(latencies, 0.5), _pct(latencies, 0.9),
                  _pct(latencies, 0.99), statistics.fmean(latencies) * 1e3, max(latencies) * 1e3,
                  None, 1.0, saves / sum(latencies), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=400)
    parser.add_argument("--dir", type=Path, default=Path.cwd())
    parser.add_argument("--json", type=Path, default=Path("bench/results/storage_fsync.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    root = Path(tempfile.mkdtemp(prefix="storage-bench-", dir=args.dir))
    try:
        results = [bench_raw_fdatasync(root, args.saves)]
        for fsync in (True, False):
            for batch in (1, 100):
                results.append(bench_storage(root, batch, args.saves, fsync))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{'case':<22}{'batch':>6}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'fsync p50':>11}"
          f"{'fsyncs/save':>13}{'entries/s':>12}{'reopen ms':>11}")
    for r in results:
        fs = f"{r.fsync_p50_ms:.3f}" if r.fsync_p50_ms is not None else "-"
        ro = f"{r.reopen_ms:.1f}" if r.reopen_ms is not None else "-"
        print(f"{r.case:<22}{r.batch:>6}{r.p50_ms:>9.3f}{r.p90_ms:>9.3f}{r.p99_ms:>9.3f}{fs:>11}"
              f"{r.fsyncs_per_save:>13.2f}{r.entries_per_s:>12.0f}{ro:>11}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "storage_fsync",
        "entry_bytes": ENTRY_BYTES,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "dir": str(args.dir.resolve())},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results": [asdict(r) for r in results],
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
