"""``quorate demo``: play a failure scenario on the local cluster and print
a timeline of what the cluster did about it.

Today it plays S1 (failover): acknowledged writes, kill -9 of the leader, a
new leader, writes again, every acknowledged write still there, the dead
manager restarted in place by the new leader (nobody runs it by hand), and
a killed worker replaced by the group controller with no duplicate.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from quorate.client import Client, QuorateClientError

from .common import DEFAULT_LOCAL_DIR, fail, stdout
from .local import LocalCluster, manager_instances
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
    """Play S1 (kill -9 the leader, then a worker) on the local cluster,
    starting it if needed, and print a timeline. The cluster keeps running
    afterwards."""
    cluster = LocalCluster.load(directory)
    if cluster is None or len(_running(manager_instances(cluster))) < cluster.managers:
        up(directory=directory, nodes=None, base_port=None, spec=None, timeout=WAIT_S)
        cluster = LocalCluster.load(directory)
    assert cluster is not None
    console = stdout()
    tl = _Timeline(console)
    console.rule("S1: the leader is killed (kill -9), then a worker")
    endpoints = cluster.endpoints()
    client = Client(endpoints, timeout=5.0)
    leader = _wait("a leader", lambda: client.status().leader)
    voters = _wait("every manager to be a voter",
                   lambda: v if len(v := [m.id for m in client.members() if m.role == "voter"]) == cluster.managers
                   else None)
    workers = _wait("the workers to run", lambda: _healthy_workers(client))
    tl.say(f"leader is [bold]{leader}[/]; voters {', '.join(sorted(voters))}; "
           f"{len(workers)} workers running ({', '.join(w['id'] for w in workers)})")
    acked = {f"demo/{i}": f"value-{i}" for i in range(50)}
    for key, value in acked.items():
        client.put(key, value)
    tl.say(f"{len(acked)} writes acknowledged")

    victim = next((i for i in client.list_instances("managers") if i.get("member_id") == leader), None)
    if victim is None or not victim.get("pid"):
        raise fail(f"cannot find the process of {leader} among the managers' instances")
    os.kill(int(victim["pid"]), signal.SIGKILL)
    killed_at = time.monotonic()
    tl.say(f"[red]kill -9 {leader}[/] (pid {victim['pid']})")
    survivors = [e for e in endpoints if _answers(e)]
    probe = Client(survivors, timeout=2.0)

    def new_leader() -> str | None:
        seen = {Client(u, timeout=1.0, discover=False, max_attempts=1).status(u).leader for u in survivors}
        lead = seen.pop() if len(seen) == 1 else None
        return lead if lead and lead != leader else None

    since = lambda: int((time.monotonic() - killed_at) * 1000)  # noqa: E731
    elected = _wait("a new leader", new_leader)
    tl.say(f"new leader [bold]{elected}[/] elected {since()} ms after the kill")
    _wait("a write to be acknowledged", lambda: probe.put("demo/after-failover", "ok"))
    tl.say(f"writes acknowledged again {since()} ms after the kill")
    missing = [k for k, v in acked.items() if (kv := probe.get(k)) is None or kv.value != v]
    if missing:
        raise fail(f"acknowledged writes missing after failover: {missing}")
    tl.say(f"all {len(acked)} acknowledged writes are readable")

    def restarted() -> dict[str, Any] | None:
        inst = next((i for i in probe.list_instances("managers") if i["id"] == victim["id"]), None)
        return inst if inst and inst["state"] == "running" and inst["pid"] != victim["pid"] else None

    back = _wait(f"{leader} to be restarted", restarted)
    tl.say(f"the new leader restarted {leader} in place with its data (pid {back['pid']}), {since()} ms "
           "after the kill")
    _wait(f"{leader} to rejoin", lambda: (s := probe.status(endpoints[cluster.slots().index(leader)])).role
          == "follower" and s.leader == elected)
    tl.say(f"{leader} rejoined as a follower of {elected}")

    worker = workers[0]
    os.kill(int(worker["pid"]), signal.SIGKILL)
    killed_at = time.monotonic()
    tl.say(f"[red]kill -9 worker {worker['id']}[/] (pid {worker['pid']}, slot {worker['slot']})")

    def replaced() -> list[dict[str, Any]] | None:
        now = _healthy_workers(probe)
        return now if now and all(w["pid"] != worker["pid"] for w in now) else None

    now = _wait("the worker to be replaced", replaced)
    new = next(w for w in now if w["slot"] == worker["slot"])
    tl.say(f"slot {worker['slot']} holds {new['id']} (pid {new['pid']}), {since()} ms after the kill; "
           f"{len(now)} workers running, no duplicate")
    console.rule("done")
    console.print(f"The cluster keeps running: [bold]quorate status --all[/], [bold]quorate instances list[/], "
                  f"[bold]quorate down --dir {directory}[/].")


def _running(instances: dict[str, Any]) -> list[Any]:
    return [i for i in instances.values() if i.state.value == "running"]


def _answers(endpoint: str) -> bool:
    try:
        Client(endpoint, timeout=1.0, discover=False, max_attempts=1).status(endpoint)
        return True
    except QuorateClientError:
        return False


def _healthy_workers(client: Client) -> list[dict[str, Any]] | None:
    """The workers, once every slot holds exactly one running instance the
    controller tracks."""
    group = client.get_group("workers")
    size = group["spec"].get("size") or 0
    running = [i for i in client.list_instances("workers") if i["state"] == "running" and i.get("tracked")]
    slots = sorted(i["slot"] for i in running)
    return running if size and slots == sorted(str(n) for n in range(size)) else None
