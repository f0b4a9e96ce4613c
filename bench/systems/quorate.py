"""quorate from the tree: ``python -m quorate agent`` x3 (the public flags)."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

from bench.load import Req
from bench.procs import free_ports

from . import N, Cluster, Timing, http_json


class QuorateCluster(Cluster):
    system = "quorate"

    def __init__(self, root: Path, timing: Timing, *, fsync: bool = True, snapshot_entries: int | None = None,
                 extra: list[str] | None = None) -> None:
        super().__init__(root, timing)
        self.durable = fsync
        ports = free_ports(2 * N)
        self.peer_ports, self.api_ports = ports[:N], ports[N:]
        self.cluster_id = f"bench-{secrets.token_hex(4)}"
        self.bootstrap = ",".join(f"n{i + 1}=127.0.0.1:{p}" for i, p in enumerate(self.peer_ports))
        self.snapshot_entries = snapshot_entries
        self.extra = extra or []

    def command(self, i: int) -> list[str]:
        cmd = [sys.executable, "-m", "quorate", "agent", "--id", f"n{i + 1}",
               "--data-dir", str(self.root / f"n{i + 1}"), "--peer-addr", f"127.0.0.1:{self.peer_ports[i]}",
               "--api-addr", f"127.0.0.1:{self.api_ports[i]}", "--bootstrap", self.bootstrap,
               "--cluster-id", self.cluster_id, "--log-level", "WARNING"]
        if self.timing.heartbeat_ms:
            cmd += ["--heartbeat-ms", str(self.timing.heartbeat_ms), "--election-timeout-ms",
                    str(self.timing.election_ms)]
        if not self.durable:
            cmd.append("--no-fsync")
        if self.snapshot_entries:
            cmd += ["--snapshot-entries", str(self.snapshot_entries)]
        return cmd + self.extra

    def status(self, i: int) -> dict:
        status, body = http_json("GET", f"http://127.0.0.1:{self.api_ports[i]}/v1/status", timeout=1.0)
        return body if status == 200 else {}

    def is_leader(self, i: int) -> bool:
        return self.status(i).get("role") == "leader"

    def node_leader(self, i: int) -> str | None:
        return self.status(i).get("leader")

    def write_req(self, key: str, value: str) -> Req:
        return "PUT", f"/v1/kv/{key}", json.dumps({"value": value}).encode()

    def read_req(self, key: str) -> Req:
        return "GET", f"/v1/kv/{key}", None

    def has_key_locally(self, i: int, key: str) -> bool:
        status, _ = http_json("GET", f"http://127.0.0.1:{self.api_ports[i]}/v1/kv/{key}?consistency=stale",
                              timeout=1.0)
        return status == 200
