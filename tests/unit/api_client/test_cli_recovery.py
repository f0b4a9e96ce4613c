"""``quorate recovery`` against fake API nodes and ``quorate backup`` on
local files: the tables, the confirmation, the exit codes, damaged files."""

from __future__ import annotations

import json
from pathlib import Path

from fakeapi import FakeCluster
from typer.testing import CliRunner, Result

from quorate.cli.main import app
from quorate.recovery.backup_file import BackupDir, BackupHeader, backup_name, encode

CLEAN_ENV = {"QUORATE_ENDPOINT": None, "QUORATE_API_TOKEN": None}


def cli(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=CLEAN_ENV, input=stdin)  # type: ignore[arg-type]


def recovery(state: str = "waiting", **kw: object) -> dict[str, object]:
    body: dict[str, object] = {
        "active": True, "state": state, "phase": "recovery", "node": "n1", "suggested": "n2",
        "offers": [{"node": "n1", "counter": 5, "wall_time": 1_700_000_000.0},
                   {"node": "n2", "counter": 9, "wall_time": 1_700_000_100.0},
                   {"node": "n3", "counter": None, "wall_time": None}],
        "expected": ["n1", "n2", "n3"], "proceed": None, "complete": None,
        "message": "recovery mode: waiting for the operator"}
    body.update(kw)
    return body


def test_status_shows_offers_and_the_suggestion(fake: FakeCluster) -> None:
    n = fake.node().on("GET", "/v1/recovery", (200, recovery()))
    r = cli("recovery", "status", "-e", n.url)
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "waiting" in out and "suggested" in out and "no backup" in out and "all offered" in out
    table = out[out.index("backups on offer"):]
    assert table.index("│ n2") < table.index("│ n1") < table.index("│ n3")  # the highest counter first
    assert "quorate recovery proceed n2" in out
    r = cli("recovery", "status", "--json", "-e", n.url)
    assert json.loads(r.stdout) == recovery()


def test_proceed_asks_then_posts_the_suggestion(fake: FakeCluster) -> None:
    n = fake.node().on("GET", "/v1/recovery", (200, recovery()))
    n.on("POST", "/v1/recovery/proceed", (200, {"node": "n2", "counter": 9, "state": "proceeding"}))
    r = cli("recovery", "proceed", "--wait", "0", "-e", n.url, stdin="n\n")
    assert r.exit_code == 1 and n.requests("POST") == []
    r = cli("recovery", "proceed", "--wait", "0", "-e", n.url, stdin="y\n")
    assert r.exit_code == 0, r.output
    assert "backup 9 of n2" in r.stdout
    assert [s.body for s in n.requests("POST")] == [{"node": "n2"}]


def test_proceed_with_an_older_backup_warns_and_waits_for_completion(fake: FakeCluster) -> None:
    done = recovery("complete", active=False, complete={"node": "n1", "counter": 5, "wall_time": 1.0})
    n = fake.node().on("GET", "/v1/recovery", (200, recovery()), (200, done))
    n.on("POST", "/v1/recovery/proceed", (200, {"node": "n1", "counter": 5, "state": "proceeding"}))
    r = cli("recovery", "proceed", "n1", "-e", n.url, stdin="y\n")
    assert r.exit_code == 0, r.output
    assert "n2 holds a newer backup (9)" in r.stdout and "recovery complete" in r.stdout
    assert [s.body for s in n.requests("POST")] == [{"node": "n1"}]


def test_proceed_refuses_when_there_is_nothing_to_choose(fake: FakeCluster) -> None:
    n = fake.node().on("GET", "/v1/recovery", (200, recovery("proceeding", proceed="n2")))
    r = cli("recovery", "proceed", "--yes", "-e", n.url)
    assert r.exit_code == 1 and "proceeding" in r.stderr and "n2" in r.stderr
    n2 = fake.node().on("GET", "/v1/recovery", (200, recovery()))
    r = cli("recovery", "proceed", "n3", "--yes", "-e", n2.url)
    assert r.exit_code == 1 and "n3 has no backup on offer" in r.stderr
    assert n.requests("POST") == [] and n2.requests("POST") == []


def test_recovery_mode_errors_exit_1_with_the_message(fake: FakeCluster) -> None:
    n = fake.node().on("PUT", "/v1/kv/a", (503, {"error": "recovery_mode",
                                                 "message": "run quorate recovery status"}))
    r = cli("kv", "put", "a", "1", "-e", n.url)
    assert r.exit_code == 1 and "recovery_mode: run quorate recovery status" in r.stderr


def _backup(counter: int) -> bytes:
    return encode(BackupHeader(counter, 1_700_000_000.0, "c1", 7, "n1", 2, 1), [("k", "v", 1, 2, 1)])


def test_inspect_and_list_check_every_file(tmp_path: Path) -> None:
    good = tmp_path / "good.backup"
    good.write_bytes(_backup(3))
    r = cli("backup", "inspect", str(good), "--keys")
    assert r.exit_code == 0 and "backup 3 of node n1" in r.stdout and "k = v" in r.stdout
    bad = tmp_path / "bad.backup"
    bad.write_bytes(_backup(3)[:-1])
    r = cli("backup", "inspect", str(bad))
    assert r.exit_code == 1 and "bad.backup" in r.stderr and "truncated" in r.stderr
    d = tmp_path / "dir"
    d.mkdir()
    (d / backup_name(3)).write_bytes(_backup(3))
    (d / backup_name(4)).write_bytes(b"QRBK\r\n\x1a\n junk")
    r = cli("backup", "list", "--backup-dir", str(d), "--json")
    rows = json.loads(r.stdout)
    assert [(row["ok"], row.get("counter")) for row in rows] == [(False, None), (True, 3)]


def test_offline_restore_stages_the_file_and_keeps_newer_backups(tmp_path: Path) -> None:
    data, backups = tmp_path / "data", tmp_path / "backups"
    BackupDir(backups).write_bytes(8, _backup(8))
    f = tmp_path / "f.backup"
    f.write_bytes(_backup(5))
    r = cli("backup", "restore", str(f), "--data-dir", str(data), "--backup-dir", str(backups))
    assert r.exit_code == 0, r.output
    assert "staged backup 5" in r.stdout and "orphan" in r.stdout
    d = BackupDir(backups)
    assert [c for c, _ in d.entries()] == [5] and len(d.orphans()) == 1
    (data / "raft" / "wal").mkdir(parents=True)
    (data / "raft" / "wal" / "0001.seg").write_bytes(b"x")
    r = cli("backup", "restore", str(f), "--data-dir", str(data), "--backup-dir", str(backups))
    assert r.exit_code == 1 and "holds a store" in r.stderr
    r = cli("backup", "save", str(tmp_path / "copy.backup"), "--backup-dir", str(backups))
    assert r.exit_code == 0 and (tmp_path / "copy.backup").read_bytes() == _backup(5)
