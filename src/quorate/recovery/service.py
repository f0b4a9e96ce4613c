"""One node's life around its backups: starting, recovery mode, normal mode.

Theory of operation
-------------------
::

    STARTING --decide()--> NORMAL   <--------------------------+
        |                    | a recovery starts in the store   |
        |                    v                                  |
        +-----------------> RECOVERY --complete recorded---------+
        |
        +--case 5, no --accept-rollback--> REFUSED (the agent exits 3)

STARTING: the node takes part in Raft (it votes and replicates, so the
others can decide too) but serves no normal API call; it waits until it is
a member and caught up (a linearizable read, retried with a bounded wait
each time) and reads the store's backup counter and recovery records, then
applies the pure decision of ``startup.py`` to them and its newest local
backup. Requests that arrive meanwhile wait for the decision (at most the
request timeout), then are served or refused with ``starting``.

NORMAL: the backup loop runs. If a recovery starts in the store meanwhile
(a node that started on the lost store published an offer), this node
joins it: seed 002's "any node that starts before recovery is completed
... will go into recovery", applied to a node that decided a moment
before the first offer appeared.

RECOVERY: see ``mode.py``. On completion, local backups newer than the
restored one are kept as orphans at once (not only at the next write), so
a restart of this node does not then refuse to start over them (seed 002:
"Does case 3 interact badly with case 5?"), and a new backup follows.

The gate (:meth:`RecoveryService.admit`) is what the API asks before every
request. Always served: status, health, metrics, the member list, the
recovery endpoints, the internal write path, and keys under ``_quorate/``
(the bookkeeping recovery itself reads and writes). Everything else is
refused in recovery mode with ``recovery_mode`` and what to do.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Gauge

from quorate.errors import NoLeader, NotCommitted, RecoveryMode, RequestTimeout, ShuttingDown, Starting
from quorate.runtime.observer import LatestValue

from .backup_file import Backup, BackupDir, BackupHeader
from .backup_loop import BackupLoop
from .keys import COUNTER_KEY, RESERVED_PREFIX, parse_counter
from .mode import RecoveryRun, recovery_view
from .startup import Action, Decision, StoreFacts, decide
from .writer import StoreWriter

log = logging.getLogger("quorate.recovery")

#: Exit code of an agent that refuses to start on a rolled-back store.
EXIT_REFUSED = 3

#: Served in every phase (read-only cluster information and recovery itself).
_ALWAYS = frozenset({"/v1/status", "/v1/health", "/metrics", "/v1/recovery", "/v1/recovery/proceed"})
INTERNAL_PREFIX = "/v1/internal/"


class Phase(enum.Enum):
    STARTING = "starting"
    NORMAL = "normal"
    RECOVERY = "recovery"
    REFUSED = "refused"


def recovery_message(node: str) -> str:
    return (f"node {node} is in recovery mode: the replicated store lost its data and waits to be restored "
            "from a manager's local backup; the request was not applied. See the backups on offer with "
            "`quorate recovery status`, then restore one with `quorate recovery proceed [NODE]` (default: "
            "the highest counter). See docs/recovery.md")


def is_bookkeeping(request: web.Request) -> bool:
    """Requests the gate lets through in every phase."""
    path = request.path
    if path in _ALWAYS or path.startswith(INTERNAL_PREFIX):
        return True
    if path == "/v1/members" and request.method == "GET":
        return True
    if path.startswith("/v1/kv/"):
        return path[len("/v1/kv/"):].startswith(RESERVED_PREFIX)
    if path in ("/v1/kv", "/v1/watch"):
        return request.query.get("prefix", "").startswith(RESERVED_PREFIX)
    return False


class RecoveryService:
    def __init__(self, rt: Any, writer: StoreWriter, backups: BackupDir, *, cluster_id: str,
                 backup_interval_s: float, accept_rollback: bool = False, auto_recover_after_s: float | None = None,
                 on_refuse: Callable[[str], None] | None = None, wall_clock: Callable[[], float] = time.time,
                 min_gap_s: float | None = None) -> None:
        self.rt = rt
        self.writer = writer
        self.backups = backups
        self.cluster_id = cluster_id
        self.backup_interval_s = backup_interval_s
        self.accept_rollback = accept_rollback
        self.auto_recover_after_s = auto_recover_after_s
        self._on_refuse = on_refuse
        self._wall_clock = wall_clock
        self._min_gap_s = min_gap_s
        self.refuse_linger_s = max(5.0, 5 * float(getattr(rt, "election_timeout_s", 1.0)))
        self.phase: LatestValue[Phase] = LatestValue(Phase.STARTING)
        self.decision: Decision | None = None
        self.waiting_for = "a leader"
        self.local: Backup | None = None
        #: The header of this node's newest local backup, kept current.
        self.local_header: BackupHeader | None = None
        self.run_state: RecoveryRun | None = None
        self.loop: BackupLoop | None = None
        self.restore_lock = asyncio.Lock()
        r = rt.metrics.registry
        self._m_mode = Gauge("quorate_recovery_mode", "1 while this node is in recovery mode", registry=r)
        self._m_counter = Gauge("quorate_backup_counter", "Counter of this node's newest local backup", registry=r)
        self._m_backups = Counter("quorate_backups", "Local backups written by this node", registry=r)

    # -- the phases ---------------------------------------------------------------

    def _set_phase(self, phase: Phase) -> None:
        if phase is not self.phase.value:
            log.info("node=%s phase %s -> %s", self.rt.id, self.phase.value.value, phase.value)
        self.phase.set(phase)
        self._m_mode.set(1 if phase is Phase.RECOVERY else 0)

    async def run(self) -> None:
        await self._load_local()
        facts = await self._learn_store()
        decision = decide(self.local.counter if self.local else None, facts, accept_rollback=self.accept_rollback)
        self.decision = decision
        level = logging.WARNING if decision.action is not Action.NORMAL or decision.case == 5 else logging.INFO
        log.log(level, "node=%s start-up case %d: %s", self.rt.id, decision.case, decision.reason)
        if decision.action is Action.REFUSE:
            self._set_phase(Phase.REFUSED)
            log.critical("node=%s refuses to start: %s", self.rt.id, decision.reason)
            # Stay a voter a little longer, so that the other managers, which
            # may need this node for a quorum, can read the store and decide too.
            await asyncio.sleep(self.refuse_linger_s)
            if self._on_refuse is not None:
                self._on_refuse(decision.reason)
            return
        if decision.orphan_above is not None:
            await asyncio.to_thread(self.backups.orphan_newer_than, decision.orphan_above,
                                    why="--accept-rollback: the store is older")
            await self._load_local()
        recovering = decision.action is Action.RECOVERY
        dirty = decision.case != 1
        while True:
            if recovering:
                await self._recover()
                dirty = True
            self._set_phase(Phase.NORMAL)
            await self._normal(dirty)
            log.warning("node=%s a recovery started in the store while this node ran normally: joining it",
                        self.rt.id)
            await self._load_local()
            recovering = True

    async def _load_local(self) -> None:
        self.local = await asyncio.to_thread(self.backups.newest)
        self.local_header = self.local.header if self.local is not None else None
        if self.local is not None:
            self._m_counter.set(self.local.counter)

    async def _learn_store(self) -> StoreFacts:
        loop = asyncio.get_running_loop()
        last_log = loop.time()
        while True:
            seen = self.rt.leadership.version
            try:
                await self.rt.read_barrier()
                return self.store_facts()
            except (NoLeader, RequestTimeout, NotCommitted) as exc:
                self.waiting_for = str(exc)
            if loop.time() - last_log >= 10.0:
                last_log = loop.time()
                log.info("node=%s starting: still waiting to learn the store's backup counter (%s)",
                         self.rt.id, self.waiting_for)
            try:
                await self.rt.leadership.wait_newer(seen, 0.2)
            except TimeoutError:
                pass

    def store_facts(self) -> StoreFacts:
        kv = self.rt.sm.kv.get(COUNTER_KEY)
        view = recovery_view(self.rt)
        recovered = (view.complete.node, view.complete.counter) if view.complete else None
        return StoreFacts(parse_counter(kv.value) if kv else None, view.in_progress, recovered)

    async def _recover(self) -> None:
        self._set_phase(Phase.RECOVERY)
        self.run_state = RecoveryRun(self.rt, self.writer, self.local, auto_after_s=self.auto_recover_after_s,
                                     wall_clock=self._wall_clock)
        done = await self.run_state.run()
        log.info("node=%s recovery complete: %s restored backup %d; leaving recovery mode", self.rt.id,
                 done.node, done.counter)
        await asyncio.to_thread(self.backups.orphan_newer_than, done.counter,
                                why=f"the recovery restored the older backup {done.counter} of {done.node}")
        await self._load_local()
        self.run_state = None

    async def _normal(self, dirty: bool) -> None:
        """Run the backup loop until a recovery starts in the store."""
        kwargs = {} if self._min_gap_s is None else {"min_gap_s": self._min_gap_s}
        self.loop = BackupLoop(self.rt, self.writer, self.backups, cluster_id=self.cluster_id,
                               interval_s=self.backup_interval_s, dirty=dirty, on_written=self._written,
                               wall_clock=self._wall_clock, **kwargs)
        task = asyncio.create_task(self.loop.run(), name=f"backups-{self.rt.id}")
        try:
            while not task.done():
                seen = self.rt.applied.version
                if recovery_view(self.rt).in_progress:
                    return
                try:
                    await self.rt.applied.wait_newer(seen, 1.0)
                except TimeoutError:
                    pass
            task.result()  # the loop never ends by itself: re-raise what stopped it
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _written(self, header: BackupHeader) -> None:
        self._m_backups.inc()
        self._m_counter.set(header.counter)
        self.local_header = header

    # -- the gate the API asks ------------------------------------------------------

    async def admit(self, request: web.Request) -> None:
        if self.phase.value is Phase.NORMAL or is_bookkeeping(request):
            return
        if self.phase.value is Phase.STARTING:
            try:
                await self.phase.wait_newer(self.phase.version, self.rt.request_timeout)
            except TimeoutError:
                pass
        phase = self.phase.value
        if phase is Phase.NORMAL:
            return
        if phase is Phase.STARTING:
            raise Starting(f"node {self.rt.id} is starting: it serves requests once it has learnt the store's "
                           f"backup counter from the cluster (waiting for: {self.waiting_for}); the request "
                           "was not applied, retry")
        if phase is Phase.RECOVERY:
            raise RecoveryMode(recovery_message(self.rt.id))
        raise ShuttingDown(f"node {self.rt.id} refused to start: "
                           f"{self.decision.reason if self.decision else 'see its log'}")

    def adjust_status(self, status: dict[str, Any]) -> dict[str, Any]:
        phase = self.phase.value
        problems = list(status.get("problems", []))
        if phase is Phase.RECOVERY:
            status["role"] = "recovery"
            note = self.run_state.note if self.run_state else ""
            problems.insert(0, f"recovery mode: the store lost its data ({note}). Normal API calls are "
                               "refused. See the backups on offer with `quorate recovery status`, then restore "
                               "one with `quorate recovery proceed [NODE]`")
        elif phase is Phase.STARTING:
            problems.insert(0, f"starting: learning the store's backup counter before serving requests "
                               f"(waiting for: {self.waiting_for})")
        elif phase is Phase.REFUSED and self.decision is not None:
            problems.insert(0, f"refused to start: {self.decision.reason}")
        elif self.loop is not None and self.loop.last_error:
            problems.append(f"local backups into {self.backups.path} are failing ({self.loop.last_error}); "
                            "the node keeps serving and retries")
        status["problems"] = problems
        return status

    def healthy(self) -> bool:
        return self.phase.value is Phase.NORMAL

    # -- for the recovery endpoints ---------------------------------------------------

    def local_offer(self) -> dict[str, Any] | None:
        h = self.local_header
        return None if h is None else {"counter": h.counter, "wall_time": h.wall_time}
