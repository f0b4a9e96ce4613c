"""PySyncObj (PyPI) as three ``bench.systems.pysyncobj_node`` processes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.load import Req
from bench.procs import free_ports

from . import N, Cluster, Timing, http_json


class PySyncObjCluster(Cluster):
    system = "pysyncobj"
    durable = False

    def __init__(self, root: Path, timing: Timing, *, batch: bool = False) -> None:
        super().__init__(root, timing)
        self.batch = batch
        ports = free_ports(2 * N)
        self.peer_ports, self.api_ports = ports[:N], ports[N:]

    def command(self, i: int) -> list[str]:
        peers = [f"127.0.0.1:{p}" for j, p in enumerate(self.peer_ports) if j != i]
        cmd = [sys.executable, "-m", "bench.systems.pysyncobj_node", f"127.0.0.1:{self.peer_ports[i]}",
               ",".join(peers), str(self.api_ports[i])]
        return cmd + (["fast"] if self.timing.name == "fast" else []) + (["batch"] if self.batch else [])

    def _status(self, i: int) -> dict:
        status, body = http_json("GET", f"http://127.0.0.1:{self.api_ports[i]}/status", timeout=1.0)
        return body if status == 200 else {}

    def is_leader(self, i: int) -> bool:
        return bool(self._status(i).get("is_leader"))

    def node_leader(self, i: int) -> str | None:
        return self._status(i).get("leader")

    def write_req(self, key: str, value: str) -> Req:
        return "PUT", f"/kv/{key}", json.dumps({"value": value}).encode()

    def read_req(self, key: str) -> Req:
        return "GET", f"/kv/{key}", None

    def has_key_locally(self, i: int, key: str) -> bool:
        status, _ = http_json("GET", f"http://127.0.0.1:{self.api_ports[i]}/kv/{key}?stale=1", timeout=1.0)
        return status == 200
