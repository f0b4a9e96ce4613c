"""A cluster of agents on this machine, for development, run the way a
production cluster runs itself: the managers are the group ``managers`` of
the process provider, so the cluster starts, restarts and replaces them.

``quorate up`` starts one manager (n1) through the provider, which
bootstraps the cluster; once it leads, up applies the managers group (n1..nN)
and the worker groups, and the leader provisions the rest itself. A second
``up`` on the same directory restarts, in place with their own data, the
managers that ``quorate down`` stopped.

Layout under DIR: ``cluster.json`` (cluster id, host, manager count, base
port), ``endpoints`` (the managers' API URLs, one a line),
``nodes/<id>/{data,backup,log}/`` per manager (a replacement manager has an
id of its own, such as ``n2-2``, and so fresh directories), ``instances/``
(the process provider's records and instance logs) and ``www/`` (what the
demo workers serve).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from quorate.manager.plan import parse_incarnation
from quorate.manager.spec import MANAGERS_GROUP, GroupSpec, load_spec_text, parse_spec, render
from quorate.providers.base import Instance, InstanceState, LaunchSpec
from quorate.providers.process import ProcessProvider

CLUSTER_FILE = "cluster.json"
ENDPOINTS_FILE = "endpoints"
API_PORT_OFFSET = 100
WORKER_PORT_OFFSET = 200


class LocalClusterError(Exception):
    """The local cluster cannot be started or read; the message says why."""


@dataclass(frozen=True, slots=True)
class LocalCluster:
    dir: Path
    host: str
    cluster_id: str
    managers: int
    base_port: int

    @classmethod
    def new(cls, directory: Path, managers: int, base_port: int, host: str = "127.0.0.1") -> LocalCluster:
        if managers < 1:
            raise LocalClusterError("--nodes must be at least 1")
        if not 1024 <= base_port <= 65535 - WORKER_PORT_OFFSET - managers:
            raise LocalClusterError(f"--base-port {base_port} leaves no room for {managers} nodes")
        return cls(directory.resolve(), host, f"local-{secrets.token_hex(4)}", managers, base_port)

    @classmethod
    def load(cls, directory: Path) -> LocalCluster | None:
        path = directory / CLUSTER_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(directory.resolve(), str(data["host"]), str(data["cluster_id"]), int(data["managers"]),
                       int(data["base_port"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LocalClusterError(f"{path} is not a quorate cluster file: {exc}") from exc

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = {"host": self.host, "cluster_id": self.cluster_id, "managers": self.managers,
                "base_port": self.base_port}
        _write_atomic(self.dir / CLUSTER_FILE, json.dumps(data, indent=2) + "\n")
        _write_atomic(self.dir / ENDPOINTS_FILE, "".join(f"{e}\n" for e in self.endpoints()))

    # -- layout -------------------------------------------------------------

    def slots(self) -> list[str]:
        """The managers' logical ids: n1, n2, ..."""
        return [f"n{i + 1}" for i in range(self.managers)]

    def peer_port(self, index: int) -> int:
        return self.base_port + index

    def api_port(self, index: int) -> int:
        return self.base_port + API_PORT_OFFSET + index

    def endpoints(self) -> list[str]:
        return [f"http://{self.host}:{self.api_port(i)}" for i in range(self.managers)]

    @property
    def provider_dir(self) -> Path:
        return self.dir / "instances"

    def node_dir(self, member: str) -> Path:
        return self.dir / "nodes" / member

    def log_file(self, member: str) -> Path:
        return self.node_dir(member) / "log" / "agent.log"

    def manager_ports(self) -> list[int]:
        return [p for i in range(self.managers) for p in (self.peer_port(i), self.api_port(i))]

    # -- the groups ----------------------------------------------------------

    def managers_spec(self) -> GroupSpec:
        """The managers as a group: one agent per logical id, each on the
        ports of its slot, with its files under nodes/<member id>/."""
        node = f"{self.dir}/nodes/{{member_id}}"
        return parse_spec({
            "id": MANAGERS_GROUP,
            "logical_ids": self.slots(),
            "template": {
                "command": sys.executable,
                "args": ["-P", "-m", "quorate", "agent", "--id", "{member_id}",
                         "--data-dir", f"{node}/data", "--backup-dir", f"{node}/backup",
                         "--log-file", f"{node}/log/agent.log",
                         "--peer-addr", f"{self.host}:{{peer_port}}", "--api-addr", f"{self.host}:{{api_port}}",
                         "--cluster-id", self.cluster_id, "--provider-dir", str(self.provider_dir),
                         "--join", "{join}"],
                "env": {"PYTHONUNBUFFERED": "1"},
                "ports": {"peer_port": self.peer_port(0), "api_port": self.api_port(0)},
                "state_path": f"{node}/data",
            },
        })

    def default_worker_specs(self) -> list[GroupSpec]:
        """The embedded demo workload: two small web servers on
        BASE+200, BASE+201, health-checked over HTTP."""
        return [parse_spec({
            "id": "workers",
            "size": 2,
            "template": {"command": sys.executable, "args": ["-m", "http.server", "{port}", "--bind", self.host],
                         "working_dir": str(self.dir / "www"),
                         "ports": {"port": self.base_port + WORKER_PORT_OFFSET}},
            "health": {"type": "http", "url": f"http://{self.host}:{{port}}/", "interval_s": 1.0,
                       "failure_threshold": 3, "start_period_s": 5.0},
        })]

    def bootstrap_launch(self) -> LaunchSpec:
        """n1's first start: the managers template, bootstrapping a
        one-member cluster instead of joining one."""
        launch = render(self.managers_spec(), self.slots()[0], 1)
        argv = list(launch.argv)
        i = argv.index("--join")
        argv[i:i + 2] = ["--bootstrap", f"n1={self.host}:{self.peer_port(0)}"]
        return LaunchSpec(launch.instance_id, launch.group, launch.logical_id, launch.slot, tuple(argv),
                          launch.env, launch.working_dir, launch.spec_hash, launch.state_path)

    def provider(self) -> ProcessProvider:
        return ProcessProvider(self.provider_dir)


