"""A cluster of agents on this machine, for development: the layout of its
directory, starting agents as detached processes, and stopping them.

Layout under DIR: ``cluster.json`` (ids, ports, cluster id: a second
``quorate up`` restarts the same cluster with its data), ``endpoints`` (API
URLs, one a line) and ``nodes/<id>/{data,backup,log}/`` with
``nodes/<id>/agent.pid``.

Agents are started with ``os.posix_spawn(setsid=True)``: a new session, so
they outlive ``quorate up`` and a Ctrl-C in its terminal, and no
``subprocess.Popen`` object left to warn about a child still running. A pid
file is only trusted while ``/proc/<pid>/cmdline`` is still a quorate agent
with this node's data dir, so a recycled pid is never signalled.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CLUSTER_FILE = "cluster.json"
ENDPOINTS_FILE = "endpoints"
API_PORT_OFFSET = 100


class LocalClusterError(Exception):
    """The local cluster cannot be started or read; the message says why."""


@dataclass(frozen=True, slots=True)
class NodeSpec:
    id: str
    peer_port: int
    api_port: int


@dataclass(frozen=True, slots=True)
class LocalCluster:
    dir: Path
    host: str
    cluster_id: str
    nodes: tuple[NodeSpec, ...]

    @classmethod
    def new(cls, directory: Path, nodes: int, base_port: int, host: str = "127.0.0.1") -> LocalCluster:
        if nodes < 1:
            raise LocalClusterError("--nodes must be at least 1")
        if not 1024 <= base_port <= 65535 - API_PORT_OFFSET - nodes:
            raise LocalClusterError(f"--base-port {base_port} leaves no room for {nodes} nodes")
        specs = tuple(NodeSpec(f"n{i + 1}", base_port + i, base_port + API_PORT_OFFSET + i) for i in range(nodes))
        return cls(directory.resolve(), host, f"local-{secrets.token_hex(4)}", specs)

    @classmethod
    def load(cls, directory: Path) -> LocalCluster | None:
        path = directory / CLUSTER_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            specs = tuple(NodeSpec(str(n["id"]), int(n["peer_port"]), int(n["api_port"])) for n in data["nodes"])
            return cls(directory.resolve(), str(data["host"]), str(data["cluster_id"]), specs)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LocalClusterError(f"{path} is not a quorate cluster file: {exc}") from exc

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = {"host": self.host, "cluster_id": self.cluster_id,
                "nodes": [{"id": n.id, "peer_port": n.peer_port, "api_port": n.api_port} for n in self.nodes]}
        _write_atomic(self.dir / CLUSTER_FILE, json.dumps(data, indent=2) + "\n")
        _write_atomic(self.dir / ENDPOINTS_FILE, "".join(f"{e}\n" for e in self.endpoints()))

    # -- layout -------------------------------------------------------------

    def node_dir(self, node: NodeSpec) -> Path:
        return self.dir / "nodes" / node.id

    def data_dir(self, node: NodeSpec) -> Path:
        return self.node_dir(node) / "data"

    def backup_dir(self, node: NodeSpec) -> Path:
        return self.node_dir(node) / "backup"

    def log_file(self, node: NodeSpec) -> Path:
        return self.node_dir(node) / "log" / "agent.log"

    def pid_file(self, node: NodeSpec) -> Path:
        return self.node_dir(node) / "agent.pid"

    def endpoint(self, node: NodeSpec) -> str:
        return f"http://{self.host}:{node.api_port}"

    def endpoints(self) -> list[str]:
        return [self.endpoint(n) for n in self.nodes]

    def agent_argv(self, node: NodeSpec) -> list[str]:
        bootstrap = ",".join(f"{n.id}={self.host}:{n.peer_port}" for n in self.nodes)
        return [sys.executable, "-P", "-m", "quorate", "agent", "--id", node.id,
                "--data-dir", str(self.data_dir(node)), "--peer-addr", f"{self.host}:{node.peer_port}",
                "--api-addr", f"{self.host}:{node.api_port}", "--bootstrap", bootstrap,
                "--cluster-id", self.cluster_id, "--backup-dir", str(self.backup_dir(node))]


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


# -- processes ----------------------------------------------------------------


def is_agent(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is a live quorate agent serving ``data_dir``."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    argv = [a.decode(errors="replace") for a in args]
    if state == "Z" or "agent" not in argv or not any("quorate" in a for a in argv):
        return False
    try:
        return argv[argv.index("--data-dir") + 1] == str(data_dir)
    except (ValueError, IndexError):
        return False


def running_pid(cluster: LocalCluster, node: NodeSpec) -> int | None:
    """The pid of this node's agent if its pid file names a live one."""
    try:
        pid = int(cluster.pid_file(node).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if is_agent(pid, cluster.data_dir(node)) else None


def start_node(cluster: LocalCluster, node: NodeSpec) -> int:
    """Start one agent, detached; output goes to its log file."""
    for sub in ("data", "backup", "log"):
        (cluster.node_dir(node) / sub).mkdir(parents=True, exist_ok=True)
    log = cluster.log_file(node)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = cluster.agent_argv(node)
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
    _write_atomic(cluster.pid_file(node), f"{pid}\n")
    return pid


def reap(pid: int) -> bool:
    """Collect ``pid`` if it is our exited child; True when it has exited."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


def _alive(pid: int, data_dir: Path) -> bool:
    """Our own child is alive until waitpid collects it (its /proc cmdline
    empties while it exits, before it can be reaped); any other process is
    alive while /proc still shows this node's agent."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return is_agent(pid, data_dir)
    return done != pid


def stop_nodes(cluster: LocalCluster, timeout: float = 10.0, kill_after: float = 5.0) -> dict[str, str]:
    """SIGTERM every running agent, SIGKILL those still there after
    ``timeout`` seconds; remove the pid files. Returns id -> what happened."""
    running = {n: pid for n in cluster.nodes if (pid := running_pid(cluster, n)) is not None}
    outcome = {n.id: "not running" for n in cluster.nodes if n not in running}
    for pid in running.values():
        _signal(pid, signal.SIGTERM)
    left = _wait_gone(cluster, running, timeout)
    for node, pid in running.items():
        outcome[node.id] = "stopped"
        if node in left:
            _signal(pid, signal.SIGKILL)
            outcome[node.id] = "killed (did not stop on SIGTERM)"
    if _wait_gone(cluster, left, kill_after):
        raise LocalClusterError("agents survived SIGKILL: " + ", ".join(n.id for n in left))
    for node in cluster.nodes:
        cluster.pid_file(node).unlink(missing_ok=True)
    return outcome


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(cluster: LocalCluster, pids: dict[NodeSpec, int], timeout: float) -> dict[NodeSpec, int]:
    """The processes still alive after at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    left = dict(pids)
    while left:
        left = {n: p for n, p in left.items() if _alive(p, cluster.data_dir(n))}
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return left


def log_tail(cluster: LocalCluster, node: NodeSpec, lines: int = 15) -> str:
    try:
        text = cluster.log_file(node).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"
