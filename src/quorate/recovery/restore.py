"""Writing a backup's keys into the store with ordinary proposals.

Used by the node chosen in recovery mode and by the online
``quorate backup restore``. The plan is computed from this node's copy of
the store (callers take a linearizable read first): keys whose value
already matches are skipped, so a restore that was interrupted (the node
crashed half-way) is simply run again. Values come back exactly; the
revisions are new ones (a restore is a series of writes, not a rewind of
the revision counter).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from quorate.kv import KeyValue

from .backup_file import Backup
from .keys import COUNTER_KEY, in_backup
from .writer import StoreWriter, retrying

log = logging.getLogger("quorate.recovery")

CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class RestorePlan:
    puts: tuple[tuple[str, str], ...]
    deletes: tuple[str, ...]
    unchanged: int


@dataclass(frozen=True, slots=True)
class RestoreReport:
    written: int
    deleted: int
    unchanged: int

    def to_json(self) -> dict[str, int]:
        return {"written": self.written, "deleted": self.deleted, "unchanged": self.unchanged}


def plan_restore(backup: Backup, current: Iterable[KeyValue], *, delete_others: bool) -> RestorePlan:
    """What to write so that the store's backed-up keys equal the backup's
    (pure). ``delete_others``: also remove keys the backup does not have."""
    now = {kv.key: kv.value for kv in current if in_backup(kv.key)}
    wanted = dict(backup.items())
    puts = tuple((k, v) for k, v in sorted(wanted.items()) if in_backup(k) and now.get(k) != v)
    deletes = tuple(sorted(k for k in now if k not in wanted)) if delete_others else ()
    unchanged = sum(1 for k, v in wanted.items() if now.get(k) == v)
    return RestorePlan(puts, deletes, unchanged)


async def apply_plan(writer: StoreWriter, plan: RestorePlan, *, node: str, deadline: float) -> RestoreReport:
    """Run ``plan``'s writes (at most CONCURRENCY at a time, each retried on
    transient errors until ``deadline``, loop time); TimeoutError if the
    store could not take them in time."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def put(key: str, value: str) -> None:
        async with gate:
            await retrying(f"restore {key}", lambda: writer.put(key, value), deadline=deadline, node=node)

    async def delete(key: str) -> None:
        async with gate:
            await retrying(f"delete {key}", lambda: writer.delete(key), deadline=deadline, node=node)

    await _all([put(k, v) for k, v in plan.puts])
    await _all([delete(k) for k in plan.deletes])
    return RestoreReport(len(plan.puts), len(plan.deletes), plan.unchanged)


async def _all(coros: list) -> None:  # type: ignore[type-arg]
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()


async def write_counter(writer: StoreWriter, counter: int, *, node: str, deadline: float) -> None:
    """Set the store's backup counter (done last: it marks the store as
    living for every node that starts from now on)."""
    await retrying("restore the backup counter", lambda: writer.put(COUNTER_KEY, str(counter)),
                   deadline=deadline, node=node)
