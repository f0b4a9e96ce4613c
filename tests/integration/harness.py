"""Real quorate agents as processes on 127.0.0.1, for integration tests.

Every wait polls a condition against a generous deadline (the machine may be
a loaded 2-core box); nothing sleeps and hopes. Logs of every node are kept
in the test's tmp dir and printed when a test fails (see conftest.py).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

T = TypeVar("T")
DEADLINE = 30.0


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n: int) -> list[int]:
    """Free ports *below* the kernel's ephemeral range: a port there can
    never be handed to some outgoing connection while its agent is down
    (which would make the agent's restart fail to bind)."""
    rng = random.SystemRandom()
    low = max(10_000, _ephemeral_low() - 12_000)
    high = _ephemeral_low() - 1
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randint(low, high)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def wait_for(what: str, check: Callable[[], T | None], timeout: float = DEADLINE, every: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # a node may be down mid-check; keep polling
            last_exc = exc
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_exc!r})")


@dataclass
class HttpResult:
    status: int
    body: Any


def http(method: str, url: str, body: Any = None, timeout: float = 10.0, raw: bytes | None = None,
         headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None) -> HttpResult:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            payload = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        payload, status = exc.read(), exc.code
    try:
        return HttpResult(status, json.loads(payload) if payload else None)
    except ValueError:
        return HttpResult(status, payload.decode(errors="replace"))


