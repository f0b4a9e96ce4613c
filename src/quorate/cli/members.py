"""``quorate members``: list, add, promote, remove members, move leadership.

Options given to the group (``quorate members --json``) apply to the
subcommand; without a subcommand the members are listed.
"""

from __future__ import annotations

from typing import Annotated

import typer

from . import render
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
    print_json,
    stdout,
)

app = typer.Typer(help="List and change the cluster's members. Without a subcommand: list them.")

IdArg = Annotated[str, typer.Argument(metavar="ID", help="The member's node id.", show_default=False)]


def _opts(ctx: typer.Context, endpoint: str | None, token: str | None, as_json: bool,
          tls: TlsFiles) -> ClusterOptions:
    parent = ctx.obj if isinstance(ctx.obj, ClusterOptions) else None
    return ClusterOptions(endpoint, token, as_json, tls).merged(parent)


@app.callback(invoke_without_command=True)
def members(ctx: typer.Context, endpoint: EndpointOpt = None, token: TokenOpt = None,
            tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
            as_json: JsonOpt = False) -> None:
    """List and change the cluster's members. Without a subcommand: list them."""
    ctx.obj = ClusterOptions(endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    if ctx.invoked_subcommand is None:
        _list(ctx.obj)


def _list(opts: ClusterOptions) -> None:
    with cluster_errors(opts.json):
        found = opts.client().members()
        if opts.json:
            print_json([dict(m.raw) for m in found])
        else:
            render.print_members(stdout(), found)


@app.command("list")
def list_members(ctx: typer.Context, endpoint: EndpointOpt = None, token: TokenOpt = None,
                 tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
                 as_json: JsonOpt = False) -> None:
    """List the members: role (voter or learner), health, addresses, last contact."""
    _list(_opts(ctx, endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key)))


@app.command("add")
def add(ctx: typer.Context, node_id: IdArg,
        peer_addr: Annotated[str, typer.Option("--peer-addr", help="The new node's peer address, HOST:PORT.",
                                               show_default=False)],
        api_addr: Annotated[str, typer.Option("--api-addr", help="The new node's API address, HOST:PORT.",
                                              show_default=False)],
        endpoint: EndpointOpt = None, token: TokenOpt = None,
        tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
        as_json: JsonOpt = False) -> None:
    """Add a node as a learner; it becomes a voter once caught up.

    Usually the new node does this itself: quorate agent --join URL."""
    opts = _opts(ctx, endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    with cluster_errors(opts.json):
        found = opts.client().join(node_id, peer_addr, api_addr)
        if opts.json:
            print_json([dict(m.raw) for m in found])
        else:
            render.print_members(stdout(), found)


@app.command("promote")
def promote(ctx: typer.Context, node_id: IdArg, endpoint: EndpointOpt = None, token: TokenOpt = None,
            tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
            as_json: JsonOpt = False) -> None:
    """Make a learner a voter now (refused with conflict while it lags)."""
    opts = _opts(ctx, endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    with cluster_errors(opts.json):
        opts.client().promote(node_id)
        _done(opts, {"promoted": node_id}, f"{node_id} promoted to voter")


@app.command("remove")
def remove(ctx: typer.Context, node_id: IdArg,
           force: Annotated[bool, typer.Option("--force", help="Remove it even if it is alive or the removal "
                                                           "breaks the quorum.")] = False,
           endpoint: EndpointOpt = None, token: TokenOpt = None,
           tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
           as_json: JsonOpt = False) -> None:
    """Remove a member through consensus (a dead one, or to shrink).

    Refused, with the reason, when the member is alive (make it leave
    instead) or when the removal would leave too few live voters for a
    quorum; --force overrides both."""
    opts = _opts(ctx, endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    with cluster_errors(opts.json):
        opts.client().remove(node_id, force=force)
        _done(opts, {"removed": node_id, "forced": force}, f"{node_id} removed" + (" (forced)" if force else ""))


@app.command("leave")
def leave(ctx: typer.Context, endpoint: EndpointOpt = None, token: TokenOpt = None,
          tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
          as_json: JsonOpt = False) -> None:
    """Make the node at --endpoint leave the cluster for good.

    It hands leadership over if it leads, has itself removed from the
    configuration, then stops."""
    opts = _opts(ctx, endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    urls = opts.endpoints()
    if len(urls) != 1:
        raise typer.BadParameter("give exactly one node: the one that leaves", param_hint="--endpoint")
    with cluster_errors(opts.json):
        data = opts.client().leave(urls[0])
        _done(opts, data, f"{data.get('left')} left the cluster and is stopping")


@app.command("transfer")
def transfer(ctx: typer.Context,
             node_id: Annotated[str | None, typer.Argument(
                 metavar="ID", help="The voter to lead (default: the most caught-up one).", show_default=False)] = None,
             endpoint: EndpointOpt = None, token: TokenOpt = None,
             tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
             as_json: JsonOpt = False) -> None:
    """Hand leadership to another voter."""
    opts = _opts(ctx, endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    with cluster_errors(opts.json):
        target = opts.client().transfer_leader(node_id)
        _done(opts, {"target": target}, f"leadership transfer to {target or 'the best voter'} started")


def _done(opts: ClusterOptions, data: dict[str, object], text: str) -> None:
    if opts.json:
        print_json(data)
    else:
        typer.echo(text)
