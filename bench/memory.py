"""Memory per node (RSS from /proc) and snapshot install time.

Snapshot install: kill -9 one follower, write K keys through the leader,
write a marker key, restart the follower, and time from its restart until
the marker is readable locally on it (a stale/serializable read). The
leader has compacted its log by then (quorate: ``--snapshot-entries``
default 10,000; etcd: ``--snapshot-count 10000``; PySyncObj: its default
5,000), so the follower is brought back by a snapshot.
"""

from __future__ import annotations

import asyncio
import time

from bench.load import closed_loop
from bench.procs import rss_mb, wait_for
from bench.systems import Cluster


def rss_all(cluster: Cluster) -> list[float]:
    return [rss_mb(pid) for pid in cluster.pids()]


def snapshot_install(cluster: Cluster, keys: int, value: str) -> tuple[float, list[float], int]:
    """Returns (install ms, RSS of every node afterwards, keys written)."""
    lead = cluster.wait_ready()
    behind = (lead + 1) % 3
    cluster.kill9(behind)
    res = asyncio.run(closed_loop("127.0.0.1", cluster.api_ports[lead], 64, 3600.0,
                                  lambda c, i: cluster.write_req(f"bench/mem/{i:07d}", value), max_ops=keys))
    marker = "bench/mem/marker"
    wait_for("marker write", lambda: cluster.try_write(lead, marker, "m", timeout=5.0), 30)
    t0 = time.perf_counter()
    cluster.restart(behind)
    wait_for(f"{cluster.label}: follower caught up", lambda: cluster.has_key_locally(behind, marker),
             timeout=600, every=0.01)
    took = (time.perf_counter() - t0) * 1000
    time.sleep(1.0)
    return took, rss_all(cluster), res.ok
