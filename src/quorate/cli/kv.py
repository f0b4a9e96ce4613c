"""``quorate kv``: read, write, list and watch keys."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer

from quorate.client import Client, NotFoundError

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

app = typer.Typer(help="Read, write, list and watch keys.", no_args_is_help=True)

KeyArg = Annotated[str, typer.Argument(metavar="KEY", help="The key ('/' is allowed, e.g. config/db/url).",
                                       show_default=False)]
StaleOpt = Annotated[bool, typer.Option("--stale", help="Read this node's copy (fast, may be behind) "
                                        "instead of a linearizable read.")]
PrevRevOpt = Annotated[int | None, typer.Option(
    "--prev-revision", min=0, show_default=False,
    help="Only if the key's mod revision is still this (0: only if the key does not exist).")]


@app.command("get")
def get(key: KeyArg, stale: StaleOpt = False, endpoint: EndpointOpt = None, token: TokenOpt = None,
        tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
        as_json: JsonOpt = False) -> None:
    """Print a key's value (exit 1 with not_found when it is absent)."""
    opts = ClusterOptions(endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    with cluster_errors(as_json):
        kv = opts.client().get(key, stale=stale)
        if kv is None:
            raise NotFoundError(f"key {key!r} not found", status=404)
        if as_json:
            print_json(kv.raw)
        else:
            typer.echo(kv.value)


@app.command("put")
def put(key: KeyArg,
        value: Annotated[str, typer.Argument(metavar="VALUE", help="The value; '-' reads it from standard input.",
                                             show_default=False)],
        prev_revision: PrevRevOpt = None, endpoint: EndpointOpt = None, token: TokenOpt = None,
        tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
        as_json: JsonOpt = False) -> None:
    """Set a key; prints the key's new revision.

    With --prev-revision it is a compare-and-set that fails with
    revision_mismatch (exit 1) when the key has changed."""
    if value == "-":
        value = sys.stdin.read()
    opts = ClusterOptions(endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    with cluster_errors(as_json):
        revision = opts.client().put(key, value, prev_revision=prev_revision)
        if as_json:
            print_json({"revision": revision})
        else:
            typer.echo(f"revision {revision}")


@app.command("del")
def delete(key: KeyArg, prev_revision: PrevRevOpt = None, endpoint: EndpointOpt = None, token: TokenOpt = None,
           tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
           as_json: JsonOpt = False) -> None:
    """Delete a key (exit 1 with not_found when it is absent)."""
    opts = ClusterOptions(endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    with cluster_errors(as_json):
        revision = opts.client().delete(key, prev_revision=prev_revision)
        if revision is None:
            raise NotFoundError(f"key {key!r} not found", status=404)
        if as_json:
            print_json({"revision": revision})
        else:
            typer.echo(f"deleted at revision {revision}")


@app.command("ls")
def ls(prefix: Annotated[str, typer.Argument(metavar="PREFIX", help="Key prefix (empty: every key).")] = "",
       limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many keys.",
                                                 show_default=False)] = None,
       stale: StaleOpt = False, endpoint: EndpointOpt = None, token: TokenOpt = None,
       tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
       as_json: JsonOpt = False) -> None:
    """List the keys under a prefix, in key order, with their revisions."""
    opts = ClusterOptions(endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    with cluster_errors(as_json):
        result = opts.client().list(prefix, limit=limit, stale=stale)
        if as_json:
            print_json(result.raw)
        else:
            render.print_kvs(stdout(), result)


@app.command("watch")
def watch(prefix: Annotated[str, typer.Argument(metavar="PREFIX", help="Key prefix (empty: every key).")] = "",
          from_revision: Annotated[int | None, typer.Option(
              "--from-revision", min=1, show_default=False,
              help="First revision to report (default: changes from now on).")] = None,
          count: Annotated[int | None, typer.Option("--count", min=1, show_default=False,
                                                    help="Exit after this many events.")] = None,
          timeout: Annotated[float | None, typer.Option("--timeout", min=0, show_default=False,
                                                        help="Exit after this many seconds.")] = None,
          endpoint: EndpointOpt = None, token: TokenOpt = None,
          tls_ca: TlsCaOpt = None, tls_cert: TlsCertOpt = None, tls_key: TlsKeyOpt = None,
          as_json: JsonOpt = False) -> None:
    """Print changes under a prefix as they happen.

    One line per event (with --json, one JSON object per line). Runs until
    Ctrl-C, --count events or --timeout seconds."""
    opts = ClusterOptions(endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    with cluster_errors(as_json):
        client = opts.client()
        if from_revision is None:
            from_revision = client.list(prefix, limit=1).revision + 1
        _follow(client, prefix, from_revision, count, timeout, as_json)


def _follow(client: Client, prefix: str, revision: int, count: int | None, timeout: float | None,
            as_json: bool) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    seen = 0
    while True:
        poll = 30.0 if deadline is None else deadline - time.monotonic()
        if poll <= 0:
            return
        batch = client.watch_once(prefix, revision, timeout=min(poll, 30.0))
        for event in batch.events:
            typer.echo(json.dumps(dict(event.raw), sort_keys=True) if as_json else render.event_line(event))
            seen += 1
            if count is not None and seen >= count:
                return
        revision = batch.next_revision
