"""``quorate group`` (apply, list, show, delete) and ``quorate instances``.

A spec file is checked locally before anything is sent, so a typo never
leaves half a file applied."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from quorate.client import QuorateClientError
from quorate.manager.spec import GroupSpec, SpecError, load_spec_text

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

app = typer.Typer(help="Declare groups of instances; the managers keep them running.", no_args_is_help=True)
instances_app = typer.Typer(help="The instances the managers run.", no_args_is_help=True)

GroupArg = Annotated[str, typer.Argument(metavar="ID", help="The group's id.", show_default=False)]

_STATE_STYLE = {"running": "green", "starting": "yellow", "terminated": "bold red", "unknown": "dim"}


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else escape(str(value))


def _yes_no(value: Any) -> str:
    return {True: "[green]yes[/]", False: "[bold red]no[/]"}.get(value, "-")


# -- apply ------------------------------------------------------------------------------


def load_specs(path: str) -> list[GroupSpec]:
    """Every spec in the file, or exit 2 naming the bad field."""
    source = "standard input" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {source}: {exc}", 2) from None
    try:
        return load_spec_text(text, source)
    except SpecError as exc:
        raise fail(f"{exc}; nothing was applied", 2) from None


@app.command("apply")
def apply(file: Annotated[str, typer.Argument(metavar="FILE", show_default=False,
                                              help="YAML or JSON with one or more group specs; '-' reads "
                                                   "standard input.")],
          endpoint: EndpointOpt = None, token: TokenOpt = None,
          tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
          as_json: JsonOpt = False) -> None:
    """Create or update the groups in FILE; prints each one's revision and spec hash.

    The whole file is validated first: a bad spec exits 2 and nothing is sent."""
    specs = load_specs(file)
    opts = ClusterOptions(endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    applied: list[dict[str, Any]] = []
    with cluster_errors(as_json):
        client = opts.client()
        try:
            for spec in specs:
                result = client.apply_group(spec.to_json())
                applied.append(result)
                if not as_json:
                    typer.echo(f"{result.get('group')}: revision {result.get('revision')}, "
                               f"spec {result.get('spec_hash')}")
        except QuorateClientError as exc:
            if applied:  # say which specs of the file did take effect
                exc.details["applied"] = applied
            raise
    if as_json:
        print_json(applied)


# -- list / show / delete -----------------------------------------------------------------


def _wanted(g: Mapping[str, Any]) -> str:
    if g.get("logical_ids") is not None:
        return ", ".join(str(i) for i in g["logical_ids"]) or "-"
    return f"size {g.get('size')}"


def print_groups(console: Console, groups: Sequence[Mapping[str, Any]]) -> None:
    table = Table(title=f"{len(groups)} groups", title_justify="left")
    for name in ("id", "provider", "desired", "slots", "spec hash", "revision"):
        table.add_column(name)
    for g in groups:
        if g.get("error"):
            table.add_row(_cell(g.get("id")), f"[bold red]invalid: {escape(str(g['error']))}[/]", "", "", "",
                          _cell(g.get("revision")))
            continue
        table.add_row(_cell(g.get("id")), _cell(g.get("provider")), _cell(g.get("desired")), escape(_wanted(g)),
                      _cell(g.get("spec_hash")), _cell(g.get("revision")))
    console.print(table)


@app.command("list")
def list_groups(endpoint: EndpointOpt = None, token: TokenOpt = None,
                tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
                as_json: JsonOpt = False) -> None:
    """List the groups: provider, desired instances, spec hash, revision."""
    opts = ClusterOptions(endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    with cluster_errors(as_json):
        groups = opts.client().list_groups()
        if as_json:
            print_json(groups)
        else:
            print_groups(stdout(), groups)


def _print_spec(console: Console, data: Mapping[str, Any]) -> None:
    spec = data.get("spec") or {}
    console.print(f"group [bold]{_cell(spec.get('id'))}[/] at revision {_cell(data.get('revision'))}, "
                  f"spec hash {_cell(data.get('spec_hash'))}")
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    template = spec.get("template") or {}
    table.add_row("provider", _cell(spec.get("provider")))
    table.add_row("wants", escape(_wanted(spec)))
    table.add_row("command", escape(shlex.join([str(template.get("command", "")),
                                                *(str(a) for a in template.get("args") or [])])))
    health = spec.get("health") or {}
    table.add_row("health check", _cell(health.get("type", "process")))
    table.add_row("max unavailable", _cell((spec.get("update") or {}).get("max_unavailable", 1)))
    console.print(table)


def _print_slots(console: Console, slots: Sequence[Mapping[str, Any]]) -> None:
    if not slots:
        console.print("slots: none recorded yet")
        return
    table = Table(title="slots", title_justify="left")
    for name in ("slot", "instance", "incarnation", "member", "term"):
        table.add_column(name)
    for s in slots:
        if s.get("error"):
            table.add_row(_cell(s.get("slot")), f"[bold red]{escape(str(s['error']))}[/]", "", "", "")
            continue
        table.add_row(_cell(s.get("slot")), _cell(s.get("instance_id")), _cell(s.get("incarnation")),
                      _cell(s.get("member_id")), _cell(s.get("term")))
    console.print(table)


_STATUS_SHOWN = {"cycle", "finished_at", "duration_ms", "summary", "actions", "notes", "last_change"}


def _print_actions(console: Console, title: str, actions: list[Mapping[str, Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for name in ("kind", "slot", "instance", "reason", "outcome"):
        table.add_column(name)
    for a in actions:
        outcome = _cell(a.get("outcome")) + (f": [red]{escape(str(a['error']))}[/]" if a.get("error") else "")
        table.add_row(_cell(a.get("kind")), _cell(a.get("slot")), _cell(a.get("instance_id")),
                      _cell(a.get("reason")), outcome)
    console.print(table)


def _print_status(console: Console, status: Mapping[str, Any] | None) -> None:
    if not status:
        console.print("last cycle: none reported (no controller has run one for this group on the leader)")
        return
    took = status.get("duration_ms")
    finished = status.get("finished_at")
    console.print(f"last cycle {_cell(status.get('cycle'))}: finished "
                  f"{escape(when(finished)) if isinstance(finished, (int, float)) else '-'}"
                  + (f", took {took:.1f} ms" if isinstance(took, (int, float)) else ""))
    if status.get("summary"):
        console.print(escape(str(status["summary"])))
    actions = [a for a in status.get("actions") or [] if isinstance(a, Mapping)]
    if actions:
        _print_actions(console, "actions", actions)
    else:
        console.print("actions: none")
    for note in status.get("notes") or []:
        console.print(f"note: {escape(str(note))}")
    change = status.get("last_change")
    if isinstance(change, Mapping) and change.get("cycle") != status.get("cycle"):
        done = change.get("finished_at")
        title = (f"last change: cycle {_cell(change.get('cycle'))}, "
                 f"{when(done) if isinstance(done, (int, float)) else '-'}")
        _print_actions(console, title, [a for a in change.get("actions") or [] if isinstance(a, Mapping)])
    for key in sorted(set(status) - _STATUS_SHOWN):
        console.print(f"{escape(str(key))}: {_cell(status[key])}")


def print_group(console: Console, data: Mapping[str, Any]) -> None:
    _print_spec(console, data)
    _print_slots(console, [s for s in data.get("slots") or [] if isinstance(s, Mapping)])
    status = data.get("status")
    _print_status(console, status if isinstance(status, Mapping) else None)


@app.command("show")
def show(group: GroupArg, endpoint: EndpointOpt = None, token: TokenOpt = None,
         tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
         as_json: JsonOpt = False) -> None:
    """Show a group: its spec, its slots and the controller's last cycle."""
    opts = ClusterOptions(endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    with cluster_errors(as_json):
        data = opts.client().get_group(group)
        if as_json:
            print_json(data)
        else:
            print_group(stdout(), data)


@app.command("delete")
def delete(group: GroupArg, endpoint: EndpointOpt = None, token: TokenOpt = None,
           tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
           as_json: JsonOpt = False) -> None:
    """Delete a group; the managers then stop its instances.

    The managers group cannot be deleted: change its logical_ids instead."""
    opts = ClusterOptions(endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    with cluster_errors(as_json):
        result = opts.client().delete_group(group)
        if as_json:
            print_json({"group": group, **result})
        else:
            typer.echo(f"{group}: deleted at revision {result.get('revision')}")


# -- instances ------------------------------------------------------------------------------


def print_instances(console: Console, instances: Sequence[Mapping[str, Any]]) -> None:
    table = Table(title=f"{len(instances)} instances", title_justify="left")
    for name in ("id", "group", "logical id", "slot", "state", "pid", "healthy"):
        table.add_column(name)
    for i in instances:
        state = str(i.get("state", "unknown"))
        style = _STATE_STYLE.get(state, "")
        table.add_row(_cell(i.get("id")), _cell(i.get("group")), _cell(i.get("logical_id")), _cell(i.get("slot")),
                      f"[{style}]{escape(state)}[/]" if style else escape(state), _cell(i.get("pid")),
                      _yes_no(i.get("healthy")))
    console.print(table)


@instances_app.command("list")
def list_instances(group: Annotated[str | None, typer.Option("--group", "-g", metavar="ID", show_default=False,
                                                             help="Only this group's instances.")] = None,
                   endpoint: EndpointOpt = None, token: TokenOpt = None,
                   tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
                   as_json: JsonOpt = False) -> None:
    """List the instances the leader's providers see: state, pid, health."""
    opts = ClusterOptions(endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    with cluster_errors(as_json):
        found = opts.client().list_instances(group)
        if as_json:
            print_json(found)
        else:
            print_instances(stdout(), found)
