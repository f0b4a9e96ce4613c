"""One module per system under test; each offers the same ``Cluster`` shape:
three processes on 127.0.0.1 with an HTTP front, requests for a write, a
linearizable read and a local (stale) read, the leader, kill -9 and restart.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import Req
from bench.procs import Registry, kill9, wait_for

N = 3


@dataclass(frozen=True, slots=True)
class Timing:
    name: str  # "default" | "fast"
    heartbeat_ms: int | None  # None: the system's own default
    election_ms: int | None


DEFAULT = Timing("default", None, None)
FAST = Timing("fast", 30, 150)


def http_json(method: str, url: str, body: Any = None, timeout: float = 2.0) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            payload, status = resp.read(), resp.status
    except urllib.error.HTTPError as exc:
        payload, status = exc.read(), exc.code
    try:
        return status, json.loads(payload) if payload else None
    except ValueError:
        return status, payload


class Cluster:
    system = ""         # quorate | etcd | pysyncobj
    durable = True      # fsync before acknowledging

    def __init__(self, root: Path, timing: Timing = DEFAULT) -> None:
        self.root = root
        self.timing = timing
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * N
        self.api_ports: list[int] = []

    @property
    def label(self) -> str:
        return self.system if self.durable or self.system != "quorate" else "quorate (no fsync)"

    # -- processes ------------------------------------------------------------
    def command(self, i: int) -> list[str]:
        raise NotImplementedError

    def spawn(self, i: int) -> None:
        self.procs[i] = Registry.spawn(self.command(i), self.root / f"node{i}.log", self.env(i))

    def env(self, i: int) -> dict[str, str] | None:
        return None

    def start(self) -> None:
        for i in range(N):
            self.spawn(i)
        self.wait_ready()

    def stop(self) -> None:
        for p in self.procs:
            kill9(p)

    def kill9(self, i: int) -> None:
        kill9(self.procs[i])

    def restart(self, i: int) -> None:
        self.spawn(i)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None and p.poll() is None]

    def alive(self) -> list[int]:
        return [i for i, p in enumerate(self.procs) if p is not None and p.poll() is None]

    def wait_ready(self, timeout: float = 60.0) -> int:
        """Until every live node agrees on a leader that accepts a write."""
        def ok() -> int | None:
            lead = self.leader()
            if lead is None:
                return None
            for i in self.alive():
                if self.node_leader(i) != self.node_leader(lead):
                    return None
            return lead + 1
        lead = wait_for(f"{self.label}: a leader all nodes agree on", ok, timeout) - 1
        wait_for(f"{self.label}: a first write", lambda: self.try_write(lead, "bench/ready", "x"), timeout)
        return lead

    def try_write(self, i: int, key: str, value: str, timeout: float = 2.0) -> bool:
        method, path, body = self.write_req(key, value)
        req = urllib.request.Request(f"http://127.0.0.1:{self.api_ports[i]}{path}", data=body, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                resp.read()
                return resp.status == 200
        except (urllib.error.URLError, OSError, TimeoutError):
            return False

    def leader(self) -> int | None:
        """Index of the node that says it is leader (None if none)."""
        for i in self.alive():
            try:
                if self.is_leader(i):
                    return i
            except (OSError, ValueError, urllib.error.URLError):
                continue
        return None

    def wait_leader(self, timeout: float = 30.0) -> int:
        return wait_for(f"{self.label}: leader", lambda: (lambda x: None if x is None else x + 1)(self.leader()),
                        timeout) - 1

    # -- per system -----------------------------------------------------------
    def is_leader(self, i: int) -> bool:
        raise NotImplementedError

    def node_leader(self, i: int) -> str | None:
        raise NotImplementedError

    def write_req(self, key: str, value: str) -> Req:
        raise NotImplementedError

    def read_req(self, key: str) -> Req:
        raise NotImplementedError

    def has_key_locally(self, i: int, key: str) -> bool:
        raise NotImplementedError


def settle(seconds: float) -> None:
    time.sleep(seconds)
