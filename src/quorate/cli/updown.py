"""``quorate up`` and ``quorate down``: a local cluster for development."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from quorate.client import Client, QuorateClientError, Status

from . import render
from .common import DEFAULT_LOCAL_DIR, fail, print_error, stdout
from .local import (
    LocalCluster,
    LocalClusterError,
    NodeSpec,
    busy_ports,
    log_tail,
    reap,
    running_pid,
    start_node,
    stop_nodes,
)

#: After a leader appears, how long to wait for every node to know it.
SETTLE_S = 3.0

DirOpt = Annotated[Path, typer.Option("--dir", help="Directory of the local cluster (its config, data, "
                                      "logs and pid files).")]


def up(
    directory: DirOpt = DEFAULT_LOCAL_DIR,
    nodes: Annotated[int | None, typer.Option("--nodes", min=1, show_default=False,
                                              help="Number of manager nodes (default 3).")] = None,
    base_port: Annotated[int | None, typer.Option(
        "--base-port", show_default=False,
        help="Peer ports are BASE, BASE+1, ...; API ports BASE+100, ... (default 7001).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait for a leader.")] = 30.0,
) -> None:
    """Start a local cluster in the background; return once it has a leader.

    Each node keeps its files under DIR/nodes/<id>/ (data, backup, log) and
    the API URLs are written to DIR/endpoints. On an existing --dir, restart
    the same cluster (same ids, ports and data); running nodes are left alone."""
    try:
        cluster = LocalCluster.load(directory)
        if cluster is None:
            cluster = LocalCluster.new(directory, nodes or 3, base_port or 7001)
        elif (nodes or len(cluster.nodes)) != len(cluster.nodes) or \
                (base_port or cluster.nodes[0].peer_port) != cluster.nodes[0].peer_port:
            stdout().print(f"[yellow]{escape(str(directory))} holds a {len(cluster.nodes)}-node cluster from "
                           f"port {cluster.nodes[0].peer_port}; --nodes and --base-port are ignored[/]")
    except LocalClusterError as exc:
        raise fail(str(exc), code=2) from None
    to_start = [n for n in cluster.nodes if running_pid(cluster, n) is None]
    ports = [p for n in to_start for p in (n.peer_port, n.api_port)]
    busy = busy_ports(cluster.host, ports)
    if busy:
        raise fail(f"ports already in use on {cluster.host}: {', '.join(map(str, busy))}; "
                   "stop what holds them or choose another --base-port (or --dir)")
    cluster.save()
    pids = {n: start_node(cluster, n) for n in to_start}
    for node in cluster.nodes:
        if node not in pids:
            stdout().print(f"{node.id} already running")
    statuses = _wait_for_leader(cluster, pids, timeout)
    if statuses is None:
        _explain_no_leader(cluster, timeout)
        raise typer.Exit(1)
    console = stdout()
    console.print(f"cluster [bold]{escape(cluster.cluster_id)}[/] is up; endpoints "
                  f"(also in {escape(str(cluster.dir / 'endpoints'))}):")
    for endpoint in cluster.endpoints():
        console.print(f"  {endpoint}", highlight=False)
    render.print_cluster(console, statuses)
    if any(isinstance(st, Status) and st.role == "recovery" for _, st in statuses):
        console.print("[bold red]the cluster is in recovery mode[/]: its store is empty and the nodes hold "
                      "backups; see them with `quorate recovery status`, restore one with "
                      "`quorate recovery proceed`")


def _statuses(cluster: LocalCluster) -> list[tuple[str, Status | str]]:
    rows: list[tuple[str, Status | str]] = []
    for endpoint in cluster.endpoints():
        client = Client(endpoint, timeout=1.0, deadline=1.0, max_attempts=1, discover=False)
        try:
            rows.append((endpoint, client.status(endpoint)))
        except QuorateClientError as exc:
            rows.append((endpoint, exc.code))
    return rows


def _wait_for_leader(cluster: LocalCluster, started: dict[NodeSpec, int],
                     timeout: float) -> list[tuple[str, Status | str]] | None:
    """Every node's status once one of them leads and all know it (or
    SETTLE_S after the first leader), None at timeout or when every agent
    we started has exited."""
    deadline = time.monotonic() + timeout
    settle_by: float | None = None
    exited: set[NodeSpec] = set()
    while (now := time.monotonic()) < deadline:
        rows = _statuses(cluster)
        leaders = {st.id for _, st in rows if isinstance(st, Status) and st.role == "leader"}
        if _all_in_recovery(rows):
            return rows  # no node calls itself leader in recovery mode; the table says what to do
        if leaders:
            settle_by = settle_by or now + SETTLE_S
            if now >= settle_by or all(isinstance(st, Status) and st.leader in leaders for _, st in rows):
                return rows
        exited |= {n for n, pid in started.items() if n not in exited and reap(pid)}
        if started and len(exited) == len(started):
            return None
        time.sleep(0.1)
    return None


def _all_in_recovery(rows: list[tuple[str, Status | str]]) -> bool:
    """Every node answers, in recovery mode, and they agree on a leader."""
    statuses = [st for _, st in rows if isinstance(st, Status)]
    leaders = {st.leader for st in statuses}
    return (len(statuses) == len(rows) and all(st.role == "recovery" for st in statuses)
            and len(leaders) == 1 and None not in leaders)


def _explain_no_leader(cluster: LocalCluster, timeout: float) -> None:
    running = {n.id for n in cluster.nodes if running_pid(cluster, n)}
    for node in cluster.nodes:
        state = "running" if node.id in running else "not running"
        stdout().print(f"[bold]{node.id}[/] ({state}) {escape(str(cluster.log_file(node)))}:")
        stdout().print(escape(log_tail(cluster, node)), highlight=False)
    if running:
        print_error(f"no leader within {timeout:g} s (the agents' last log lines are above); "
                    f"stop them with: quorate down --dir {cluster.dir}")
    else:
        print_error("the agents exited before electing a leader (their last log lines are above)")


def down(
    directory: DirOpt = DEFAULT_LOCAL_DIR,
    timeout: Annotated[float, typer.Option("--timeout", min=0, help="Seconds to wait after SIGTERM "
                                           "before SIGKILL.")] = 10.0,
) -> None:
    """Stop the local cluster started by quorate up; data and logs are kept.

    Sends SIGTERM to each agent (checked to still be ours), SIGKILL to those
    left after --timeout, and removes the pid files."""
    try:
        cluster = LocalCluster.load(directory)
    except LocalClusterError as exc:
        raise fail(str(exc), code=2) from None
    if cluster is None:
        stdout().print(f"no local cluster in {escape(str(directory))}; nothing to stop")
        return
    try:
        outcome = stop_nodes(cluster, timeout=timeout)
    except LocalClusterError as exc:
        raise fail(str(exc)) from None
    for node_id, what in outcome.items():
        stdout().print(f"{node_id}: {what}")
