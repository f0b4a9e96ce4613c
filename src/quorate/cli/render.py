"""Rich tables for people. Scripts use ``--json`` and never parse these."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from quorate.client import KeyValue, ListResult, Member, Status, WatchEvent

_ROLE_STYLE = {"leader": "bold green", "follower": "", "candidate": "yellow", "learner": "cyan",
               "recovery": "bold red"}
_HEALTH_STYLE = {"alive": "green", "suspect": "yellow", "failed": "bold red", "departed": "dim"}


def _styled(text: str, style: str) -> str:
    return f"[{style}]{escape(text)}[/]" if style else escape(text)


def _ids(ids: Sequence[str]) -> str:
    return escape(", ".join(ids)) if ids else "-"


def _quorum(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[bold red]no[/]"


def print_problems(console: Console, problems: Sequence[str]) -> None:
    for problem in problems:
        console.print(f"[bold red]problem:[/] [red]{escape(problem)}[/]")


def print_status(console: Console, status: Status, endpoint: str | None = None) -> None:
    console.print(f"node [bold]{escape(status.id)}[/]" + (f" ({escape(endpoint)})" if endpoint else ""))
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("role", _styled(status.role, _ROLE_STYLE.get(status.role, "")))
    table.add_row("term", str(status.term))
    table.add_row("leader", escape(status.leader or "none"))
    table.add_row("commit index", str(status.commit_index))
    table.add_row("applied index", str(status.applied_index))
    table.add_row("voters", _ids(status.voters))
    table.add_row("learners", _ids(status.learners))
    table.add_row("quorum", _quorum(status.quorum))
    console.print(table)
    print_problems(console, status.problems)


def _hostport(endpoint: str) -> str:
    return endpoint.split("://", 1)[-1]


def print_cluster(console: Console, rows: Sequence[tuple[str, Status | str]]) -> None:
    """One row per node: (endpoint, its status or why it did not answer)."""
    table = Table(title="cluster", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("node", "api", "role", "term", "leader", "commit", "voters", "quorum"):
        table.add_column(name, no_wrap=True)
    problems: list[str] = []
    for endpoint, st in rows:
        if isinstance(st, str):
            table.add_row("?", escape(_hostport(endpoint)), f"[bold red]{escape(st)}[/]", "", "", "", "", "")
            continue
        table.add_row(escape(st.id), escape(_hostport(endpoint)), _styled(st.role, _ROLE_STYLE.get(st.role, "")),
                      str(st.term), escape(st.leader or "none"), str(st.commit_index),
                      str(len(st.voters)), _quorum(st.quorum))
        problems.extend(f"{st.id}: {p}" for p in st.problems)
    console.print(table)
    print_problems(console, problems)


def print_members(console: Console, members: Sequence[Member]) -> None:
    table = Table(title="members", title_justify="left")
    for name in ("id", "role", "health", "peer addr", "api addr", "last contact"):
        table.add_column(name)
    for m in members:
        contact = "-" if m.last_contact_ms is None else _ms(m.last_contact_ms)
        role = f"(was {m.role})" if m.health == "departed" else m.role
        table.add_row(escape(m.id), escape(role), _styled(m.health, _HEALTH_STYLE.get(m.health, "")),
                      escape(m.peer_addr), escape(m.api_addr), contact)
    console.print(table)


def _ms(ms: int) -> str:
    """A duration for people: 40 ms, 12.3 s, 5 min, 3 h."""
    if ms < 10_000:
        return f"{ms} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    if ms < 7_200_000:
        return f"{ms // 60_000} min"
    return f"{ms // 3_600_000} h"


def _short(value: str, width: int = 60) -> str:
    one_line = value.replace("\n", "\\n")
    return one_line if len(one_line) <= width else one_line[: width - 1] + "…"


def print_kvs(console: Console, result: ListResult) -> None:
    table = Table(title=f"{len(result.kvs)} keys at revision {result.revision}", title_justify="left")
    table.add_column("key", overflow="fold")
    table.add_column("value", no_wrap=True, overflow="ellipsis", max_width=40)
    for name in ("create", "mod", "version"):
        table.add_column(name, no_wrap=True)
    for kv in result.kvs:
        table.add_row(escape(kv.key), escape(_short(kv.value)), str(kv.create_revision), str(kv.mod_revision),
                      str(kv.version))
    console.print(table)


def event_line(event: WatchEvent) -> str:
    if event.type == "put":
        return f"{event.revision} put {event.key} = {_short(event.value or '')}"
    return f"{event.revision} delete {event.key}"
