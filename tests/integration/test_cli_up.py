"""``quorate up`` / ``down`` with real agents: a 3-node local cluster in a
tmp dir, keys written and read through the CLI, a restart that keeps the
data, and no agent process left behind. Every command runs as a real
``python -m quorate`` process with a timeout; the agents' logs are printed
when a test fails."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("quorate.runtime.agent", reason="the agent runtime (quorate.runtime.agent) is not written yet")

from quorate.cli.local import LocalCluster, busy_ports, is_agent  # noqa: E402

from .harness import wait_for  # noqa: E402

CMD_TIMEOUT = 60.0


from .harness import _ephemeral_low  # noqa: E402


def free_base_port(nodes: int) -> int:
    """A base port whose peer (base+i) and API (base+100+i) ports are free."""
    rng = random.Random()
    for _ in range(200):
        # Below the ephemeral range, so no outgoing connection can hold a port
        # while the cluster is down between `down` and `up`.
        base = rng.randrange(10000, _ephemeral_low() - 200)
        ports = [base + i for i in range(nodes)] + [base + 100 + i for i in range(nodes)]
        if not busy_ports("127.0.0.1", ports):
            return base
    raise AssertionError("no free port range found")


def quorate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUORATE_")}
    return subprocess.run([sys.executable, "-m", "quorate", *map(str, args)], capture_output=True, text=True,
                          timeout=CMD_TIMEOUT, env=env)


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


@pytest.fixture
def local_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "qc"
    yield directory
    cluster = LocalCluster.load(directory) if directory.exists() else None
    if cluster is None:
        return
    quorate("down", "--dir", directory)
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for node in cluster.nodes:
            log = cluster.log_file(node)
            print(f"===== {node.id} ({log}) =====\n" + (log.read_text(errors="replace")[-20000:]
                                                      if log.exists() else "(no log)"))


def agent_pids(cluster: LocalCluster) -> dict[str, int]:
    return {n.id: int(cluster.pid_file(n).read_text()) for n in cluster.nodes}


def test_up_kv_status_restart_down(local_dir: Path) -> None:
    base = free_base_port(3)
    out = ok(quorate("up", "--dir", local_dir, "--nodes", "3", "--base-port", str(base)))
    assert "is up" in out and "leader" in out
    cluster = LocalCluster.load(local_dir)
    assert cluster is not None
    endpoints = (local_dir / "endpoints").read_text().split()
    assert endpoints == [f"http://127.0.0.1:{base + 100 + i}" for i in range(3)]
    for node in cluster.nodes:
        for sub in ("data", "backup", "log"):
            assert (cluster.node_dir(node) / sub).is_dir()

    assert ok(quorate("kv", "put", "app/greeting", "hello", "-e", endpoints[1])).startswith("revision ")
    assert ok(quorate("kv", "get", "app/greeting", "-e", endpoints[2])) == "hello\n"
    def one_leader_three_voters() -> list[dict[str, object]] | None:
        statuses = json.loads(ok(quorate("status", "--all", "--json", "-e", ",".join(endpoints))))
        roles = [s.get("role") for s in statuses]
        voters = [sorted(s.get("voters", [])) for s in statuses]
        return statuses if roles.count("leader") == 1 and voters == [["n1", "n2", "n3"]] * 3 else None

    wait_for("one leader and 3 voters in `quorate status --all`", one_leader_three_voters)
    leader = json.loads(ok(quorate("status", "--json", "-e", endpoints[0])))["leader"]
    assert leader in ("n1", "n2", "n3")

    first_pids = agent_pids(cluster)
    ok(quorate("down", "--dir", local_dir))
    assert not any(is_agent(pid, cluster.data_dir(n)) for n, pid in zip(cluster.nodes, first_pids.values()))
    assert not any(cluster.pid_file(n).exists() for n in cluster.nodes)

    # The same command again restarts the same cluster with its data.
    ok(quorate("up", "--dir", local_dir, "--nodes", "3", "--base-port", str(base)))
    assert ok(quorate("kv", "get", "app/greeting", "-e", endpoints[0])) == "hello\n"
    pids = agent_pids(cluster)
    ok(quorate("down", "--dir", local_dir))
    for node in cluster.nodes:
        assert not is_agent(pids[node.id], cluster.data_dir(node)), f"{node.id} still running"
    assert "--bootstrap ignored" in cluster.log_file(cluster.nodes[0]).read_text()
