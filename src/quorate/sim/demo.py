"""``python -m quorate.sim demo``: a narrated run of a simulated 5-node cluster.

The story: elect a leader, write, kill -9 the leader, watch a new one take
over, bring the dead node back, cut the leader off in a minority partition,
heal, and end with the safety and linearizability verdicts. Everything runs
on the simulator's virtual clock, so it takes a moment of real time and
prints the same timeline every time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TextIO

from quorate.raft.types import Role

from .client import ClientSettings
from .cluster import Cluster
from .linearizability import check_history
from .node import SimNode
from .runner import make_config

DEMO_SEED = 7


class Narrator:
    """Drives the cluster step by step and tells what happens."""

    def __init__(self, cluster: Cluster, out: TextIO) -> None:
        self.cluster = cluster
        self.out = out

    def say(self, text: str) -> None:
        self.out.write(f"[{self.cluster.loop.now / 1000:7.3f} s] {text}\n")

    def run(self, ms: int) -> None:
        self.cluster.loop.run_until(self.cluster.loop.now + ms)

    def wait_for(self, what: Callable[[], SimNode | None], limit_ms: int = 3000) -> SimNode:
        deadline = self.cluster.loop.now + limit_ms
        while (found := what()) is None:
            if self.cluster.loop.now >= deadline:
                raise RuntimeError("the demo cluster did not recover in time")
            self.run(self.cluster.cfg.tick_ms)
        return found

    def status(self) -> str:
        parts = []
        for node in self.cluster.sorted_nodes():
            raft = node.raft
            if raft is None:
                parts.append(f"{node.id}: down")
            else:
                parts.append(f"{node.id}: {raft.role.value} t{raft.term} commit={raft.commit_index}")
        return "; ".join(parts)

    def ops(self) -> str:
        s = self.cluster.world.stats
        return f"{s.ok} ops done, {s.unknown} unknown, {s.failed} failed or retried away"


def run_demo(out: TextIO) -> int:
    cfg = make_config(5, "none", duration_ms=0, vary=False)
    cfg = dataclasses.replace(cfg, clients=dataclasses.replace(ClientSettings(), clients=3))
    cluster = Cluster(DEMO_SEED, cfg)
    n = Narrator(cluster, out)
    out.write("quorate simulated cluster demo: 5 managers, 3 clients, virtual time\n\n")
    cluster.start()
    n.say("cluster started: n1..n5 are voters, nobody is leader yet")
    first = n.wait_for(cluster.stable_leader)
    n.say(f"{first.id} won the election (term {first.raft.term})")  # type: ignore[union-attr]
    n.run(800)
    n.say(f"clients are writing and reading: {n.ops()}")
    _failover(n, cluster, first)
    _partition(n, cluster)
    n.run(500)
    cluster.nemesis.stop()
    for client in cluster.clients:
        client.stopped = True
    n.run(cfg.clients.timeout_ms + 100)
    cluster.final_checks()
    verdict = check_history(cluster.world.history)
    n.say(f"final state: {n.status()}")
    out.write("\nsafety invariants checked after every event: all held\n")
    out.write(
        f"client history: {len(cluster.world.history)} operations, "
        f"{'linearizable' if verdict.ok else 'NOT linearizable: ' + verdict.message}\n"
    )
    return 0 if verdict.ok else 1


def _failover(n: Narrator, cluster: Cluster, old: SimNode) -> None:
    n.say(f"kill -9 {old.id} (the leader)")
    old.crash()
    killed_at = cluster.loop.now
    new = n.wait_for(cluster.stable_leader)
    took = cluster.loop.now - killed_at
    n.say(f"{new.id} is the new leader (term {new.raft.term}) {took} ms later")  # type: ignore[union-attr]
    n.run(600)
    n.say(f"writes go on under {new.id}: {n.ops()}")
    n.say(f"restart {old.id} from its durable log")
    old.start()
    n.wait_for(lambda: old if old.applied >= new.applied - 2 else None)
    n.say(f"{old.id} rejoined as a follower and caught up (applied {old.applied})")


def _partition(n: Narrator, cluster: Cluster) -> None:
    leader = n.wait_for(cluster.stable_leader)
    others = [x.id for x in cluster.running() if x.id != leader.id]
    minority, majority = [leader.id, others[0]], others[1:]
    cluster.network.split([minority, majority])
    n.say(f"network partition: {minority} | {majority} (the leader is in the minority)")
    cut_at = cluster.loop.now

    def majority_leader() -> SimNode | None:
        found = cluster.leader()
        return found if found is not None and found.id in majority else None

    new = n.wait_for(majority_leader)
    n.say(
        f"the majority elected {new.id} (term {new.raft.term}) "  # type: ignore[union-attr]
        f"{cluster.loop.now - cut_at} ms after the cut"
    )
    n.wait_for(lambda: leader if leader.raft and leader.raft.role is not Role.LEADER else None)
    n.say(f"{leader.id} lost contact with a quorum and stepped down: no split brain")
    n.run(500)
    n.say(f"status during the partition: {n.status()}")
    cluster.network.heal()
    n.say("partition healed")
    n.wait_for(lambda: leader if leader.applied >= new.applied - 2 else None)
    n.say(f"{leader.id} follows {new.id} again and caught up; {n.ops()}")
