"""``quorate status``: one node's view, or every node's with ``--all``."""

from __future__ import annotations

from typing import Annotated

import typer

from quorate.client import Client, QuorateClientError, Status

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


def status(
    endpoint: EndpointOpt = None,
    token: TokenOpt = None,
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    as_json: JsonOpt = False,
    all_nodes: Annotated[bool, typer.Option("--all", "-a", help="Ask every member (learnt from the "
                                            "member list) and print one row per node.")] = False,
) -> None:
    """Show a node's role, term, leader, electorate, quorum and problems.

    Problems (in red) say what is wrong and what to do about it. With --all,
    one row per member."""
    opts = ClusterOptions(endpoint, token, as_json, TlsFiles(tls_ca, tls_cert, tls_key))
    with cluster_errors(as_json):
        if all_nodes:
            rows = cluster_statuses(opts.client(discover=True, timeout=3.0))
            if as_json:
                print_json([st.raw if isinstance(st, Status) else {"endpoint": ep, "error": st}
                            for ep, st in rows])
            else:
                render.print_cluster(stdout(), rows)
            return
        client = opts.client()
        st = client.status()
        if as_json:
            print_json(st.raw)
        else:
            render.print_status(stdout(), st, client.last_endpoint)


def cluster_statuses(client: Client) -> list[tuple[str, Status | str]]:
    """Each known endpoint's status, or the error it gave."""
    try:
        client.discover()
    except QuorateClientError:
        pass  # the seeds are still worth asking
    rows: list[tuple[str, Status | str]] = []
    for endpoint in client.endpoints:
        try:
            rows.append((endpoint, client.status(endpoint)))
        except QuorateClientError as exc:
            rows.append((endpoint, f"{exc.code}: {exc.message}"))
    return rows
