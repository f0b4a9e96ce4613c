"""Backups of a node that is not running (``quorate backup ... --data-dir``).

An offline restore does not write the store: the store is replicated, and
rewriting one node's data directory behind its peers' backs would make it
diverge from them. It *stages* the backup instead, as the newest local
backup of the node (newer ones are kept as orphans), and requires the
node's data directory to hold no store. The next start of the managers on
empty data directories is then case 3 of the start-up decision: recovery
mode, with this backup on offer, restored through consensus by
``quorate recovery proceed`` like any other.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from .backup_file import Backup, BackupDir, BackupError, backup_name, decode

__all__ = ["OfflineError", "StageReport", "data_dir_state", "stage"]


class OfflineError(Exception):
    """The directories are not in a state an offline operation can use."""


def data_dir_state(data_dir: Path) -> str | None:
    """Why ``data_dir`` cannot take an offline restore (it holds a store,
    or an agent runs on it), or None when it is empty or absent."""
    raft = Path(data_dir) / "raft"
    lock = raft / "LOCK"
    if lock.exists():
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return f"an agent is running on {data_dir} (its lock is held): stop it first"
        finally:
            os.close(fd)
    for sub in ("wal", "snap"):
        d = raft / sub
        if d.is_dir() and any(d.iterdir()):
            return (f"{data_dir} holds a store: an offline restore stages the backup for recovery mode, which "
                    "only starts on an empty store. Stop every manager, move their data directories away (keep "
                    "the backup directories), run this again, start them, then `quorate recovery proceed`")
    return None


@dataclass(frozen=True, slots=True)
class StageReport:
    backup: Backup
    path: Path
    orphaned: tuple[Path, ...]


def stage(data: bytes, source: str, backup_dir: Path, data_dir: Path | None) -> StageReport:
    """Verify the backup file ``data`` and make it the newest local backup in
    ``backup_dir``; BackupError for a bad file, OfflineError for a data dir
    that still holds a store."""
    backup = decode(data, source)
    if data_dir is not None and (why := data_dir_state(data_dir)) is not None:
        raise OfflineError(why)
    backups = BackupDir(backup_dir)
    same = backups.path / backup_name(backup.counter)
    # An existing file under the same counter that differs is another state: keep it too.
    if same.exists() and same.read_bytes() != data:
        orphaned = backups.orphan_newer_than(backup.counter - 1, why="an offline restore staged another backup")
    else:
        orphaned = []
    report = backups.write_bytes(backup.counter, data)
    return StageReport(backup, report.path, tuple(orphaned) + report.orphaned)


def newest(backup_dir: Path) -> tuple[Backup, Path]:
    """The newest valid backup in ``backup_dir`` and its file."""
    backups = BackupDir(backup_dir)
    for counter, path in reversed(backups.entries()):
        try:
            data = path.read_bytes()
            return decode(data, path), path
        except (BackupError, OSError):
            continue
    raise OfflineError(f"no valid backup in {backup_dir}")
