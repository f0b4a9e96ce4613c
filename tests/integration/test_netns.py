"""Real partitions: every agent in its own network namespace.

Under each fault, concurrent clients (talking to every node from the root
namespace, which the faults never touch) record a history that must be
linearizable; at most one node becomes leader in any term (read from every
agent's log, so no election is missed between two polls); after the links
heal there is one leader and every node holds the same log and the same
store. The minority side of a partition never forces a new configuration
(S3), and a flapping link leaves no controller on a node that does not lead
(S6).
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from quorate.sim.linearizability import Operation, OpKind, check_history

from .harness import ProcCluster, http, wait_for
from .netlab import NetCluster, NetLab, sweep_leftovers, unavailable_reason
from .workload import client, now_us

pytestmark = [pytest.mark.integration, pytest.mark.netns]

_REASON = unavailable_reason()
if _REASON is not None:
    pytestmark.append(pytest.mark.skip(reason=f"network namespace tests cannot run here: {_REASON}"))

AGENT_FLAGS = ["--request-timeout", "3", "--snapshot-entries", "300"]
LEADER_LINE = re.compile(r"node=(\S+) term=(\d+) became leader")


@pytest.fixture
def netcluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., NetCluster]]:
    """Clusters in namespaces; the agents are killed, and the namespaces
    and bridge deleted, even when the test fails (logs printed then)."""
    sweep_leftovers()
    made: list[tuple[NetLab, NetCluster]] = []

    def make(n: int = 3) -> NetCluster:
        lab = NetLab()
        try:
            c = NetCluster(tmp_path / f"net{len(made)}", lab, n, extra=AGENT_FLAGS)
        except BaseException:
            lab.close()
            raise
        made.append((lab, c))
        return c

    yield make
    failed = getattr(request.node, "rep_call", None)
    for lab, c in made:
        c.stop_all()
        if failed is not None and failed.failed:
            print(lab.describe())
            print(c.logs())
        lab.close()


# -- what every scenario checks ------------------------------------------------------------


@dataclass
class Run:
    history: list[Operation]
    fault_at: int  # microseconds, the clients' clock
    heal_at: int

    def acked_writes(self, start: int = 0, end: int | None = None) -> list[Operation]:
        end = end if end is not None else 1 << 62
        return [op for op in self.history if op.kind is not OpKind.GET and op.complete is not None
                and op.result is not None and op.result[0] == "ok" and start <= op.invoke and op.complete <= end]


def under_fault(c: ProcCluster, inject: Callable[[], None], heal: Callable[[], None], *, hold: float,
                during: Callable[[], None] | None = None, clients: int = 4, seed: int = 1) -> Run:
    """Clients run throughout; ``inject`` after 2 s, ``during`` (checks made
    while the fault holds), ``heal`` once ``hold`` seconds passed, 3 s more."""
    history: list[Operation] = []
    stop = threading.Event()
    threads = [threading.Thread(target=client, args=(c, cid, stop, history, seed * 100 + cid), daemon=True)
               for cid in range(clients)]
    for t in threads:
        t.start()
    try:
        stop.wait(2.0)  # the run's shape: some history before the fault
        fault_at = now_us()
        inject()
        if during is not None:
            during()
        stop.wait(max(0.0, hold - (now_us() - fault_at) / 1e6))
        heal()
        heal_at = now_us()
        stop.wait(3.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    return Run(history, fault_at, heal_at)


def leaders_by_term(c: ProcCluster) -> dict[int, set[str]]:
    out: dict[int, set[str]] = defaultdict(set)
    for a in c.agents.values():
        for node, term in LEADER_LINE.findall(a.log_path.read_text(errors="replace")):
            out[int(term)].add(node)
    return out


def store_view(c: ProcCluster, node: str) -> tuple[Any, ...]:
    s = c.status(node)
    kv = http("GET", c.agents[node].url + "/v1/kv?consistency=stale", timeout=5).body
    return (s["commit_index"], s["applied_index"], kv["revision"],
            tuple((e["key"], e["value"], e["mod_revision"]) for e in kv["kvs"]))


def converged(c: ProcCluster) -> tuple[Any, ...]:
    """Wait until every node has applied the same log to the same store."""
    def same() -> tuple[Any, ...] | None:
        views = {n: store_view(c, n) for n in c.agents}
        first = next(iter(views.values()))
        return first if all(v == first for v in views.values()) and first[0] == first[1] else None
    return wait_for("every node to hold the same log and store", same, timeout=60)


def check_run(c: ProcCluster, run: Run, *, min_writes: int = 10) -> None:
    """The checks every scenario shares, after the links healed."""
    c.leader(timeout=60)
    converged(c)
    elected = leaders_by_term(c)
    twice = {t: nodes for t, nodes in elected.items() if len(nodes) > 1}
    assert not twice, f"two leaders in one term: {twice}"
    acked = run.acked_writes()
    reads = [op for op in run.history if op.kind is OpKind.GET and op.complete is not None]
    print(f"ops recorded: {len(run.history)}, acknowledged writes: {len(acked)}, reads: {len(reads)}, "
          f"elections: {dict(sorted((t, sorted(n)) for t, n in elected.items()))}")
    assert len(acked) >= min_writes and reads, "too little completed work to judge"
    verdict = check_history(run.history)
    if not verdict.ok:
        dump = c.root / "history.txt"
        dump.write_text("\n".join(op.describe() for op in sorted(run.history, key=lambda o: o.invoke)))
        print(f"history written to {dump}")
    assert verdict.ok, verdict.message


def write_through(c: ProcCluster, nodes: list[str], key: str, timeout: float = 30) -> str:
    """Wait until a write through one of ``nodes`` is acknowledged; its node."""
    def attempt() -> str | None:
        for n in nodes:
            if c.put(n, key, "v").status == 200:
                return n
        return None
    return wait_for(f"a write acknowledged through {nodes}", attempt, timeout=timeout)


def quorum_view(c: ProcCluster, node: str) -> dict[str, Any]:
    return http("GET", c.agents[node].url + "/v1/quorum", timeout=5).body  # type: ignore[no-any-return]


def metric(c: ProcCluster, node: str, name: str) -> float:
    text = http("GET", c.agents[node].url + "/metrics", timeout=5).body
    assert isinstance(text, str)
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} not exported by {node}"
    return float(m.group(1))


def start(c: NetCluster) -> str:
    c.start_all()
    return c.leader(timeout=60)


# -- scenarios -------------------------------------------------------------------------------


def _minority_scenario(c: NetCluster, minority: list[str]) -> None:
    """The leader is cut off with ``minority``: the majority elects and
    serves; the minority steps down, and past the quorum grace period its
    watchdog still waits, never forcing (S3); after healing it rejoins in
    the same epoch."""
    majority = [n for n in c.agents if n not in minority]
    epoch = {n: quorum_view(c, n)["epoch"] for n in c.agents}

    def during() -> None:
        new = c.leader(among=majority, timeout=30)
        assert new in majority
        write_through(c, majority, "during-partition")
        for n in minority:
            wait_for(f"{n} to step down", lambda n=n: c.status(n)["role"] != "leader", timeout=30)
        # 5 election timeouts of grace, then a probe round every election timeout.
        for n in minority:
            wait_for(f"{n}'s watchdog to decide", lambda n=n: (quorum_view(c, n)["decision"] or {}).get(
                "decision") == "wait", timeout=30)

    run = under_fault(c, lambda: c.lab.partition(minority, majority), c.lab.heal, hold=10.0, during=during)
    for n in minority:
        q = quorum_view(c, n)
        assert q["forced"] == [] and q["epoch"] == epoch[n], q
    check_run(c, run)
    assert {n: quorum_view(c, n)["epoch"] for n in c.agents} == epoch, "an epoch changed: something forced"
    assert run.acked_writes(run.fault_at, run.heal_at), "the majority acknowledged no write during the partition"


def test_leader_in_the_minority_of_three(netcluster: Callable[..., NetCluster]) -> None:
    c = netcluster(3)
    leader = start(c)
    _minority_scenario(c, [leader])


def test_leader_in_the_minority_of_five(netcluster: Callable[..., NetCluster]) -> None:
    c = netcluster(5)
    leader = start(c)
    follower = next(n for n in c.agents if n != leader)
    _minority_scenario(c, [leader, follower])


def test_bridge_partition_keeps_serving(netcluster: Callable[..., NetCluster]) -> None:
    """The leader and one follower cannot reach each other; the third node
    sees both. A quorum stays connected (through the bridge node), so writes
    go on being acknowledged while the cut holds."""
    c = netcluster(3)
    leader = start(c)
    a, bridge = [n for n in c.agents if n != leader]

    def during() -> None:
        stop_at = time.monotonic() + 6.0
        while time.monotonic() < stop_at:  # keep writing through the fault: each must be acknowledged
            write_through(c, list(c.agents), f"bridge-{int(time.monotonic() * 1000)}")

    run = under_fault(c, lambda: c.lab.cut(leader, a), c.lab.heal, hold=8.0, during=during)
    check_run(c, run)
    late = run.acked_writes(run.fault_at + 3_000_000, run.heal_at)
    assert late, "no write acknowledged in the cut's last seconds"


def test_one_way_loss_from_the_leader(netcluster: Callable[..., NetCluster]) -> None:
    """Every packet from the leader to one follower is lost (the other way
    works). TCP needs both directions, so the pair is cut for Raft; the
    cluster must still serve through the third node."""
    c = netcluster(3)
    leader = start(c)
    victim = next(n for n in c.agents if n != leader)

    run = under_fault(c, lambda: c.lab.drop(leader, victim), c.lab.heal, hold=8.0,
                      during=lambda: write_through(c, list(c.agents), "one-way"))
    check_run(c, run)
    assert run.acked_writes(run.fault_at + 3_000_000, run.heal_at), "no write acknowledged under one-way loss"


def test_packet_loss_on_every_link(netcluster: Callable[..., NetCluster]) -> None:
    """A fifth of the packets between peers are lost, on every link, both
    ways: retransmissions slow things down; nothing is lost or reordered."""
    c = netcluster(3)
    start(c)
    run = under_fault(c, lambda: c.lab.loss(20), c.lab.heal, hold=10.0,
                      during=lambda: write_through(c, list(c.agents), "lossy", timeout=60))
    check_run(c, run)
    assert run.acked_writes(run.fault_at, run.heal_at), "no write acknowledged under 20% loss"


def test_flapping_link_leaves_no_controller_on_a_follower(netcluster: Callable[..., NetCluster]) -> None:
    """The leader's link goes down for longer than an election timeout and
    comes back, again and again (S6 on a real network): leadership moves
    each time, the flap counter moves, and once the link stays up only the
    leader runs controllers."""
    c = netcluster(3)
    start(c)
    flaps = 0

    def flap() -> None:
        nonlocal flaps
        for _ in range(4):
            leader = c.leader(timeout=30)
            c.lab.isolate(leader)
            wait_for(f"{leader} to step down", lambda leader=leader: c.status(leader)["role"] != "leader",
                     timeout=30)
            c.leader(among=[n for n in c.agents if n != leader], timeout=30)
            c.lab.heal()
            flaps += 1

    run = under_fault(c, flap, c.lab.heal, hold=0.0)
    assert flaps == 4
    check_run(c, run, min_writes=5)
    counted = sum(metric(c, n, "quorate_leadership_flaps_total") for n in c.agents)
    assert counted >= 1, "leadership was lost within the flap window and nothing counted it"
    leader = c.leader(timeout=30)

    def controllers_only_on_leader() -> bool:
        running = {n: metric(c, n, "quorate_controllers_running") for n in c.agents}
        return running == {n: (1.0 if n == leader else 0.0) for n in c.agents}
    wait_for("controllers on the leader only", controllers_only_on_leader, timeout=30)


def test_delay_with_jitter_on_every_link(netcluster: Callable[..., NetCluster]) -> None:
    """Every peer byte is held back 40 ± 30 ms each way (round trips of
    20-140 ms against a 60 ms heartbeat and 600 ms election timeout): the
    cluster keeps one leader at a time and serves, only slower."""
    c = netcluster(3)
    start(c)
    run = under_fault(c, lambda: c.lab.delay(40, 30), c.lab.heal, hold=10.0,
                      during=lambda: write_through(c, list(c.agents), "slow", timeout=60))
    check_run(c, run)
    during = run.acked_writes(run.fault_at, run.heal_at)
    assert during, "no write acknowledged under delay"
    latencies = sorted(op.complete - op.invoke for op in during)  # type: ignore[operator]
    print(f"writes acknowledged under delay: {len(during)}, median latency {latencies[len(latencies) // 2] / 1000:.0f} ms")
    assert latencies[len(latencies) // 2] >= 40_000, "the delay did not reach the peer links"
