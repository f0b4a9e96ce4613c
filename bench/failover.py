"""Leader failover: kill -9 the leader, then time until a write through a
survivor is acknowledged (the survivor forwards it or, once it leads, commits
it).

Writes are probed, not retried one after the other: a new write attempt (on
a new connection, 5 s timeout each) starts every 10 ms until one is
acknowledged, so a system that holds a request until a leader appears (etcd)
and one that refuses at once (quorate answers ``no_leader``) are timed the
same way, to 10 ms. The killed node is restarted and the cluster settles
(every node agrees on a leader and a write succeeds) before the next trial.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time

from bench.load import HttpConn
from bench.systems import Cluster

PROBE_EVERY = 0.01
ATTEMPT_TIMEOUT = 5.0
TRIAL_CAP = 30.0


async def _probe(cluster: Cluster, node: int, trial: int, t0: float) -> float:
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    tasks: set[asyncio.Task[None]] = set()

    async def attempt(n: int) -> None:
        conn = HttpConn("127.0.0.1", cluster.api_ports[node])
        try:
            method, path, body = cluster.write_req(f"bench/failover/{trial}/{n}", "v")
            status, _ = await asyncio.wait_for(conn.request(method, path, body), ATTEMPT_TIMEOUT)
            if status == 200 and not done.done():
                done.set_result(time.perf_counter() - t0)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            pass
        finally:
            conn.close()

    n = 0
    try:
        while not done.done() and time.perf_counter() - t0 < TRIAL_CAP:
            t = asyncio.create_task(attempt(n))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            n += 1
            try:
                await asyncio.wait_for(asyncio.shield(done), PROBE_EVERY)
            except TimeoutError:
                pass
        return done.result() if done.done() else TRIAL_CAP
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def one_trial(cluster: Cluster, trial: int) -> float:
    lead = cluster.wait_ready()
    time.sleep(0.3)  # let the restarted node's catch-up finish
    survivor = (lead + 1) % 3
    proc = cluster.procs[lead]
    assert proc is not None
    t0 = time.perf_counter()
    os.kill(proc.pid, signal.SIGKILL)
    took = asyncio.run(_probe(cluster, survivor, trial, t0))
    proc.wait(timeout=30)
    cluster.restart(lead)
    return took * 1000


def summary(ms: list[float]) -> dict[str, float]:
    s = sorted(ms)
    return {"min": s[0], "median": statistics.median(s), "p90": s[min(len(s) - 1, int(0.9 * len(s)))],
            "max": s[-1]}
