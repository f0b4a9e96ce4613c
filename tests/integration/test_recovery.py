"""Backups, the start-up decision and recovery mode (DESIGN.md S5, seed 002)
on real agent processes: the five start-up cases, a wiped store rebuilt
from the managers' local backups, orphans, a rolled-back store refused and
then accepted, operator backups online and offline, and damaged files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from quorate.recovery.backup_file import Backup, BackupDir

from .harness import ProcCluster, http, wait_for

pytestmark = pytest.mark.integration

# Only a change triggers a backup in these tests (never the interval).
QUIET = ["--backup-interval", "1h"]
CLI_TIMEOUT = 60.0


def _up(make_cluster, n: int = 3, extra: list[str] | None = None) -> ProcCluster:  # type: ignore[no-untyped-def]
    c = make_cluster(n, extra=[*QUIET, *(extra or [])])
    c.start_all()
    c.leader()
    return c


def _put(c: ProcCluster, key: str, value: str) -> None:
    def attempt() -> bool:
        for node in c.live():
            r = c.put(node, key, value)
            if r.status == 200:
                return True
        return False

    wait_for(f"an acknowledged write of {key}", attempt)


def _newest(c: ProcCluster, node: str) -> Backup | None:
    return BackupDir(c.agents[node].backup_dir).newest()


def _wait_backups_hold(c: ProcCluster, items: dict[str, str], nodes: list[str] | None = None) -> dict[str, int]:
    """Until every node's newest backup holds exactly ``items``; their counters."""
    nodes = nodes or list(c.agents)

    def check() -> dict[str, int] | None:
        found = {n: _newest(c, n) for n in nodes}
        if all(b is not None and dict(b.items()) == items for b in found.values()):
            return {n: b.counter for n, b in found.items() if b is not None}
        return None

    return wait_for(f"the backups of {nodes} to hold {sorted(items)}", check)


def _stop_all(c: ProcCluster) -> None:
    for node in c.live():
        assert c.terminate(node) == 0, f"{node} did not stop cleanly"


def _wipe_data(c: ProcCluster) -> None:
    for a in c.agents.values():
        shutil.rmtree(a.data_dir)


def _log(c: ProcCluster, node: str) -> str:
    return c.agents[node].log_path.read_text(errors="replace")


def _roles(c: ProcCluster) -> set[str]:
    return {c.status(n)["role"] for n in c.live()}


