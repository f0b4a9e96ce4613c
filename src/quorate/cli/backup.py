"""``quorate backup``: save, restore, inspect and list backups of the store.

Online (through ``--endpoint``) or offline, on a stopped node's directories
(``--data-dir`` / ``--backup-dir``); see docs/recovery.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from quorate.config import default_backup_dir
from quorate.recovery import Backup, BackupDir, BackupError, decode
from quorate.recovery.offline import OfflineError, newest, stage

from .common import (
    ClusterOptions,
    EndpointOpt,
    JsonOpt,
    TlsCaOpt,
    TlsCertOpt,
    TlsFiles,
    TlsKeyOpt,
    TokenOpt,
    cluster_errors,
    fail,
    print_json,
    stdout,
)
from .recovery import when

app = typer.Typer(help="Save, restore, inspect and list backups of the store.", no_args_is_help=True)

FileArg = Annotated[Path, typer.Argument(metavar="FILE", show_default=False, help="The backup file.")]
DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", show_default=False, help="Offline: the data dir of a stopped node (its backup dir defaults to "
                                           "DATA_DIR-backup, as for the agent).")]
BackupDirOpt = Annotated[Path | None, typer.Option(
    "--backup-dir", show_default=False, help="Offline: the node's backup dir (as given to the agent).")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _backup_dir(data_dir: Path | None, backup_dir: Path | None) -> Path | None:
    if backup_dir is not None:
        return backup_dir
    return default_backup_dir(data_dir) if data_dir is not None else None


def _read(path: Path) -> tuple[bytes, Backup]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data, decode(data, path)
    except BackupError as exc:
        raise fail(str(exc)) from None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _describe(b: Backup) -> str:
    h = b.header
    return (f"backup {h.counter} of node {h.node} in cluster {h.cluster_id}: {h.keys} keys at raft index "
            f"{h.raft_index}, taken {when(h.wall_time)}")


@app.command("save")
def save(file: FileArg, data_dir: DataDirOpt = None, backup_dir: BackupDirOpt = None, endpoint: EndpointOpt = None,
         token: TokenOpt = None,
         tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
         as_json: JsonOpt = False) -> None:
    """Write a backup of the store to FILE.

    Online (default): a fresh backup taken by the node asked (it takes a new
    backup counter). Offline (--data-dir or --backup-dir): a copy of the
    node's newest valid local backup."""
    local = _backup_dir(data_dir, backup_dir)
    if local is not None:
        try:
            backup, source = newest(local)
        except OfflineError as exc:
            raise fail(str(exc)) from None
        data = source.read_bytes()
    else:
        opts = ClusterOptions(endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
        with cluster_errors(as_json):
            data = opts.client(timeout=30.0).backup_save()
        try:
            backup = decode(data, "the node's answer")
        except BackupError as exc:
            raise fail(str(exc)) from None
    _write_atomic(file, data)
    if as_json:
        print_json({"file": str(file), **backup.header.to_json()})
    else:
        stdout().print(f"saved {escape(_describe(backup))} to {escape(str(file))}")


@app.command("restore")
def restore(file: FileArg, data_dir: DataDirOpt = None, backup_dir: BackupDirOpt = None, yes: YesOpt = False,
            endpoint: EndpointOpt = None, token: TokenOpt = None,
            tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
            as_json: JsonOpt = False) -> None:
    """Restore the backup FILE.

    Online (default): the store's keys are made equal to the backup's
    (missing keys written, extra keys deleted) through the cluster, which
    keeps running. Offline (--data-dir, optionally --backup-dir): FILE becomes
    the stopped node's newest local backup, so that the managers, started on
    empty data dirs, enter recovery mode with it on offer; the data dir must
    hold no store. A truncated or corrupt FILE is refused either way."""
    data, backup = _read(file)
    local = _backup_dir(data_dir, backup_dir)
    if local is not None:
        try:
            report = stage(data, str(file), local, data_dir)
        except (OfflineError, BackupError) as exc:
            raise fail(str(exc)) from None
        if as_json:
            print_json({"staged": str(report.path), "orphaned": [str(p) for p in report.orphaned],
                        **backup.header.to_json()})
            return
        out = stdout()
        out.print(f"staged {escape(_describe(backup))} as {escape(str(report.path))}")
        for p in report.orphaned:
            out.print(f"kept the newer backup {escape(str(p))} as an orphan")
        out.print("next: start the managers on empty data dirs; they enter recovery mode, then run "
                  "`quorate recovery proceed` (this node's backup is on offer)")
        return
    if not yes:
        typer.confirm(f"Replace every key of the store with the {backup.header.keys} keys of "
                      f"{_describe(backup)}?", abort=True)
    opts = ClusterOptions(endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    with cluster_errors(as_json):
        result = opts.client(timeout=30.0).backup_restore(data)
    if as_json:
        print_json(result)
    else:
        stdout().print(f"restored {escape(_describe(backup))}: {result.get('written')} keys written, "
                       f"{result.get('deleted')} deleted, {result.get('unchanged')} unchanged")


@app.command("inspect")
def inspect(file: FileArg, keys: Annotated[bool, typer.Option("--keys", help="Also list the keys.")] = False,
            as_json: JsonOpt = False) -> None:
    """Check FILE (exit 1 if truncated or corrupt) and show its header."""
    _, backup = _read(file)
    if as_json:
        print_json({**backup.header.to_json(), **({"rows": [list(r) for r in backup.rows]} if keys else {})})
        return
    out = stdout()
    out.print(f"{escape(str(file))}: {escape(_describe(backup))}")
    if keys:
        for key, value, *_ in backup.rows:
            out.print(f"  {escape(key)} = {escape(value if len(value) <= 60 else value[:59] + '…')}")


@app.command("list")
def list_backups(data_dir: DataDirOpt = None, backup_dir: BackupDirOpt = None, as_json: JsonOpt = False) -> None:
    """List a node's local backups and orphans, checking each file."""
    local = _backup_dir(data_dir, backup_dir)
    if local is None:
        raise fail("give --backup-dir (or --data-dir)", code=2)
    backups = BackupDir(local)
    rows = []
    for path in [p for _, p in reversed(backups.entries())] + backups.orphans():
        try:
            b = decode(path.read_bytes(), path)
            rows.append({"file": str(path), "ok": True, **b.header.to_json()})
        except (BackupError, OSError) as exc:
            rows.append({"file": str(path), "ok": False, "error": str(exc)})
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"backups in {local}", title_justify="left")
    for name in ("file", "counter", "node", "keys", "taken"):
        table.add_column(name)
    for r in rows:
        if r["ok"]:
            table.add_row(escape(Path(r["file"]).name), str(r["counter"]), escape(r["node"]), str(r["keys"]),
                          escape(when(r["wall_time"])))
        else:
            table.add_row(escape(Path(r["file"]).name), "[bold red]damaged[/]", "", "", escape(r["error"]))
    stdout().print(table)
