"""``quorate demo``: play the failure scenarios on the local cluster and
print a timeline of what the cluster did about each.

- **S1.** kill -9 the leading manager: a new leader, writes again, every
  acknowledged write still there, and the dead manager restarted in place by
  the new leader. Then kill -9 a worker: the group controller replaces it,
  with no duplicate.
- **S3.** SIGSTOP two of three managers. They are alive but unreachable, so
  the survivor forces nothing and says why; after SIGCONT the original
  cluster carries on.
- **S2.** kill -9 two of three managers. First with their data kept: the
  survivor restarts them in place, no configuration change. Then with their
  data deleted: the survivor forces a new configuration in a new epoch, and
  the managers group provisions two new members.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from quorate.client import Client, QuorateClientError

from .common import DEFAULT_LOCAL_DIR, fail, stdout
from .local import LocalCluster, manager_instances
from .updown import up

T = TypeVar("T")
WAIT_S = 90.0
SCENARIOS = ("s1", "s3", "s2")


class _Timeline:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.t0 = time.monotonic()
        self.mark = self.t0

    def start(self) -> None:
        """Measure 'since' from now (the moment of a fault)."""
        self.mark = time.monotonic()

    def since(self) -> int:
        return int((time.monotonic() - self.mark) * 1000)

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


class _Demo:
    def __init__(self, cluster: LocalCluster, console: Console) -> None:
        self.cluster = cluster
        self.console = console
        self.tl = _Timeline(console)
        self.endpoints = cluster.endpoints()

    def client(self, endpoints: list[str] | None = None, timeout: float = 5.0) -> Client:
        return Client(endpoints or self.endpoints, timeout=timeout)

    def answering(self) -> list[str]:
        out = []
        for e in self.endpoints:
            try:
                Client(e, timeout=1.0, discover=False, max_attempts=1).status(e)
                out.append(e)
            except QuorateClientError:
                pass
        return out

    def agreed_leader(self, endpoints: list[str], not_: str | None = None) -> str | None:
        seen = {Client(u, timeout=1.0, discover=False, max_attempts=1).status(u).leader for u in endpoints}
        lead = seen.pop() if len(seen) == 1 else None
        return lead if lead and lead != not_ else None

    def voters(self, client: Client) -> list[str] | None:
        v = sorted(m.id for m in client.members() if m.role == "voter" and m.health != "departed")
        return v if len(v) == self.cluster.managers else None

    def managers(self, client: Client) -> list[dict[str, Any]]:
        return [i for i in client.list_instances("managers") if i["state"] == "running" and i.get("tracked")]

    def settle(self) -> tuple[Client, str, list[str]]:
        client = self.client()
        leader = _wait("a leader", lambda: client.status().leader)
        voters = _wait("every manager to be a voter", lambda: self.voters(client))
        _wait("every manager running", lambda: len(self.managers(client)) == self.cluster.managers)
        return client, leader, voters

    # -- S1 ------------------------------------------------------------------------------

    def s1(self) -> None:
        self.console.rule("S1: the leader is killed (kill -9), then a worker")
        tl = self.tl
        client, leader, voters = self.settle()
        workers = _wait("the workers to run", lambda: _healthy_workers(client))
        tl.say(f"leader is [bold]{leader}[/]; voters {', '.join(voters)}; "
               f"{len(workers)} workers running ({', '.join(w['id'] for w in workers)})")
        acked = {f"demo/s1/{i}": f"value-{i}" for i in range(50)}
        for key, value in acked.items():
            client.put(key, value)
        tl.say(f"{len(acked)} writes acknowledged")
        victim = next((i for i in self.managers(client) if i.get("member_id") == leader), None)
        if victim is None or not victim.get("pid"):
            raise fail(f"cannot find the process of {leader} among the managers' instances")
        os.kill(int(victim["pid"]), signal.SIGKILL)
        tl.start()
        tl.say(f"[red]kill -9 {leader}[/] (pid {victim['pid']})")
        survivors = [e for e in self.answering()]
        probe = self.client(survivors, timeout=2.0)
        elected = _wait("a new leader", lambda: self.agreed_leader(survivors, not_=leader))
        tl.say(f"new leader [bold]{elected}[/] elected {tl.since()} ms after the kill")
        _wait("a write to be acknowledged", lambda: probe.put("demo/s1/after", "ok"))
        tl.say(f"writes acknowledged again {tl.since()} ms after the kill")
        _check_acked(probe, acked)
        tl.say(f"all {len(acked)} acknowledged writes are readable")

        def restarted() -> dict[str, Any] | None:
            inst = next((i for i in probe.list_instances("managers") if i["id"] == victim["id"]), None)
            return inst if inst and inst["state"] == "running" and inst["pid"] != victim["pid"] else None

        back = _wait(f"{leader} to be restarted", restarted)
        tl.say(f"the new leader restarted {leader} in place with its data (pid {back['pid']}), {tl.since()} ms "
               "after the kill")
        slot_url = self.endpoints[self.cluster.slots().index(back["slot"])]
        _wait(f"{leader} to rejoin", lambda: (s := probe.status(slot_url)).role == "follower" and s.leader == elected)
        tl.say(f"{leader} rejoined as a follower of {elected}")

        worker = workers[0]
        os.kill(int(worker["pid"]), signal.SIGKILL)
        tl.start()
        tl.say(f"[red]kill -9 worker {worker['id']}[/] (pid {worker['pid']}, slot {worker['slot']})")

        def replaced() -> list[dict[str, Any]] | None:
            now = _healthy_workers(probe)
            return now if now and all(w["pid"] != worker["pid"] for w in now) else None

        now = _wait("the worker to be replaced", replaced)
        new = next(w for w in now if w["slot"] == worker["slot"])
        tl.say(f"slot {worker['slot']} holds {new['id']} (pid {new['pid']}), {tl.since()} ms after the kill; "
               f"{len(now)} workers running, no duplicate")

    # -- S3 ------------------------------------------------------------------------------

    def s3(self) -> None:
        self.console.rule("S3: two of three managers paused (SIGSTOP): alive, unreachable, not dead")
        tl = self.tl
        client, leader, voters = self.settle()
        managers = self.managers(client)
        paused = [i for i in managers if i["member_id"] != leader][:1] + \
                 [i for i in managers if i["member_id"] == leader]
        survivor = next(i for i in managers if i not in paused)
        url = self.endpoints[self.cluster.slots().index(survivor["slot"])]
        for i in paused:
            os.kill(int(i["pid"]), signal.SIGSTOP)
        tl.start()
        names = ", ".join(i["member_id"] for i in paused)
        tl.say(f"[red]SIGSTOP {names}[/] (the leader among them); {survivor['member_id']} is alone")
        try:
            one = Client(url, timeout=2.0, discover=False, max_attempts=1)
            words = _wait("the survivor's verdict", lambda: [p for p in one.status(url).problems
                                                             if "not confirmed dead" in p])
            tl.say(f"{survivor['member_id']} after {tl.since()} ms: [yellow]{words[0]}[/]")
            st = one.status(url)
            for p in st.problems:
                if p.startswith("missing voter") or "can run" in p:
                    tl.say(f"  {p}")
            time.sleep(3.0)  # rounds of the watchdog pass: still nothing is forced
            st = one.status(url)
            tl.say(f"{tl.since()} ms: still epoch {st.raw.get('epoch')}, voters {', '.join(st.voters)}: "
                   "nothing forced, no split brain")
        finally:
            for i in paused:
                os.kill(int(i["pid"]), signal.SIGCONT)
        tl.start()
        tl.say(f"[green]SIGCONT {names}[/]")
        _wait("a write to be acknowledged", lambda: self.client(timeout=2.0).put("demo/s3/after", "ok"))
        tl.say(f"writes acknowledged {tl.since()} ms after SIGCONT; voters "
               f"{', '.join(_wait('voters', lambda: self.voters(client)))}: the original cluster carries on")

    # -- S2 ------------------------------------------------------------------------------

    def s2(self) -> None:
        for keep_data in (True, False):
            what = "with their data kept" if keep_data else "with their data directories deleted"
            self.console.rule(f"S2: two of three managers killed (kill -9) {what}")
            tl = self.tl
            client, leader, voters = self.settle()
            acked = {f"demo/s2/{keep_data}/{i}": f"v{i}" for i in range(20)}
            for k, v in acked.items():
                client.put(k, v)
            epoch = client.status().raw.get("epoch", 0)
            managers = self.managers(client)
            victims = [i for i in managers if i["member_id"] == leader] + \
                      [i for i in managers if i["member_id"] != leader][:1]
            survivor = next(i for i in managers if i not in victims)
            tl.say(f"leader {leader}, voters {', '.join(voters)}, epoch {epoch}; {len(acked)} writes acknowledged")
            for i in victims:
                os.kill(int(i["pid"]), signal.SIGKILL)
            tl.start()
            if not keep_data:
                for i in victims:
                    shutil.rmtree(self.cluster.node_dir(i["member_id"]) / "data", ignore_errors=True)
            tl.say(f"[red]kill -9 {', '.join(i['member_id'] for i in victims)}[/]"
                   + ("" if keep_data else " and [red]rm -rf their data[/]")
                   + f"; {survivor['member_id']} alone, no quorum")
            url = self.endpoints[self.cluster.slots().index(survivor["slot"])]
            one = Client(url, timeout=2.0, discover=False, max_attempts=1)
            decision = _wait("the watchdog to act", lambda: (q := one.status(url).raw.get("quorum_recovery"))
                             and q.get("decision") in ("restart_in_place", "force") and q)
            tl.say(f"{survivor['member_id']}'s watchdog after {tl.since()} ms: [yellow]{decision['reason']}[/]")
            probe = self.client(timeout=3.0)
            _wait("a write to be acknowledged", lambda: probe.put(f"demo/s2/{keep_data}/after", "ok"))
            st = probe.status()
            tl.say(f"writes acknowledged again {tl.since()} ms after the kill (epoch {st.raw.get('epoch')}, "
                   f"leader {st.leader})")
            _check_acked(probe, acked)
            tl.say(f"all {len(acked)} writes acknowledged before the failure are readable")
            full = _wait("the managers back to full strength", lambda: self.voters(probe))
            _wait("every manager running", lambda: len(self.managers(probe)) == self.cluster.managers)
            tl.say(f"{len(full)} voters again {tl.since()} ms after the kill: {', '.join(full)}"
                   + (" (the same members, restarted in place)" if keep_data
                      else " (new members provisioned by the managers group)"))
            if not keep_data:
                rec = probe.get(f"_quorate/recovery/epochs/{st.raw.get('epoch')}")
                if rec is not None:
                    import json
                    note = json.loads(rec.value).get("note")
                    tl.say(f"recorded in the store: {note}")


def demo(directory: Annotated[Path, typer.Option("--dir", help="Directory of the local cluster.")]
         = DEFAULT_LOCAL_DIR,
         scenario: Annotated[list[str] | None, typer.Option(
             "--scenario", help="Which to play: s1, s2, s3 (repeatable; default all, in the order s1, s3, s2).",
             show_default=False)] = None) -> None:
    """Play the failure scenarios S1, S3 and S2 on the local cluster, with a timeline.

    S1: kill -9 the leader, then a worker. S3: pause two managers (nothing
    is forced). S2: kill two managers, with and without their data (the
    cluster heals itself). Starts the cluster if needed; it keeps running
    afterwards."""
    wanted = [s.lower() for s in scenario or SCENARIOS]
    unknown = [s for s in wanted if s not in SCENARIOS]
    if unknown:
        raise fail(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}", code=2)
    cluster = LocalCluster.load(directory)
    if cluster is None or len(_running(manager_instances(cluster))) < cluster.managers:
        up(directory=directory, nodes=None, base_port=None, spec=None, timeout=WAIT_S)
        cluster = LocalCluster.load(directory)
    assert cluster is not None
    if cluster.managers != 3 and ("s2" in wanted or "s3" in wanted):
        raise fail("S2 and S3 are written for 3 managers; this cluster has "
                   f"{cluster.managers} (play --scenario s1)", code=2)
    console = stdout()
    d = _Demo(cluster, console)
    for s in SCENARIOS:
        if s in wanted:
            getattr(d, s)()
    console.rule("done")
    console.print(f"The cluster keeps running: [bold]quorate status --all[/], [bold]quorate instances list[/], "
                  f"[bold]quorate down --dir {directory}[/].")


def _check_acked(client: Client, acked: dict[str, str]) -> None:
    missing = [k for k, v in acked.items() if (kv := client.get(k)) is None or kv.value != v]
    if missing:
        raise fail(f"acknowledged writes missing: {missing}")


def _running(instances: dict[str, Any]) -> list[Any]:
    return [i for i in instances.values() if i.state.value == "running"]


def _healthy_workers(client: Client) -> list[dict[str, Any]] | None:
    """The workers, once every slot holds exactly one running instance the
    controller tracks."""
    group = client.get_group("workers")
    size = group["spec"].get("size") or 0
    running = [i for i in client.list_instances("workers") if i["state"] == "running" and i.get("tracked")]
    slots = sorted(i["slot"] for i in running)
    return running if size and slots == sorted(str(n) for n in range(size)) else None
