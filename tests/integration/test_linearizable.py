"""Linearizability of a real 3-process cluster under a nemesis.

Concurrent clients do put / get / compare-and-set / delete on a few keys
through random nodes while a nemesis kills -9 and restarts, or pauses
(SIGSTOP) and resumes, random nodes. The history goes through the same
checker the simulator uses. Outcomes are recorded honestly: a write that
timed out or whose connection broke is "unknown" (it may have happened),
one refused with no_leader / not_committed did not happen and is dropped.
"""

from __future__ import annotations

import random
import signal
import threading
import time

import pytest

from quorate.sim.linearizability import Operation, OpKind, check_history

from .harness import ProcCluster
from .workload import client

pytestmark = pytest.mark.integration

RUN_SECONDS = 20.0


def _nemesis(c: ProcCluster, stop: threading.Event, seed: int, log: list[str]) -> None:
    rng = random.Random(seed)
    while not stop.wait(rng.uniform(1.0, 2.5)):
        victim = rng.choice(list(c.agents))
        if rng.random() < 0.5:
            log.append(f"kill -9 {victim}")
            c.kill9(victim)
            stop.wait(rng.uniform(0.5, 2.0))
            c.start(victim)
        else:
            log.append(f"pause {victim}")
            c.signal(victim, signal.SIGSTOP)
            stop.wait(rng.uniform(0.5, 2.0))
            c.signal(victim, signal.SIGCONT)


def test_history_under_kill_and_pause_is_linearizable(make_cluster) -> None:  # type: ignore[no-untyped-def]
    c = make_cluster(3, extra=["--request-timeout", "3", "--snapshot-entries", "200"])
    c.start_all()
    c.leader()
    history: list[Operation] = []
    faults: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=client, args=(c, cid, stop, history, 100 + cid)) for cid in range(5)]
    nemesis = threading.Thread(target=_nemesis, args=(c, stop, 7, faults))
    for t in threads + [nemesis]:
        t.start()
    time.sleep(RUN_SECONDS)  # the run's length, not a wait for a condition
    stop.set()
    for t in threads + [nemesis]:
        t.join(timeout=60)
    completed = [op for op in history if op.complete is not None]
    writes_ok = [op for op in completed if op.kind is not OpKind.GET and op.result and op.result[0] == "ok"]
    reads_ok = [op for op in completed if op.kind is OpKind.GET]
    print(f"faults: {faults}\nops recorded: {len(history)}, completed: {len(completed)}, "
          f"acknowledged writes: {len(writes_ok)}, reads: {len(reads_ok)}")
    assert faults, "the nemesis injected nothing"
    assert len(writes_ok) > 20 and len(reads_ok) > 20, "too little completed work to judge"
    verdict = check_history(history)
    if not verdict.ok:
        dump = c.root / "history.txt"
        dump.write_text("\n".join(op.describe() for op in sorted(history, key=lambda o: o.invoke)))
        print(f"history written to {dump}")
    assert verdict.ok, verdict.message