def _quorate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUORATE_")}
    return subprocess.run([sys.executable, "-m", "quorate", *map(str, args)], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT, env=env)


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def test_start_up_cases_1_2_and_4(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = _up(make_cluster)
    data = {f"k{i}": f"v{i}" for i in range(5)}
    for k, v in data.items():
        _put(c, k, v)
    _wait_backups_hold(c, data)
    for node in c.agents:
        assert "start-up case 1" in _log(c, node)  # a new node on a new store
    c.add_agent("n4")
    c.start("n4", join=c.agents["n1"].url)
    wait_for("n4 to serve the data", lambda: c.get("n4", "k0").status == 200)
    assert "start-up case 2" in _log(c, "n4")  # no backup, the store has a counter
    assert c.terminate("n2") == 0
    _put(c, "while-n2-was-down", "x")
    c.start("n2")
    wait_for("n2 back with the new key", lambda: c.get("n2", "while-n2-was-down").status == 200)
    assert "start-up case 4" in _log(c, "n2")  # its backup is older than the store's counter


def test_wiped_store_recovery_mode_then_proceed_restores_every_key(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = _up(make_cluster)
    data = {f"app/{i:02d}": f"value-{i}" for i in range(20)}
    for k, v in data.items():
        _put(c, k, v)
    counters = _wait_backups_hold(c, data)
    _stop_all(c)
    _wipe_data(c)  # the store is gone; the backup dirs are kept
    c.start_all()
    wait_for("every node in recovery mode", lambda: _roles(c) == {"recovery"})
    highest = max(counters, key=lambda n: counters[n])
    lowest = min(counters, key=lambda n: counters[n])

    def offers_in() -> dict | None:  # type: ignore[type-arg]
        r = http("GET", c.agents["n1"].url + "/v1/recovery").body
        return r if len(r["offers"]) == 3 else None

    rec = wait_for("three offers", offers_in)
    assert rec["active"] is True and rec["state"] == "waiting" and rec["suggested"] == highest
    assert {o["node"]: o["counter"] for o in rec["offers"]} == counters
    assert all(isinstance(o["wall_time"], float) for o in rec["offers"])

    # Every normal call is refused, with what to do; status, health and recovery answer.
    url = c.agents["n2"].url
    for method, path, body in [("PUT", "/v1/kv/app/00", {"value": "x"}), ("GET", "/v1/kv/app/00", None),
                               ("DELETE", "/v1/kv/app/00", None), ("GET", "/v1/kv?prefix=app/", None),
                               ("GET", "/v1/watch?prefix=app/&timeout=1", None),
                               ("POST", "/v1/leader/transfer", {}), ("GET", "/v1/backup", None)]:
        r = http(method, url + path, body)
        assert r.status == 503 and r.body["error"] == "recovery_mode", (method, path, r)
        assert "quorate recovery status" in r.body["message"] and "quorate recovery proceed" in r.body["message"]
    st = c.status("n2")
    assert st["role"] == "recovery" and any("quorate recovery proceed" in p for p in st["problems"])
    assert http("GET", url + "/v1/health").status == 503

    shown = _ok(_quorate("recovery", "status", "-e", c.agents["n3"].url))
    print(shown)
    assert "waiting" in shown and "suggested" in shown and f"quorate recovery proceed {highest}" in shown

    # The operator picks the oldest backup (through a node that is not the chosen one).
    via = next(n for n in c.agents if n != lowest)
    r = http("POST", c.agents[via].url + "/v1/recovery/proceed", {"node": lowest})
    assert r.status == 200 and r.body["node"] == lowest, r
    again = http("POST", c.agents[via].url + "/v1/recovery/proceed", {"node": highest})
    assert again.status == 409 and again.body["error"] == "conflict", again
    wait_for("every node out of recovery mode", lambda: "recovery" not in _roles(c) and c.leader())
    for node in c.agents:
        for k, v in data.items():
            got = c.get(node, k)
            assert got.status == 200 and got.body["value"] == v, (node, k, got)
    done = http("GET", c.agents["n1"].url + "/v1/recovery").body
    assert done["state"] == "complete" and done["complete"]["node"] == lowest and done["active"] is False

    # Nodes holding a newer backup than the chosen one keep it as an orphan, and say so.
    for node, counter in counters.items():
        orphans = [p.name for p in BackupDir(c.agents[node].backup_dir).orphans()]
        if node == lowest:
            assert orphans == [], orphans
        else:
            assert any(name.startswith(f"orphan-{counter:012d}-") for name in orphans), (node, orphans)
            assert "orphan" in _log(c, node)
    # ... so that a restart is an ordinary return (case 4), not a refusal (case 5).
    assert c.terminate(highest) == 0
    c.start(highest)
    wait_for(f"{highest} to serve again", lambda: c.get(highest, "app/00").status == 200)
    assert "start-up case 4" in _log(c, highest)


def test_single_node_auto_recover(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = _up(make_cluster, 1, extra=["--auto-recover-after", "5m"])
    _put(c, "solo", "1")
    _wait_backups_hold(c, {"solo": "1"})
    _stop_all(c)
    _wipe_data(c)
    c.start_all()
    # Every voter (itself) has offered: no need to wait the 5 minutes.
    wait_for("the key restored by itself", lambda: c.get("n1", "solo").status == 200)
    log = _log(c, "n1")
    assert "start-up case 3" in log and "auto-recovery" in log


def test_rolled_back_store_refused_then_accepted(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = _up(make_cluster)
    old = {"era": "old", "only-old": "1"}
    for k, v in old.items():
        _put(c, k, v)
    _wait_backups_hold(c, old)
    _stop_all(c)
    saved = {n: a.data_dir.with_name("data-saved") for n, a in c.agents.items()}
    for n, a in c.agents.items():
        shutil.copytree(a.data_dir, saved[n])
    c.start_all()
    c.leader()
    _put(c, "era", "new")
    new = {"era": "new", "only-old": "1"}
    newer = _wait_backups_hold(c, new)
    _stop_all(c)
    for n, a in c.agents.items():  # roll the store back; keep the backups
        shutil.rmtree(a.data_dir)
        shutil.copytree(saved[n], a.data_dir)

    c.start_all()
    codes = {n: a.proc.wait(timeout=60) for n, a in c.agents.items()}  # type: ignore[union-attr]
    assert codes == {"n1": 3, "n2": 3, "n3": 3}, codes
    for node in c.agents:
        log = _log(c, node)
        assert "refuses to start" in log and "rolled back" in log and "--accept-rollback" in log

    for a in c.agents.values():
        a.extra.append("--accept-rollback")
    c.start_all()
    c.leader()
    wait_for("the old state served", lambda: c.get("n1", "era").body["value"] == "old")
    for node, counter in newer.items():
        orphans = [p.name for p in BackupDir(c.agents[node].backup_dir).orphans()]
        assert any(name.startswith(f"orphan-{counter:012d}-") for name in orphans), (node, orphans)
        assert "start-up case 5" in _log(c, node)


def test_operator_backups_online_offline_and_damaged_files(make_cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    c = _up(make_cluster, 1)
    url = c.agents["n1"].url
    _put(c, "a", "1")
    _put(c, "b", "2")
    saved = tmp_path / "store.backup"
    assert "saved backup" in _ok(_quorate("backup", "save", saved, "-e", url))
    _put(c, "a", "changed")
    _put(c, "c", "extra")
    assert http("DELETE", url + "/v1/kv/b").status == 200
    out = _ok(_quorate("backup", "restore", saved, "--yes", "-e", url))
    assert "restored backup" in out
    assert [c.get("n1", k).body.get("value") for k in ("a", "b")] == ["1", "2"]
    assert c.get("n1", "c").status == 404

    data = saved.read_bytes()
    truncated, corrupt = tmp_path / "truncated.backup", tmp_path / "corrupt.backup"
    truncated.write_bytes(data[:-7])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(flipped))
    for bad, word in ((truncated, "truncated"), (corrupt, "corrupt")):
        r = _quorate("backup", "restore", bad, "--yes", "-e", url)
        assert r.returncode == 1 and word in r.stderr and bad.name in r.stderr, r
        r = _quorate("backup", "inspect", bad)
        assert r.returncode == 1 and word in r.stderr, r
    r = http("POST", url + "/v1/backup/restore", raw=bytes(flipped))
    assert r.status == 400 and "checksum" in r.body["message"], r
    assert c.get("n1", "a").body["value"] == "1", "a refused restore changed nothing"

    # Offline: staged as the node's newest backup; the next start on an empty data dir recovers from it.
    a = c.agents["n1"]
    _stop_all(c)
    r = _quorate("backup", "restore", saved, "--data-dir", a.data_dir, "--backup-dir", a.backup_dir)
    assert r.returncode == 1 and "holds a store" in r.stderr, r
    shutil.rmtree(a.data_dir)
    out = _ok(_quorate("backup", "restore", saved, "--data-dir", a.data_dir, "--backup-dir", a.backup_dir))
    assert "staged backup" in out and "orphan" in out  # the node's later backups are kept aside
    c.start("n1")
    wait_for("recovery mode", lambda: c.status("n1")["role"] == "recovery")
    _ok(_quorate("recovery", "proceed", "--yes", "-e", url))
    wait_for("the staged backup restored", lambda: c.get("n1", "b").status == 200)
    assert c.get("n1", "a").body["value"] == "1" and c.get("n1", "c").status == 404
