"""The backup loop: every manager keeps local backups of the store (seed 002).

Theory of operation
-------------------
The loop runs while the node is in normal mode. It takes a backup when the
node's *dirty* flag is set, or at the latest ``interval`` seconds after the
previous one. The flag lives in this node's memory, as the seed has it: it
is set when an applied change touches a key a backup holds (the
bookkeeping keys of :func:`keys.in_backup` never set it, or the nodes
would back up each other's counter increments forever), and it is cleared
when a backup *starts*, so a change that lands while a backup is being
taken sets it again and the next backup follows (after ``min_gap``
seconds, or 20 times the last backup's duration if that is longer, which
bounds the cost under a steady stream of writes: the copy of the store runs
on the event loop).

Changes are found by reading the store's watch history from the revision
seen last; when that history is gone (compacted, or a snapshot was
installed) the flag is set, which errs on the side of one backup too many.

One backup (:func:`capture`):

1. take a counter from the store: compare-and-set ``_quorate/backup/counter``
   from the value this node sees to that value + 1, through the leader
   (a mismatch means another node took one: read again and retry);
2. wait until this node has applied that write, then copy the backed-up
   keys at the applied raft index, on the event loop, so the copy is one
   consistent state that includes everything committed before the counter;
3. encode and write the file in a thread (temp file, fsync, rename, fsync
   the directory; newer backups become orphans; retention).

The header carries the counter, wall time, cluster id, raft index, node id
and KV revision; the counter orders backups across nodes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from quorate.kv import Compacted

from .backup_file import Backup, BackupDir, BackupHeader, rows_of
from .keys import COUNTER_KEY, in_backup, parse_counter
from .writer import WriteOutcome, retrying

log = logging.getLogger("quorate.recovery")

#: Seconds between two backups when changes keep coming.
MIN_GAP_S = 1.0
# Backups of a dirty store are at least this many times their own duration
# apart (so a store that takes 0.5 s to copy is backed up every 10 s at most).
LOOP_SHARE_FACTOR = 20


class Writer(Protocol):
    async def put(self, key: str, value: str, prev_revision: int | None = None) -> WriteOutcome: ...


async def wait_revision(rt: Any, revision: int, deadline: float) -> None:
    """Until this node has applied KV ``revision`` (TimeoutError after
    ``deadline``, loop time)."""
    loop = asyncio.get_running_loop()
    while rt.sm.kv.revision < revision:
        seen = rt.applied.version
        left = deadline - loop.time()
        if left <= 0:
            raise TimeoutError(f"revision {revision} was not applied here in time "
                               f"(this node is at {rt.sm.kv.revision})")
        try:
            await rt.applied.wait_newer(seen, left)
        except TimeoutError:
            continue


async def take_counter(rt: Any, writer: Writer, *, deadline: float) -> tuple[int, int]:
    """A fresh backup counter from the store: (counter, KV revision of the
    write that took it). Atomic: a compare-and-set on the counter's revision."""
    while True:
        kv = rt.sm.kv.get(COUNTER_KEY)
        current = (parse_counter(kv.value) or 0) if kv is not None else 0
        prev = kv.mod_revision if kv is not None else 0
        outcome = await retrying(
            "take a backup counter", lambda: writer.put(COUNTER_KEY, str(current + 1), prev),
            deadline=deadline, node=rt.id)
        if outcome.applied:
            return current + 1, outcome.revision
        await wait_revision(rt, outcome.current_revision or 0, deadline)


async def capture(rt: Any, writer: Writer, *, cluster_id: str, wall_clock: Callable[[], float] = time.time,
                  timeout: float = 30.0) -> Backup:
    """Steps 1 and 2 of a backup: a counter, then a consistent copy of the
    backed-up keys at a raft index that includes the counter's write."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    counter, revision = await take_counter(rt, writer, deadline=deadline)
    await wait_revision(rt, revision, deadline)
    kv = rt.sm.kv
    rows = rows_of(kv.list_prefix(""), in_backup)
    header = BackupHeader(counter=counter, wall_time=wall_clock(), cluster_id=cluster_id,
                          raft_index=rt.sm.applied_index, node=rt.id, revision=kv.revision, keys=len(rows))
    return Backup(header, tuple(rows))


class BackupLoop:
    """See the module docstring. ``dirty`` starts True unless told otherwise
    (a node on a brand-new store has nothing worth a counter yet)."""

    def __init__(self, rt: Any, writer: Writer, backups: BackupDir, *, cluster_id: str, interval_s: float,
                 min_gap_s: float = MIN_GAP_S, dirty: bool = True,
                 wall_clock: Callable[[], float] = time.time,
                 on_written: Callable[[BackupHeader], None] | None = None) -> None:
        self.rt = rt
        self.writer = writer
        self.backups = backups
        self.cluster_id = cluster_id
        self.interval_s = interval_s
        self.min_gap_s = min_gap_s
        self._gap = min_gap_s  # grows with the time a backup takes
        self.dirty = dirty
        self._wall_clock = wall_clock
        self._on_written = on_written
        # Changes up to this KV revision have been looked at.
        self._seen_revision = rt.sm.kv.revision
        self.last: BackupHeader | None = None
        #: Why the last backup failed (None once one succeeds again).
        self.last_error: str | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        # As if a backup had started min_gap ago: a dirty start backs up at
        # once, a clean one after the interval.
        last_start = loop.time() - self.min_gap_s
        failures = 0
        while True:
            await self._until_due(last_start)
            last_start = loop.time()
            try:
                await self.backup_once()
                # Copying the store runs on the event loop: keep backups of a
                # large store to a small share of the loop's time.
                self._gap = max(self.min_gap_s, LOOP_SHARE_FACTOR * (loop.time() - last_start))
                failures = 0
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.dirty = True
                self.last_error = f"{type(exc).__name__}: {exc}"
                pause = min(30.0, 0.5 * 2 ** failures)
                log.warning("node=%s backup failed (%s); trying again in %.1fs", self.rt.id, exc, pause)
                await asyncio.sleep(pause)

    async def backup_once(self) -> BackupHeader:
        # Cleared as the backup starts: a change from here on sets it again.
        self.dirty = False
        self._seen_revision = self.rt.sm.kv.revision
        backup = await capture(self.rt, self.writer, cluster_id=self.cluster_id, wall_clock=self._wall_clock,
                               timeout=max(30.0, 3 * self.rt.request_timeout))
        report = await asyncio.to_thread(self.backups.write, backup.header, backup.rows)
        h = backup.header
        log.info("node=%s wrote backup %d (%d keys, raft index %d) to %s", self.rt.id, h.counter, h.keys,
                 h.raft_index, report.path)
        self.last = h
        if self._on_written is not None:
            self._on_written(h)
        return h

    def scan(self) -> bool:
        """Set the dirty flag if a backed-up key changed since the last look."""
        if self.dirty:
            return True
        sm = self.rt.sm
        revision = sm.kv.revision
        if revision == self._seen_revision:
            return False
        try:
            events = sm.history.since(self._seen_revision + 1)
        except Compacted:
            self.dirty = True
        else:
            self.dirty = any(in_backup(e.key) for e in events)
        self._seen_revision = revision
        return self.dirty

    async def _until_due(self, last_start: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if self.scan():
                if now >= last_start + self._gap:
                    return
                await asyncio.sleep(last_start + self._gap - now)
                continue
            due = last_start + self.interval_s
            if now >= due:
                return
            seen = self.rt.applied.version
            try:
                await self.rt.applied.wait_newer(seen, min(due - now, 5.0))
            except TimeoutError:
                pass
