"""Result rows, the printed table (with quorate/etcd and quorate/PySyncObj
ratio columns) and the JSON file ``bench/results/<date>-<commit>.json``.

A row's identity is (system, metric, clients, timing, variant). ``variant``
(an extra key next to the issue's shape) tells quorate's rows apart:
``""`` is the HTTP API with fsync on, ``"nofsync"`` the same without fsync
(the fair row for PySyncObj, which has no durable log), ``"client"`` through
``quorate.client.AsyncClient``. The ratio columns compare quorate's plain
row with etcd, and quorate's ``nofsync`` row (when there is one) with
PySyncObj.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

UNITS = {
    "write_ops_per_s": "ops/s", "read_ops_per_s": "ops/s", "write_p50_ms": "ms", "write_p99_ms": "ms",
    "read_p50_ms": "ms", "read_p99_ms": "ms", "failover_min_ms": "ms", "failover_median_ms": "ms",
    "failover_p90_ms": "ms", "failover_max_ms": "ms", "quorum_recovery_write_ms": "ms",
    "quorum_recovery_full_ms": "ms", "rss_idle_mb": "MB", "rss_100k_keys_mb": "MB",
    "snapshot_install_100k_ms": "ms", "cpu_ms_per_write": "ms",
}
LOWER_IS_BETTER = {m for m in UNITS if m not in ("write_ops_per_s", "read_ops_per_s")}


@dataclass
class Row:
    system: str
    metric: str
    clients: int | None
    timing: str | None
    value: float
    unit: str
    samples: int
    variant: str = ""
    note: str = ""


class Results:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.notes: list[str] = []

    def add(self, system: str, metric: str, value: float, samples: int, *, clients: int | None = None,
            timing: str | None = None, variant: str = "", note: str = "") -> None:
        self.rows.append(Row(system, metric, clients, timing, float(value), UNITS[metric], samples, variant, note))

    def find(self, system: str, metric: str, clients: int | None, timing: str | None,
             variant: str = "") -> Row | None:
        for r in self.rows:
            if (r.system, r.metric, r.clients, r.timing, r.variant) == (system, metric, clients, timing, variant):
                return r
        return None

    # -- table ------------------------------------------------------------------
    def table(self, extra_lines: list[str] = ()) -> str:  # type: ignore[assignment]
        keys: list[tuple[str, int | None, str | None]] = []
        for r in self.rows:
            k = (r.metric, r.clients, r.timing)
            if k not in keys:
                keys.append(k)
        head = (f"{'metric':<26}{'clients':>8}{'timing':>8} | {'quorate':>9}{'q nofsync':>10}{'q client':>9}"
                f"{'etcd':>9}{'pysyncobj':>10} | {'q/etcd':>7}{'q/pso':>7}")
        out = [head, "-" * len(head)]

        def v(r: Row | None) -> str:
            return "-" if r is None or math.isnan(r.value) else (f"{r.value:.0f}" if abs(r.value) >= 100
                                                                  else f"{r.value:.3g}")

        def ratio(a: Row | None, b: Row | None) -> str:
            if a is None or b is None or not b.value or math.isnan(a.value) or math.isnan(b.value):
                return "-"
            return f"{a.value / b.value:.2f}"

        for metric, clients, timing in keys:
            q = self.find("quorate", metric, clients, timing)
            qn = self.find("quorate", metric, clients, timing, "nofsync")
            qc = self.find("quorate", metric, clients, timing, "client")
            e = self.find("etcd", metric, clients, timing)
            p = self.find("pysyncobj", metric, clients, timing)
            c = "" if clients is None else str(clients)
            out.append(f"{metric:<26}{c:>8}{timing or '':>8} | {v(q):>9}{v(qn):>10}{v(qc):>9}{v(e):>9}{v(p):>10}"
                       f" | {ratio(q, e):>7}{ratio(qn or q, p):>7}")
        out += list(extra_lines)
        return "\n".join(out)

    # -- JSON ---------------------------------------------------------------------
    def write_json(self, directory: Path, meta: dict[str, object]) -> Path:
        commit = _git("rev-parse", "--short=12", "HEAD") or "unknown"
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{date}-{commit}.json"
        doc = {"commit": _git("rev-parse", "HEAD") or "unknown", "dirty": dirty, "date": date,
               "machine": machine(), **meta, "notes": self.notes,
               "rows": [asdict(r) for r in self.rows if not math.isnan(r.value)]}
        path.write_text(json.dumps(doc, indent=1) + "\n")
        return path


def machine() -> dict[str, object]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return {"cpus": os.cpu_count() or 0, "cpu_model": model, "mem_mb": mem, "kernel": platform.release(),
            "python": platform.python_version()}


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
