"""``quorate recover``: the manual way out of a lost quorum (S2), for
clusters whose provider cannot confirm that the missing managers are dead.

Online, ``--from NODE`` asks that survivor what forcing would do (the voters
it keeps and removes, what the provider says of each, the new epoch), shows
it, asks for confirmation (``--yes`` for scripts), then forces. Offline,
``--data-dir DIR --id NODE`` does the same on a stopped node's data.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from quorate.client import Client, QuorateClientError

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

FromOpt = Annotated[str | None, typer.Option("--from", metavar="NODE", show_default=False,
                                             help="The survivor to force the new configuration from (it must "
                                                  "hold the most up-to-date log of those it reaches).")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", show_default=False,
                                                 help="Offline: the stopped node's data directory.")]
IdOpt = Annotated[str | None, typer.Option("--id", show_default=False,
                                           help="Offline: the node id that data directory belongs to.")]
RemoveOpt = Annotated[str | None, typer.Option(
    "--remove", metavar="IDS", show_default=False,
    help="Comma-separated voters to drop (the quorum advice in `quorate status`); default: every voter that "
         "does not answer.")]
YesOpt = Annotated[bool, typer.Option("--yes", help="Do it without asking (scripts).")]


def recover(from_node: FromOpt = None, data_dir: DataDirOpt = None, node_id: IdOpt = None,
            remove: RemoveOpt = None, yes: YesOpt = False,
            endpoint: EndpointOpt = None, token: TokenOpt = None,
            tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
            as_json: JsonOpt = False) -> None:
    """Force a new configuration from one survivor after a quorum was lost.

    Only when the missing managers are gone for good: if one of them is
    merely cut off, forcing makes a second cluster (split brain). Managers
    run by a provider recover by themselves when it confirms they are dead;
    this is for the others. Entries committed only on the removed managers
    are lost; the plan shows each survivor's last index."""
    if data_dir is not None:
        _offline(data_dir, node_id, yes, as_json)
        return
    if from_node is None:
        raise fail("give --from NODE (online) or --data-dir DIR --id NODE (offline)", code=2)
    opts = ClusterOptions(endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    url = _endpoint_of(opts, from_node)
    client = Client([url], token=token, timeout=10.0, deadline=20.0, discover=False,
                    ssl_context=opts.ssl_context())
    dropped = [m.strip() for m in remove.split(",") if m.strip()] if remove else None
    with cluster_errors(as_json):
        plan = client.quorum_plan(url, dropped)
    if not as_json:
        _print_plan(plan)
    _confirm(yes, f"force voters {plan['keep']} from {from_node} and remove {plan['remove']}?")
    with cluster_errors(as_json):
        result = client.quorum_recover(url, dropped)
    if as_json:
        print_json(result)
    else:
        stdout().print(f"[bold]forced[/]: voters {', '.join(result['keep'])}, epoch {result['epoch']}; "
                       f"{from_node} now stands for election. The managers group re-provisions the removed "
                       "managers (`quorate members`, `quorate group show managers`).")


def _endpoint_of(opts: ClusterOptions, node: str) -> str:
    """The API URL of ``node`` among the known endpoints (asked one by one)."""
    for url in opts.endpoints():
        try:
            st = Client([url], token=opts.token, timeout=2.0, deadline=2.0, max_attempts=1,
                        discover=False, ssl_context=opts.ssl_context()).status(url)
        except QuorateClientError:
            continue
        if st.id == node:
            return url
    raise fail(f"no endpoint answers as {node}; give its URL with --endpoint", code=1)


def _print_plan(plan: dict[str, Any]) -> None:
    out = stdout()
    out.print(f"recovering from [bold]{escape(str(plan['from']))}[/] (last index {plan['last_index']}, "
              f"term {plan['last_term']}) into epoch {plan['epoch']}")
    out.print(f"  keep as voters: {', '.join(plan['keep'])}")
    for member in plan["remove"]:
        out.print(f"  remove: {escape(member)} (the provider says {escape(str(plan['provider'].get(member)))})")
    for sid, facts in sorted(plan["survivors"].items()):
        out.print(f"  survivor {escape(sid)}: last index {facts['last_index']} (term {facts['last_term']})")
    out.print("  entries committed only on the removed members are lost")
    for w in plan.get("warnings") or []:
        out.print(f"[bold yellow]warning[/] {escape(w)}")
    if plan["most_up_to_date"] != plan["from"]:
        out.print(f"[bold red]{escape(str(plan['most_up_to_date']))} has a more up-to-date log: recover from it[/]")


def _confirm(yes: bool, question: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise fail("not forcing without --yes (there is no terminal to confirm on)", code=2)
    if not typer.confirm(question, default=False):
        raise fail("nothing was changed", code=1)


def _offline(data_dir: Path, node_id: str | None, yes: bool, as_json: bool) -> None:
    from quorate.recovery.force_offline import force_offline
    from quorate.storage import StorageError

    if node_id is None:
        raise fail("--data-dir needs --id (the node that data directory belongs to)", code=2)
    try:
        plan = force_offline(data_dir, node_id, dry_run=True)
        if not as_json:
            stdout().print(f"{escape(node_id)} in {escape(str(data_dir))}: voters {', '.join(plan.voters_before)}, "
                           f"last index {plan.last_index} (term {plan.last_term}), commit {plan.commit}; "
                           f"it becomes the only voter, epoch {plan.epoch}")
        _confirm(yes, f"make {node_id} the only voter?")
        plan = force_offline(data_dir, node_id)
    except (StorageError, ValueError, OSError) as exc:
        raise fail(f"cannot recover {data_dir}: {exc}") from None
    if as_json:
        print_json({"node": plan.node, "voters_before": plan.voters_before, "epoch": plan.epoch,
                    "last_index": plan.last_index, "forced": True})
    else:
        stdout().print(f"[bold]forced[/]: {escape(node_id)} is the only voter (epoch {plan.epoch}); start its "
                       "agent, and the managers group re-provisions the others")
