"""The agent settings for backups and recovery, and the purity of the
decision modules (the sans-IO scan of tests/unit/test_sans_io.py, applied
to the two pure modules of the recovery package)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from quorate.config import ConfigError, default_backup_dir, load_config, parse_duration

BASE = {"id": "n1", "peer_addr": "127.0.0.1:7001", "api_addr": "127.0.0.1:7101"}


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("1.5m", 90.0), ("500ms", 0.5),
                                                ("2h", 7200.0), (" 3 s ", 3.0), (7, 7.0)])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "soon", "-1s", "1d", "1e3", True])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)  # type: ignore[arg-type]


def test_defaults_and_the_backup_dir_next_to_the_data_dir(tmp_path: Path) -> None:
    cfg = load_config({**BASE, "data_dir": tmp_path / "n1"})
    assert cfg.backup_path == tmp_path / "n1-backup" == default_backup_dir(tmp_path / "n1")
    assert (cfg.backup_interval_s, cfg.backup_keep, cfg.accept_rollback, cfg.auto_recover_after_s) == \
        (60.0, 5, False, None)


def test_settings_from_flags_file_and_environment(tmp_path: Path) -> None:
    toml = tmp_path / "q.toml"
    toml.write_text('backup_interval_s = "2m"\nbackup_keep = 9\n')
    cfg = load_config({**BASE, "data_dir": tmp_path / "d", "auto_recover_after_s": "30s"}, config_file=toml,
                      env={"QUORATE_ACCEPT_ROLLBACK": "true", "QUORATE_BACKUP_DIR": str(tmp_path / "b")})
    assert (cfg.backup_interval_s, cfg.backup_keep, cfg.auto_recover_after_s) == (120.0, 9, 30.0)
    assert cfg.accept_rollback is True and cfg.backup_path == tmp_path / "b"


@pytest.mark.parametrize("backup", ["d", "d/backups", "."])
def test_the_backup_dir_must_be_apart_from_the_data_dir(tmp_path: Path, backup: str) -> None:
    with pytest.raises(ConfigError, match="separate"):
        load_config({**BASE, "data_dir": tmp_path / "d", "backup_dir": tmp_path / backup})


def test_bad_recovery_settings_are_refused_by_name(tmp_path: Path) -> None:
    for flags, name in (({"backup_interval_s": "0"}, "backup_interval_s"), ({"backup_keep": 0}, "backup_keep"),
                        ({"auto_recover_after_s": "later"}, "auto_recover_after_s")):
        with pytest.raises(ConfigError, match=name):
            load_config({**BASE, "data_dir": tmp_path / "d", **flags})


FORBIDDEN = {"asyncio", "socket", "time", "random", "os", "threading", "subprocess", "aiohttp"}


@pytest.mark.parametrize("module", ["startup.py", "state.py"])
def test_the_decision_modules_do_no_io(module: str) -> None:
    path = Path(__file__).resolve().parents[3] / "src" / "quorate" / "recovery" / module
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    assert not names & FORBIDDEN