@dataclass
class Agent:
    id: str
    peer_port: int
    api_port: int
    root: Path
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    scheme: str = "http"  # https when the cluster runs with --tls-cert
    host: str = "127.0.0.1"  # where both ports listen

    @property
    def data_dir(self) -> Path:
        return self.root / self.id / "data"

    @property
    def backup_dir(self) -> Path:
        return self.root / self.id / "backup"

    @property
    def log_path(self) -> Path:
        return self.root / self.id / "agent.log"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.api_port}"

    @property
    def api_addr(self) -> str:
        return f"{self.host}:{self.api_port}"

    @property
    def peer_addr(self) -> str:
        return f"{self.host}:{self.peer_port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class ProcCluster:
    """A cluster of agent processes; ``start_all`` bootstraps it.

    For a secured cluster: ``node_extra`` adds flags per node (each node's
    own --tls-cert/--tls-key), ``client_ssl`` makes the API URLs https and is
    used by the helpers below, as is ``api_token``."""

    # Class defaults too: subclasses with an __init__ of their own (netlab) have them.
    client_ssl: ssl.SSLContext | None = None
    api_token: str | None = None
    node_extra: Mapping[str, list[str]] = MappingProxyType({})

    def __init__(self, root: Path, n: int, *, extra: list[str] | None = None,
                 election_ms: int = 600, heartbeat_ms: int = 60,
                 node_extra: Mapping[str, list[str]] | None = None, client_ssl: ssl.SSLContext | None = None,
                 api_token: str | None = None) -> None:
        self.root = root
        self.client_ssl = client_ssl
        self.api_token = api_token
        self.node_extra = dict(node_extra or {})
        ports = free_ports(2 * n)
        # A cluster id of its own: a port freed by a killed agent may be taken by
        # another test run's agent, and the handshake must then refuse the link.
        self.cluster_id = f"test-{secrets.token_hex(4)}"
        self.extra = ["--cluster-id", self.cluster_id, "--heartbeat-ms", str(heartbeat_ms),
                      "--election-timeout-ms", str(election_ms), *(extra or [])]
        self.agents = {f"n{i + 1}": self._agent(f"n{i + 1}", ports[2 * i], ports[2 * i + 1]) for i in range(n)}
        self.bootstrap = ",".join(f"{a.id}={a.peer_addr}" for a in self.agents.values())

    def _agent(self, node_id: str, peer_port: int, api_port: int) -> Agent:
        return Agent(node_id, peer_port, api_port, self.root, [*self.extra, *self.node_extra.get(node_id, [])],
                     scheme="https" if self.client_ssl is not None else "http")

    # -- processes -------------------------------------------------------------

    def command(self, a: Agent, *, join: str | None = None, bootstrap: bool = True) -> list[str]:
        cmd = [sys.executable, "-m", "quorate", "agent", "--id", a.id, "--data-dir", str(a.data_dir),
               "--peer-addr", a.peer_addr, "--api-addr", a.api_addr,
               "--backup-dir", str(a.backup_dir), *a.extra]
        if join:
            cmd += ["--join", join]
        elif bootstrap:
            cmd += ["--bootstrap", self.bootstrap]
        return cmd

    def start(self, node_id: str, **kw: Any) -> Agent:
        a = self.agents[node_id]
        a.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(a.log_path, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        a.proc = subprocess.Popen(self.command(a, **kw), stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log.close()
        return a

    def start_all(self) -> None:
        for node_id in self.agents:
            self.start(node_id)

    def add_agent(self, node_id: str) -> Agent:
        peer, api = free_ports(2)
        a = self._agent(node_id, peer, api)
        self.agents[node_id] = a
        return a

    def signal(self, node_id: str, sig: int) -> None:
        a = self.agents[node_id]
        assert a.proc is not None
        os.kill(a.proc.pid, sig)

    def kill9(self, node_id: str) -> None:
        self.signal(node_id, signal.SIGKILL)
        self.agents[node_id].proc.wait(timeout=DEADLINE)  # type: ignore[union-attr]

    def terminate(self, node_id: str, timeout: float = DEADLINE) -> int:
        self.signal(node_id, signal.SIGTERM)
        return self.agents[node_id].proc.wait(timeout=timeout)  # type: ignore[union-attr]

    def stop_all(self) -> None:
        for a in self.agents.values():
            if a.alive():
                try:
                    os.kill(a.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
                    os.kill(a.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
                except ProcessLookupError:
                    pass
                a.proc.wait(timeout=DEADLINE)  # type: ignore[union-attr]

    def logs(self) -> str:
        out = []
        for a in self.agents.values():
            text = a.log_path.read_text(errors="replace") if a.log_path.exists() else "(no log)"
            out.append(f"===== {a.id} ({a.log_path}) =====\n{text[-20000:]}")
        return "\n".join(out)

    def wait_log(self, node_id: str, needle: str, timeout: float = DEADLINE) -> str:
        """The first line of ``node_id``'s log containing ``needle``, waiting for it."""
        a = self.agents[node_id]

        def found() -> str | None:
            return next((line for line in a.log_text().splitlines() if needle in line), None)

        return wait_for(f"{needle!r} in {a.log_path}", found, timeout, every=0.1)

    # -- API ---------------------------------------------------------------------------

    def api(self, method: str, node_id: str, path: str, body: Any = None, timeout: float = 10.0) -> HttpResult:
        """A request to a node's API with the cluster's token and client certificate."""
        headers = {"Authorization": f"Bearer {self.api_token}"} if self.api_token else None
        return http(method, self.agents[node_id].url + path, body, timeout=timeout, headers=headers,
                    context=self.client_ssl)

    def status(self, node_id: str, timeout: float = 2.0) -> dict[str, Any]:
        r = self.api("GET", node_id, "/v1/status", timeout=timeout)
        assert r.status == 200, r
        return r.body  # type: ignore[no-any-return]

    def live(self) -> list[str]:
        return [i for i, a in self.agents.items() if a.alive()]

    def leader(self, among: list[str] | None = None, timeout: float = DEADLINE) -> str:
        """Wait until the given nodes agree on one leader that is among them."""
        nodes = among or self.live()

        def agreed() -> str | None:
            leaders = {self.status(i)["leader"] for i in nodes}
            if len(leaders) == 1:
                (lead,) = leaders
                if lead in nodes and self.status(lead)["role"] == "leader":
                    return str(lead)
            return None

        return wait_for(f"one leader among {nodes}", agreed, timeout)

    def put(self, node_id: str, key: str, value: str, **kw: Any) -> HttpResult:
        return self.api("PUT", node_id, f"/v1/kv/{key}", {"value": value, **kw})

    def get(self, node_id: str, key: str, stale: bool = False) -> HttpResult:
        q = "?consistency=stale" if stale else ""
        return self.api("GET", node_id, f"/v1/kv/{key}{q}")
