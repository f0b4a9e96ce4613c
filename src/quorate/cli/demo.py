"""``quorate demo``: play a failure scenario on the local cluster and print
a timeline of what the cluster did about it.

Today it plays S1 (failover): acknowledged writes, kill -9 of the leader, a
new leader, writes again, every acknowledged write still there, and the old
leader rejoining. Quorum-loss recovery (S2, S3) joins it with the manager.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from quorate.client import Client, QuorateClientError

from .common import DEFAULT_LOCAL_DIR, fail, stdout
from .local import LocalCluster, running_pid, start_node
from .updown import up

T = TypeVar("T")
WAIT_S = 60.0


class _Timeline:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        ms = int((time.monotonic() - self.t0) * 1000)
        self.console.print(f"[dim]{ms:>7} ms[/]  {text}", highlight=False)


def _wait(what: str, check: Callable[[], T | None], timeout: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (QuorateClientError, OSError):
            pass
        time.sleep(0.05)
    raise fail(f"gave up after {timeout:.0f}s waiting for {what}")


def demo(directory: Annotated[Path, typer.Option("--dir", help="Directory of the local cluster.")]
         = DEFAULT_LOCAL_DIR) -> None:
    """Play S1 (kill -9 the leader) on the local cluster, starting it if
    needed, and print a timeline. The cluster keeps running afterwards."""
    cluster = LocalCluster.load(directory)
    if cluster is None or any(running_pid(cluster, n) is None for n in cluster.nodes):
        up(directory=directory, nodes=None, base_port=None, timeout=WAIT_S)
        cluster = LocalCluster.load(directory)
    assert cluster is not None
    console = stdout()
    tl = _Timeline(console)
    console.rule("S1: the leader is killed (kill -9)")
    endpoints = {n.id: f"http://{cluster.host}:{n.api_port}" for n in cluster.nodes}
    client = Client(list(endpoints.values()), timeout=5.0)
    leader = _wait("a leader", lambda: client.status().leader)
    tl.say(f"leader is [bold]{leader}[/]; voters {', '.join(n.id for n in cluster.nodes)}")
    acked = {f"demo/{i}": f"value-{i}" for i in range(50)}
    for key, value in acked.items():
        client.put(key, value)
    tl.say(f"{len(acked)} writes acknowledged")
    victim = next(n for n in cluster.nodes if n.id == leader)
    pid = running_pid(cluster, victim)
    if pid is None:
        raise fail(f"cannot find the process of {leader}")
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    tl.say(f"[red]kill -9 {leader}[/] (pid {pid})")
    survivors = {i: u for i, u in endpoints.items() if i != leader}
    probe = Client(list(survivors.values()), timeout=2.0)

    def new_leader() -> str | None:
        seen = {probe.status(u).leader for u in survivors.values()}
        lead = seen.pop() if len(seen) == 1 else None
        return lead if lead and lead != leader else None

    elected = _wait("a new leader", new_leader)
    tl.say(f"new leader [bold]{elected}[/] elected {int((time.monotonic() - killed_at) * 1000)} ms after the kill")
    _wait("a write to be acknowledged", lambda: probe.put("demo/after-failover", "ok"))
    tl.say(f"writes acknowledged again {int((time.monotonic() - killed_at) * 1000)} ms after the kill")
    reader = Client([survivors[elected]], timeout=5.0)
    missing = [k for k, v in acked.items() if (kv := reader.get(k)) is None or kv.value != v]
    if missing:
        raise fail(f"acknowledged writes missing after failover: {missing}")
    tl.say(f"all {len(acked)} acknowledged writes are readable on {elected}")
    start_node(cluster, victim)
    tl.say(f"restarting {leader} with its data directory")
    back = Client([endpoints[leader]], timeout=2.0)
    _wait(f"{leader} to rejoin",
          lambda: (s := back.status(endpoints[leader])).leader == elected and s.role == "follower")
    _wait(f"{leader} to catch up", lambda: back.get("demo/after-failover", stale=True) is not None)
    tl.say(f"{leader} rejoined as a follower of {elected} and caught up")
    console.rule("done")
    console.print(f"The cluster keeps running: [bold]quorate status --all[/], [bold]quorate down --dir {directory}[/].")
