"""``quorate recovery``: see and drive recovery mode (S5, docs/recovery.md)."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from quorate.client import Client, QuorateClientError, RecoveryOffer, RecoveryStatus

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

app = typer.Typer(help="Recovery mode: the store lost its data and waits to be restored from a manager's "
                       "local backup.", no_args_is_help=True)


def when(wall_time: float | None, now: float | None = None) -> str:
    if wall_time is None:
        return "-"
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(wall_time))
    return f"{stamp} ({_ago(now - wall_time)})"


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    if s < 172800:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"


def print_recovery(console: Console, st: RecoveryStatus, endpoint: str | None = None) -> None:
    raw = st.raw
    asked = f" (asked {escape(str(raw.get('node', '?')))}" + (f" at {escape(endpoint)})" if endpoint else ")")
    mode = "in recovery mode" if st.active else f"not in recovery mode (phase {escape(str(raw.get('phase')))})"
    console.print(f"recovery: [bold]{escape(st.state)}[/]{asked}; this node is {mode}")
    if st.offers:
        table = Table(title="backups on offer", title_justify="left")
        for name in ("node", "counter", "backup taken", ""):
            table.add_column(name)
        for o in sorted(st.offers, key=lambda o: (o.counter or 0, o.node), reverse=True):
            mark = "[bold green]suggested[/]" if o.node == st.suggested else ""
            if raw.get("proceed") == o.node:
                mark = "[bold yellow]chosen[/]"
            table.add_row(escape(o.node), str(o.counter) if o.counter is not None else "- (no backup)",
                          escape(when(o.wall_time)), mark)
        console.print(table)
    elif st.state != "none":
        console.print("no offers yet (the nodes publish them once the cluster has a leader)")
    expected = [str(v) for v in raw.get("expected") or []]
    if expected and st.state != "none":
        missing = sorted(set(expected) - {o.node for o in st.offers})
        console.print(f"voters: {escape(', '.join(expected))}"
                      + (f"; not offered yet: {escape(', '.join(missing))}" if missing else "; all offered"))
    if raw.get("complete"):
        c = raw["complete"]
        console.print(f"complete: {escape(str(c.get('node')))} restored its backup {c.get('counter')} "
                      f"at {escape(when(c.get('wall_time')))}")
    if raw.get("message"):
        console.print(escape(str(raw["message"])))
    if st.state == "waiting" and st.suggested:
        console.print(f"[bold]to restore the suggested backup:[/] quorate recovery proceed {escape(st.suggested)}")


@app.command("status")
def status(endpoint: EndpointOpt = None, token: TokenOpt = None,
           tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
           as_json: JsonOpt = False) -> None:
    """Show the recovery state, the backups on offer and the suggestion.

    The suggestion is the backup with the highest counter: the most recent
    backup of the lost store."""
    opts = ClusterOptions(endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    with cluster_errors(as_json):
        client = opts.client()
        st = client.recovery_status()
        if as_json:
            print_json(st.raw)
        else:
            print_recovery(stdout(), st, client.last_endpoint)


def _pick(st: RecoveryStatus, node: str | None) -> RecoveryOffer:
    if st.state != "waiting":
        chosen = st.raw.get("proceed")
        raise fail(f"the recovery is {st.state}" + (f" (with {chosen})" if chosen else "")
                   + "; there is nothing to choose now")
    target = node or st.suggested
    offer = next((o for o in st.offers if o.node == target and o.counter is not None), None)
    if offer is None:
        offered = ", ".join(f"{o.node} ({o.counter})" for o in st.offers if o.counter is not None) or "none yet"
        raise fail(f"{target or 'no node'} has no backup on offer; offers: {offered}")
    return offer


@app.command("proceed")
def proceed(
    node: Annotated[str | None, typer.Argument(metavar="[NODE]", show_default=False,
                                               help="Whose backup to restore (default: the suggested one, "
                                                    "the highest counter).")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    wait: Annotated[float, typer.Option("--wait", min=0, help="Seconds to wait for the recovery to "
                                                                "complete (0: do not wait).")] = 60.0,
    endpoint: EndpointOpt = None, token: TokenOpt = None,
    tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore one node's backup into the store and end recovery mode.

    The chosen node writes every key of its backup, the backup counter last,
    then marks the recovery complete; every node then leaves recovery mode.
    A node holding a newer backup keeps it as an orphan file."""
    opts = ClusterOptions(endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    with cluster_errors(as_json):
        client = opts.client()
        st = client.recovery_status()
        offer = _pick(st, node)
        best = next((o for o in st.offers if o.node == st.suggested), None)
        if not yes:
            text = f"Restore the backup {offer.counter} of {offer.node} (taken {when(offer.wall_time)}) into the store?"
            if best is not None and best.counter is not None and (offer.counter or 0) < best.counter:
                text = (f"{best.node} holds a newer backup ({best.counter}); changes after {offer.counter} "
                        f"will be missing (it keeps its backup as an orphan file). " + text)
            typer.confirm(text, abort=True)
        result = client.recovery_proceed(offer.node)
        if not as_json:
            stdout().print(f"recovery proceeding with the backup {result.get('counter')} of "
                           f"{escape(str(result.get('node')))}")
        final = _wait_complete(client, wait) if wait > 0 else None
        if as_json:
            print_json({**result, "complete": final.raw.get("complete") if final else None})
        elif final is not None and final.state == "complete":
            stdout().print("recovery complete: every node is leaving recovery mode")
        elif wait > 0:
            raise fail(f"the recovery did not complete within {wait:g}s; follow it with `quorate recovery status`")


def _wait_complete(client: Client, seconds: float) -> RecoveryStatus | None:
    deadline = time.monotonic() + seconds
    last: RecoveryStatus | None = None
    while time.monotonic() < deadline:
        try:
            last = client.recovery_status()
            if last.state == "complete":
                return last
        except QuorateClientError:
            pass
        time.sleep(0.2)
    return last
