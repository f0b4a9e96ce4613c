"""``quorate up`` and ``quorate down``: a local cluster for development."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from quorate.client import Client, QuorateClientError, Status
from quorate.manager.plan import parse_incarnation
from quorate.manager.spec import SpecError, member_id
from quorate.providers.base import InstanceState

from . import render
from .common import DEFAULT_LOCAL_DIR, fail, print_error, stdout
from .groups import print_instances
from .local import (
    LocalCluster,
    LocalClusterError,
    load_worker_specs,
    log_tail,
    manager_instances,
    start_managers,
    stop_cluster,
)

#: After a leader appears, how long to wait for every node to know it.
SETTLE_S = 3.0

DirOpt = Annotated[Path, typer.Option("--dir", help="Directory of the local cluster (its config, data, "
                                      "logs and instance records).")]


def up(
    directory: DirOpt = DEFAULT_LOCAL_DIR,
    nodes: Annotated[int | None, typer.Option("--nodes", min=1, show_default=False,
                                              help="Number of manager nodes (default 3).")] = None,
    base_port: Annotated[int | None, typer.Option(
        "--base-port", show_default=False,
        help="Manager peer ports are BASE, BASE+1, ...; API ports BASE+100, ...; the demo workers "
             "BASE+200, ... (default 7001).")] = None,
    spec: Annotated[Path | None, typer.Option(
        "--spec", show_default=False,
        help="YAML/JSON file with the worker groups to run (default: the embedded demo group 'workers', "
             "two web servers). Applied on every up when given; the default only on the first.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait for a leader, and "
                                           "again for every manager to be a voter.")] = 60.0,
) -> None:
    """Start a local cluster in the background, with its managers and workers.

    Returns once it has a leader and its managers are voters. The first manager bootstraps the cluster; the managers group (n1..nN)
    and the worker groups are applied, and the leader starts the other
    managers and the workers itself. On an existing --dir, the managers that
    `quorate down` stopped are restarted in place, with their data."""
    try:
        cluster = LocalCluster.load(directory)
        if cluster is None:
            cluster = LocalCluster.new(directory, nodes or 3, base_port or 7001)
        elif (nodes or cluster.managers) != cluster.managers or (base_port or cluster.base_port) != cluster.base_port:
            stdout().print(f"[yellow]{escape(str(directory))} holds a {cluster.managers}-manager cluster from "
                           f"port {cluster.base_port}; --nodes and --base-port are ignored[/]")
        workers = load_worker_specs(spec) if spec is not None else cluster.default_worker_specs()
    except (LocalClusterError, SpecError) as exc:
        raise fail(f"{exc}; nothing was started", code=2) from None
    cluster.save()
    console = stdout()
    try:
        started = start_managers(cluster)
    except (LocalClusterError, OSError) as exc:
        raise fail(str(exc)) from None
    for slot, what in started.items():
        console.print(f"{slot}: {what}", highlight=False)
    statuses = _wait_for_leader(cluster, timeout)
    if statuses is None:
        _explain_no_leader(cluster, timeout)
        raise typer.Exit(1)
    if any(isinstance(st, Status) and st.role == "recovery" for _, st in statuses):
        render.print_cluster(console, statuses)
        console.print("[bold red]the cluster is in recovery mode[/]: its store is empty and the nodes hold "
                      "backups; see them with `quorate recovery status`, restore one with "
                      "`quorate recovery proceed`")
        return
    client = Client(cluster.endpoints(), timeout=10.0)
    try:
        client.apply_group(cluster.managers_spec().to_json())
        existing = {g["id"] for g in client.list_groups()}
        for group in workers:
            if spec is not None or group.id not in existing:
                client.apply_group(group.to_json())
                console.print(f"applied group {group.id}", highlight=False)
    except QuorateClientError as exc:
        raise fail(f"the cluster is up but the groups could not be applied: {exc}") from None
    if not _wait_for_voters(cluster, client, timeout):
        print_error(f"not every manager is a voter after {timeout:g} s; the cluster keeps provisioning: "
                    "watch `quorate members` and `quorate group show managers`")
    console.print(f"cluster [bold]{escape(cluster.cluster_id)}[/] is up; endpoints "
                  f"(also in {escape(str(cluster.dir / 'endpoints'))}):")
    for endpoint in cluster.endpoints():
        console.print(f"  {endpoint}", highlight=False)
    render.print_cluster(console, _statuses(cluster))
    try:
        print_instances(console, client.list_instances())
    except QuorateClientError:
        pass


def _statuses(cluster: LocalCluster) -> list[tuple[str, Status | str]]:
    rows: list[tuple[str, Status | str]] = []
    for endpoint in cluster.endpoints():
        client = Client(endpoint, timeout=1.0, deadline=1.0, max_attempts=1, discover=False)
        try:
            rows.append((endpoint, client.status(endpoint)))
        except QuorateClientError as exc:
            rows.append((endpoint, exc.code))
    return rows


def _wait_for_leader(cluster: LocalCluster, timeout: float) -> list[tuple[str, Status | str]] | None:
    """Every node's status once one of them leads and the others that
    answer know it (or SETTLE_S after the first leader); None at timeout or
    when no manager runs any more."""
    deadline = time.monotonic() + timeout
    settle_by: float | None = None
    while (now := time.monotonic()) < deadline:
        rows = _statuses(cluster)
        answering = [st for _, st in rows if isinstance(st, Status)]
        leaders = {st.id for st in answering if st.role == "leader"}
        if _all_in_recovery(answering):
            return rows  # no node calls itself leader in recovery mode; the table says what to do
        if leaders:
            settle_by = settle_by or now + SETTLE_S
            if now >= settle_by or all(st.leader in leaders for st in answering):
                return rows
        if not answering and not any(i.state is InstanceState.RUNNING for i in manager_instances(cluster).values()):
            return None
        time.sleep(0.1)
    return None


def _all_in_recovery(statuses: list[Status]) -> bool:
    """Every answering node is in recovery mode, and they agree on a leader."""
    leaders = {st.leader for st in statuses}
    return bool(statuses) and all(st.role == "recovery" for st in statuses) and len(leaders) == 1 \
        and None not in leaders


def _wait_for_voters(cluster: LocalCluster, client: Client, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    shown = -1
    while time.monotonic() < deadline:
        try:
            voters = [m for m in client.members() if m.role == "voter" and m.health != "departed"]
        except QuorateClientError:
            voters = []
        if len(voters) != shown:
            shown = len(voters)
            stdout().print(f"managers: {shown}/{cluster.managers} voters", highlight=False)
        if shown >= cluster.managers:
            return True
        time.sleep(0.2)
    return False


def _explain_no_leader(cluster: LocalCluster, timeout: float) -> None:
    managers = manager_instances(cluster)
    for slot, inst in sorted(managers.items()):
        log = cluster.log_file(member_id(slot, parse_incarnation(inst.group, slot, inst.id) or 1))
        stdout().print(f"[bold]{slot}[/] ({inst.state.value}) {escape(str(log))}:")
        stdout().print(escape(log_tail(log)), highlight=False)
    if any(i.state is InstanceState.RUNNING for i in managers.values()):
        print_error(f"no leader within {timeout:g} s (the agents' last log lines are above); "
                    f"stop them with: quorate down --dir {cluster.dir}")
    else:
        print_error("the agents exited before electing a leader (their last log lines are above)")


def down(directory: DirOpt = DEFAULT_LOCAL_DIR) -> None:
    """Stop the local cluster started by quorate up and everything it runs.

    The managers get SIGTERM (SIGKILL if they linger) and keep their data,
    so `quorate up` restarts them in place; the worker instances are
    destroyed (the leader starts them anew after the next up)."""
    try:
        cluster = LocalCluster.load(directory)
    except LocalClusterError as exc:
        raise fail(str(exc), code=2) from None
    if cluster is None:
        stdout().print(f"no local cluster in {escape(str(directory))}; nothing to stop")
        return
    outcome = stop_cluster(cluster)
    if not outcome:
        stdout().print("nothing was running")
    for instance_id, what in sorted(outcome.items()):
        stdout().print(f"{instance_id}: {what}", highlight=False)
