"""Recovery mode: one node's part in rebuilding a lost store (seed 002).

Theory of operation
-------------------
A node in recovery mode refuses every normal API call (the gate in
``service.py``) and loops over one view of the recovery records
(``state.RecoveryView``), each turn deciding what to do from that view:

    complete recorded         -> leave recovery mode (return the record)
    own offer missing         -> publish it: {counter, wall_time} of the newest
                                 local backup, or {counter: null} without one
    proceed names this node   -> restore (once, in a task of its own):
                                 every backed-up key of the offered backup,
                                 then the backup counter, then ``complete``
    auto-recover due, no      -> choose the suggested offer (highest counter)
    choice yet                   with a compare-and-set on ``proceed``
    otherwise                 -> wait for the next applied change

Auto-recover is due once every voter has offered, or ``auto_after``
seconds after this node entered recovery mode. Writes go through the
leader (``writer.py``); all of them are idempotent or compare-and-sets, so
a failed turn is simply tried again on the next. A node that crashes while
restoring starts again in recovery mode (the store has no counter yet, or
no completion), finds ``proceed`` naming it and restores again: keys that
already hold their value are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from quorate.errors import NoLeader, NotCommitted, QuorateError, RequestTimeout

from .backup_file import Backup
from .keys import COMPLETE_KEY, OFFERS_PREFIX, PROCEED_KEY, RECOVERY_PREFIX
from .restore import apply_plan, plan_restore, write_counter
from .state import Complete, Offer, RecoveryView, complete_value, offer_value
from .writer import StoreWriter, retrying

log = logging.getLogger("quorate.recovery")

#: How long one restore attempt may take before it is started again.
RESTORE_ATTEMPT_S = 300.0


def recovery_view(rt: Any) -> RecoveryView:
    return RecoveryView.from_items((kv.key, kv.value) for kv in rt.sm.kv.list_prefix(RECOVERY_PREFIX))


class RecoveryRun:
    def __init__(self, rt: Any, writer: StoreWriter, backup: Backup | None, *, auto_after_s: float | None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.rt = rt
        self.writer = writer
        self.backup = backup
        self.auto_after_s = auto_after_s
        self._wall_clock = wall_clock
        self.offer = Offer(rt.id, backup.counter if backup else None, backup.header.wall_time if backup else None)
        self.note = "waiting for the offers and the operator's choice"
        self._restore: asyncio.Task[None] | None = None
        self._entered = 0.0
        self._last_complaint = 0.0
        self._offer_revision = 0

    async def run(self) -> Complete:
        loop = asyncio.get_running_loop()
        self._entered = loop.time()
        try:
            while True:
                view = recovery_view(self.rt)
                if view.complete is not None:
                    if self._restore is not None and not self._restore.done():
                        await asyncio.wait({self._restore}, timeout=self.rt.request_timeout)
                    return view.complete
                seen = self.rt.applied.version
                try:
                    await self._turn(view)
                except (NoLeader, NotCommitted, RequestTimeout, TimeoutError) as exc:
                    self._complain(f"the cluster cannot take writes yet ({exc}); retrying")
                except QuorateError as exc:
                    self._complain(f"recovery step failed: {exc}; retrying")
                try:
                    await self.rt.applied.wait_newer(seen, 0.5)
                except TimeoutError:
                    pass
        finally:
            if self._restore is not None and not self._restore.done():
                self._restore.cancel()

    async def _turn(self, view: RecoveryView) -> None:
        # Published but not applied here yet: nothing to do again.
        waiting_own_write = self.rt.sm.kv.revision < self._offer_revision
        if view.offer(self.rt.id) != self.offer and not waiting_own_write:
            outcome = await self.writer.put(OFFERS_PREFIX + self.rt.id,
                                            offer_value(self.offer.counter, self.offer.wall_time))
            self._offer_revision = outcome.revision
            log.info("node=%s recovery mode: offered backup %s", self.rt.id,
                     self.offer.counter if self.offer.counter is not None else "(none: no local backup)")
        if view.proceed is not None:
            self._on_proceed(view.proceed)
        elif self.auto_after_s is not None:
            await self._maybe_auto_proceed(view)

    def _on_proceed(self, chosen: str) -> None:
        if chosen != self.rt.id:
            self.note = f"recovery is proceeding with the backup of {chosen}; waiting for it to complete"
            return
        if self._restore is None:
            if self.backup is None:
                self.note = "this node was chosen but holds no backup: choose again after a new recovery"
                log.error("node=%s was chosen to restore the store but has no local backup", self.rt.id)
                return
            self.note = f"restoring this node's backup {self.backup.counter} into the store"
            self._restore = asyncio.create_task(self._run_restore(self.backup), name=f"restore-{self.rt.id}")

    async def _maybe_auto_proceed(self, view: RecoveryView) -> None:
        assert self.auto_after_s is not None
        waited = asyncio.get_running_loop().time() - self._entered
        voters = sorted(self.rt.node.conf.voters)
        everyone = view.all_offered(voters)
        if not everyone and waited < self.auto_after_s:
            return
        choice = view.suggested()
        if choice is None:
            return
        outcome = await self.writer.put(PROCEED_KEY, choice.node, prev_revision=0)
        if outcome.applied:
            why = (f"every voter ({', '.join(voters)}) offered" if everyone
                   else f"{self.auto_after_s:g}s passed in recovery mode")
            log.warning("node=%s auto-recovery: %s; proceeding with %s's backup %d (the highest counter)",
                        self.rt.id, why, choice.node, choice.counter)

    async def _run_restore(self, backup: Backup) -> None:
        rt = self.rt
        loop = asyncio.get_running_loop()
        while True:
            try:
                deadline = loop.time() + RESTORE_ATTEMPT_S
                await retrying("read the store before restoring", rt.read_barrier, deadline=deadline, node=rt.id)
                plan = plan_restore(backup, rt.sm.kv.list_prefix(""), delete_others=False)
                log.info("node=%s restoring backup %d of %s (%d keys to write, %d already there)", rt.id,
                         backup.counter, backup.header.node, len(plan.puts), plan.unchanged)
                await apply_plan(self.writer, plan, node=rt.id, deadline=deadline)
                await write_counter(self.writer, backup.counter, node=rt.id, deadline=deadline)
                done = complete_value(rt.id, backup.counter, self._wall_clock())
                await retrying("mark the recovery complete", lambda: self.writer.put(COMPLETE_KEY, done),
                               deadline=deadline, node=rt.id)
                log.info("node=%s restored backup %d (%d keys) and marked the recovery complete", rt.id,
                         backup.counter, len(backup.rows))
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("node=%s restore attempt failed (%s); starting it again", rt.id, exc)
                await asyncio.sleep(1.0)

    def _complain(self, text: str) -> None:
        now = asyncio.get_running_loop().time()
        self.note = text
        if now - self._last_complaint >= 10.0:
            self._last_complaint = now
            log.info("node=%s recovery mode: %s", self.rt.id, text)
