"""etcd from Debian's ``etcd-server`` (installed by ``ensure_etcd`` when
missing), driven through its gRPC-JSON gateway (``/v3/kv/put``,
``/v3/kv/range``; keys and values base64), which is what a client without a
gRPC library uses. Reads are etcd's default, linearizable (ReadIndex)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

from bench.load import Req
from bench.procs import free_ports

from . import N, Cluster, Timing, http_json


def ensure_etcd() -> str | None:
    """Path to the etcd binary, installing ``etcd-server`` with apt when
    missing; None (with the reason printed) when that is impossible."""
    found = shutil.which("etcd")
    if found:
        return found
    if os.geteuid() != 0:
        print("etcd rows skipped: etcd is not installed and installing etcd-server needs root")
        return None
    print("installing etcd-server (apt-get) ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "etcd-server"], check=True, env=env, timeout=600,
                       stdout=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"etcd rows skipped: installing etcd-server failed: {exc}")
        return None
    return shutil.which("etcd")


def etcd_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    return out.splitlines()[0].split(":")[-1].strip() if out else "?"


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


class EtcdCluster(Cluster):
    system = "etcd"

    def __init__(self, root: Path, timing: Timing, binary: str, *, snapshot_count: int | None = None) -> None:
        super().__init__(root, timing)
        self.binary = binary
        ports = free_ports(2 * N)
        self.peer_ports, self.api_ports = ports[:N], ports[N:]
        self.initial = ",".join(f"e{i}=http://127.0.0.1:{p}" for i, p in enumerate(self.peer_ports))
        self.snapshot_count = snapshot_count
        self.ids: dict[int, str] = {}  # member id (decimal string) -> index

    def command(self, i: int) -> list[str]:
        cmd = [self.binary, "--name", f"e{i}", "--data-dir", str(self.root / f"e{i}"),
               "--listen-peer-urls", f"http://127.0.0.1:{self.peer_ports[i]}",
               "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_ports[i]}",
               "--listen-client-urls", f"http://127.0.0.1:{self.api_ports[i]}",
               "--advertise-client-urls", f"http://127.0.0.1:{self.api_ports[i]}",
               "--initial-cluster", self.initial, "--initial-cluster-state", "new",
               "--initial-cluster-token", f"bench-{self.peer_ports[0]}", "--log-level", "warn",
               "--logger", "zap"]
        if self.timing.heartbeat_ms:
            cmd += ["--heartbeat-interval", str(self.timing.heartbeat_ms),
                    "--election-timeout", str(self.timing.election_ms)]
        if self.snapshot_count:
            cmd += ["--snapshot-count", str(self.snapshot_count)]
        return cmd

    def env(self, i: int) -> dict[str, str] | None:
        return {"ETCD_UNSUPPORTED_ARCH": os.environ.get("ETCD_UNSUPPORTED_ARCH", "")} \
            if os.uname().machine not in ("x86_64", "aarch64") else None

    def _status(self, i: int) -> dict:
        status, body = http_json("POST", f"http://127.0.0.1:{self.api_ports[i]}/v3/maintenance/status", {},
                                 timeout=1.0)
        return body if status == 200 and isinstance(body, dict) else {}

    def is_leader(self, i: int) -> bool:
        s = self._status(i)
        return bool(s) and s.get("leader") not in (None, "0") and s.get("leader") == s["header"]["member_id"]

    def node_leader(self, i: int) -> str | None:
        s = self._status(i)
        lead = s.get("leader")
        return None if lead in (None, "0") else lead

    def write_req(self, key: str, value: str) -> Req:
        return "POST", "/v3/kv/put", json.dumps({"key": _b64(key), "value": _b64(value)}).encode()

    def read_req(self, key: str) -> Req:
        return "POST", "/v3/kv/range", json.dumps({"key": _b64(key)}).encode()

    def has_key_locally(self, i: int, key: str) -> bool:
        status, body = http_json("POST", f"http://127.0.0.1:{self.api_ports[i]}/v3/kv/range",
                                 {"key": _b64(key), "serializable": True}, timeout=1.0)
        return status == 200 and bool(body.get("kvs"))
