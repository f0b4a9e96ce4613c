"""A local cluster made by the real ``quorate up`` (managers and workers
run by the process provider), driven from tests: its instances, statuses
and metrics through the HTTP API, kill -9 of any instance, and the logs of
every manager when a test fails."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from quorate.cli.local import LocalCluster, busy_ports

from .harness import DEADLINE, _ephemeral_low, http, wait_for

CMD_TIMEOUT = 120.0


def free_base_port(managers: int) -> int:
    """A base port whose manager (base+i, base+100+i) and worker
    (base+200+i) ports are free, below the ephemeral range."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10000, _ephemeral_low() - 300)
        ports = [base + off + i for off in (0, 100, 200) for i in range(managers)]
        if not busy_ports("127.0.0.1", ports):
            return base
    raise AssertionError("no free port range found")


def quorate(*args: str | Path, timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """`python -m quorate ...`, without the caller's QUORATE_* settings and
    with no terminal on stdin (so no prompt can be answered)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUORATE_")}
    return subprocess.run([sys.executable, "-m", "quorate", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


class LocalUp:
    def __init__(self, directory: Path, managers: int = 3) -> None:
        self.dir = directory
        self.managers = managers
        self.base = free_base_port(managers)
        self.endpoints = [f"http://127.0.0.1:{self.base + 100 + i}" for i in range(managers)]

    def up(self, *extra: str) -> str:
        return ok(quorate("up", "--dir", self.dir, "--nodes", str(self.managers), "--base-port", str(self.base),
                          *extra))

    def down(self) -> str:
        return ok(quorate("down", "--dir", self.dir))

    @property
    def cluster(self) -> LocalCluster:
        c = LocalCluster.load(self.dir)
        assert c is not None
        return c

    # -- through the API -------------------------------------------------------------

    def answering(self) -> list[str]:
        out = []
        for e in self.endpoints:
            try:
                if http("GET", e + "/v1/status", timeout=2.0).status == 200:
                    out.append(e)
            except OSError:
                pass
        return out

    def status(self, endpoint: str) -> dict[str, Any]:
        r = http("GET", endpoint + "/v1/status", timeout=2.0)
        assert r.status == 200, r
        return r.body  # type: ignore[no-any-return]

    def leader(self) -> tuple[str, str]:
        """(leader id, its endpoint), once every answering node agrees."""
        def check() -> tuple[str, str] | None:
            sts = [self.status(e) for e in self.answering()]
            leaders = {s["leader"] for s in sts}
            lead = [s for s in sts if s["role"] == "leader"]
            if len(leaders) == 1 and None not in leaders and len(lead) == 1:
                return lead[0]["id"], self.endpoints[self.cluster.slots().index(_slot(lead[0]["id"]))]
            return None
        return wait_for("one leader all answering managers agree on", check)

    def instances(self, group: str | None = None) -> list[dict[str, Any]]:
        for e in self.answering():
            r = http("GET", e + "/v1/instances" + (f"?group={group}" if group else ""), timeout=10.0)
            if r.status == 200:
                return r.body  # type: ignore[no-any-return]
        raise AssertionError("no manager listed the instances")

    def voters(self) -> list[str]:
        for e in self.answering():
            r = http("GET", e + "/v1/members", timeout=5.0)
            if r.status == 200:
                return sorted(m["id"] for m in r.body if m["role"] == "voter" and m["health"] != "departed")
        return []

    def put(self, key: str, value: str) -> int:
        for e in self.answering():
            r = http("PUT", f"{e}/v1/kv/{key}", {"value": value}, timeout=10.0)
            if r.status == 200:
                return int(r.body["revision"])
        raise AssertionError(f"no manager accepted the write of {key}")

    def get(self, key: str) -> str | None:
        for e in self.answering():
            r = http("GET", f"{e}/v1/kv/{key}", timeout=10.0)
            if r.status == 200:
                return str(r.body["value"])
            if r.status == 404:
                return None
        raise AssertionError(f"no manager answered the read of {key}")

    def metric(self, endpoint: str, name: str) -> float:
        r = http("GET", endpoint + "/metrics", timeout=5.0)
        m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", r.body, re.M)
        return float(m.group(1)) if m else 0.0

    def running_workers(self, group: str = "workers") -> dict[str, dict[str, Any]] | None:
        """slot -> instance once every slot holds exactly one running,
        tracked instance and nothing else of the group runs."""
        insts = self.instances(group)
        running = [i for i in insts if i["state"] == "running"]
        slots = [i["slot"] for i in running]
        if len(slots) != len(set(slots)) or not all(i["tracked"] for i in running):
            return None
        return {i["slot"]: i for i in running}

    # -- processes ---------------------------------------------------------------------

    @staticmethod
    def kill9(instance: dict[str, Any]) -> None:
        os.kill(int(instance["pid"]), signal.SIGKILL)

    def logs(self) -> str:
        out = []
        for log in sorted((self.dir / "nodes").glob("*/log/agent.log")):
            out.append(f"===== {log} =====\n" + log.read_text(errors="replace")[-15000:])
        return "\n".join(out)


def _slot(member: str) -> str:
    base, sep, tail = member.rpartition("-")
    return base if sep and tail.isdigit() else member


def wait(what: str, check: Any, timeout: float = DEADLINE * 2) -> Any:
    return wait_for(what, check, timeout=timeout, every=0.1)