def load_worker_specs(path: Path) -> list[GroupSpec]:
    """The groups of a spec file for ``quorate up --spec`` (the managers
    group is up's own and may not be in it)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise LocalClusterError(f"cannot read {path}: {exc}") from exc
    specs = load_spec_text(text, str(path))
    if any(s.id == MANAGERS_GROUP for s in specs):
        raise LocalClusterError(f"{path}: the managers group is set by quorate up (--nodes); leave it out")
    return specs


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def busy_ports(host: str, ports: Iterable[int]) -> list[int]:
    """The ports an agent could not bind (it binds with SO_REUSEADDR too)."""
    busy = []
    for port in ports:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                busy.append(port)
    return busy


# -- starting and stopping, through the provider -----------------------------------------


def latest_managers(instances: list[Instance]) -> dict[str, Instance]:
    """Per slot, the manager instance of the highest incarnation."""
    out: dict[str, Instance] = {}
    for inst in instances:
        if inst.group != MANAGERS_GROUP:
            continue
        cur = out.get(inst.slot)
        if cur is None or _incarnation(inst) > _incarnation(cur):
            out[inst.slot] = inst
    return out


def _incarnation(inst: Instance) -> int:
    return parse_incarnation(inst.group, inst.slot, inst.id) or 0


def start_managers(cluster: LocalCluster) -> dict[str, str]:
    """Start the managers that are not running: n1 alone on a new cluster
    (it bootstraps; the leader provisions the others), else every stopped
    manager whose data is intact, in place. Returns slot -> what happened."""
    return asyncio.run(_start_managers(cluster))


async def _start_managers(cluster: LocalCluster) -> dict[str, str]:
    provider = cluster.provider()
    known = latest_managers(await provider.list(MANAGERS_GROUP))
    if not known:
        busy = busy_ports(cluster.host, cluster.manager_ports())
        if busy:
            raise LocalClusterError(f"ports already in use on {cluster.host}: {', '.join(map(str, busy))}; "
                                    "stop what holds them or choose another --base-port (or --dir)")
        for sub in ("www", "nodes"):
            (cluster.dir / sub).mkdir(parents=True, exist_ok=True)
        inst = await provider.create(cluster.bootstrap_launch(), provider.fencing_term())
        return {"n1": f"started (pid {inst.pid}), bootstrapping the cluster"}
    spec = cluster.managers_spec()
    outcome: dict[str, str] = {}
    for slot, inst in sorted(known.items()):
        if inst.state in (InstanceState.RUNNING, InstanceState.STARTING):
            outcome[slot] = f"already running (pid {inst.pid})"
        elif inst.state is InstanceState.TERMINATED and provider.state_intact(inst) and slot in spec.slots():
            index = spec.slots().index(slot)
            busy = busy_ports(cluster.host, [cluster.peer_port(index), cluster.api_port(index)])
            if busy:
                outcome[slot] = f"not started: ports {busy} are in use"
                continue
            launch = render(spec, slot, _incarnation(inst))
            started = await provider.create(launch, provider.fencing_term())
            outcome[slot] = f"restarted in place (pid {started.pid})"
        else:
            outcome[slot] = f"{inst.state.value}, no data to restart from: the cluster will replace it"
    return outcome


def stop_cluster(cluster: LocalCluster) -> dict[str, str]:
    """Stop every manager (their records stay, so ``up`` restarts them in
    place), then destroy the other instances. Returns instance -> outcome."""
    return asyncio.run(_stop_cluster(cluster))


async def _stop_cluster(cluster: LocalCluster) -> dict[str, str]:
    provider = cluster.provider()
    outcome: dict[str, str] = {}
    # A manager still shutting down could restart a peer stopped a moment
    # before: look again until none runs (its controllers stop first).
    for _ in range(5):
        running = [i for i in await provider.list(MANAGERS_GROUP) if i.state is InstanceState.RUNNING]
        if not running:
            break
        results = await asyncio.gather(*(provider.stop(i.id) for i in running), return_exceptions=True)
        for inst, res in zip(running, results):
            outcome[inst.id] = f"stopped (pid {inst.pid})" if res is True else f"not stopped: {res}"
    term = provider.fencing_term()
    for inst in await provider.list(None):
        if inst.group == MANAGERS_GROUP:
            continue
        try:
            await provider.destroy(inst.id, term)
            outcome[inst.id] = "destroyed" if inst.state is InstanceState.RUNNING else "removed (was not running)"
        except Exception as exc:  # report and carry on with the others
            outcome[inst.id] = f"not destroyed: {exc}"
    return outcome


def manager_instances(cluster: LocalCluster) -> dict[str, Instance]:
    return asyncio.run(_list_latest(cluster))


async def _list_latest(cluster: LocalCluster) -> dict[str, Instance]:
    return latest_managers(await cluster.provider().list(MANAGERS_GROUP))


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"
