"""HTTP endpoints of backups and recovery mode (DESIGN.md public contract).

- ``GET /v1/recovery``: ``{"active", "state": waiting|proceeding|complete|none,
  "offers": [{"node", "counter", "wall_time"}], "suggested"}`` plus details
  (``phase``, ``proceed``, ``complete``, ``expected``, ``local_backup``,
  ``store_counter``, ``message``, ``stale``). Served in every phase.
- ``POST /v1/recovery/proceed {"node": id|null}``: choose the backup to
  restore (null: the suggested one). 409 when there is nothing to proceed
  with or a choice was already made.
- ``GET /v1/backup``: a fresh backup of the store, as the bytes of a backup
  file (it takes a counter like any backup; nothing is written locally).
- ``POST /v1/backup/restore`` (body: a backup file): make the store's
  backed-up keys equal the file's, with ordinary writes; the backup counter
  is left alone (it only ever grows while the store lives).
- ``POST /v1/internal/propose``: the internal write path (``writer.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from quorate.errors import BadRequest, Conflict, NoLeader, QuorateError, RequestTimeout
from quorate.kv import CommandError, decode_command

from .backup_file import BackupError, decode, encode
from .backup_loop import capture
from .keys import COUNTER_KEY, PROCEED_KEY, parse_counter
from .mode import recovery_view
from .restore import apply_plan, plan_restore
from .service import Phase, RecoveryService
from .state import RecoveryView
from .writer import INTERNAL_PROPOSE, WriteOutcome

log = logging.getLogger("quorate.recovery")

#: The largest backup file ``POST /v1/backup/restore`` accepts.
MAX_BACKUP_BYTES = 1 << 30
RESTORE_TIMEOUT_S = 600.0


class ProceedBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    node: str | None = Field(default=None, min_length=1, max_length=64)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


class RecoveryRoutes:
    def __init__(self, service: RecoveryService) -> None:
        self.svc = service
        self.rt = service.rt
        self.writer = service.writer

    def install(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/v1/recovery", self.get_recovery)
        r.add_post("/v1/recovery/proceed", self.proceed)
        r.add_get("/v1/backup", self.save)
        r.add_post("/v1/backup/restore", self.restore)
        r.add_post(INTERNAL_PROPOSE, self.internal_propose)

    # -- recovery ---------------------------------------------------------------------

    async def _try_barrier(self) -> bool:
        try:
            await asyncio.wait_for(self.rt.read_barrier(), min(2.0, self.rt.request_timeout))
            return True
        except (QuorateError, TimeoutError):
            return False

    async def get_recovery(self, request: web.Request) -> web.Response:
        fresh = await self._try_barrier()
        return _json({**self.recovery_json(), "stale": not fresh})

    def recovery_json(self) -> dict[str, Any]:
        view = recovery_view(self.rt)
        phase = self.svc.phase.value
        active = phase is Phase.RECOVERY
        state = view.state(active)
        suggested = view.suggested() if state == "waiting" else None
        counter_kv = self.rt.sm.kv.get(COUNTER_KEY)
        return {
            "active": active,
            "state": state,
            "offers": [o.to_json() for o in view.offers],
            "suggested": suggested.node if suggested else None,
            "phase": phase.value,
            "node": self.rt.id,
            "proceed": view.proceed,
            "complete": view.complete.to_json() if view.complete else None,
            "expected": sorted(self.rt.node.conf.voters),
            "local_backup": self.svc.local_offer(),
            "store_counter": parse_counter(counter_kv.value) if counter_kv else None,
            "message": self._message(view, state),
        }

    def _message(self, view: RecoveryView, state: str) -> str:
        if state == "waiting":
            s = view.suggested()
            if s is None:
                return "recovery mode: waiting for a node with a local backup to offer it"
            return (f"recovery mode: waiting for the operator; `quorate recovery proceed` restores the backup "
                    f"{s.counter} of {s.node} (the highest counter)")
        if state == "proceeding":
            return f"recovery is proceeding: {view.proceed} is restoring its backup into the store"
        if state == "complete" and view.complete is not None:
            c = view.complete
            return f"the last recovery is complete: {c.node} restored its backup {c.counter}"
        return "no recovery: the store holds its data"

    async def proceed(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = ProceedBody.model_validate(json.loads(raw) if raw else {})
        except (ValueError, RecursionError, ValidationError) as exc:  # RecursionError: nested too deeply
            raise BadRequest(f"invalid request body: expected {{\"node\": ID or null}} ({exc})") from None
        await self.rt.read_barrier()
        view = recovery_view(self.rt)
        self._check_can_proceed(view)
        choice = view.offer(body.node) if body.node else view.suggested()
        if choice is None or choice.counter is None:
            offered = ", ".join(f"{o.node} ({o.counter})" for o in view.offers if o.counter is not None) or "none"
            what = f"{body.node} has not offered a backup" if body.node else "no node has offered a backup yet"
            raise Conflict(f"{what}; nodes with backups on offer: {offered}")
        outcome = await self.writer.put(PROCEED_KEY, choice.node, prev_revision=0)
        if not outcome.applied:
            current = self.rt.sm.kv.get(PROCEED_KEY)
            raise Conflict(f"the recovery is already proceeding with "
                           f"{current.value if current else 'another node'}")
        log.warning("node=%s recovery: proceeding with the backup %d of %s (chosen through the API)",
                    self.rt.id, choice.counter, choice.node)
        return _json({"node": choice.node, "counter": choice.counter, "state": "proceeding"})

    def _check_can_proceed(self, view: RecoveryView) -> None:
        if view.complete is not None:
            raise Conflict(f"the recovery is already complete: {view.complete.node} restored its backup "
                           f"{view.complete.counter}")
        if view.proceed is not None:
            raise Conflict(f"the recovery is already proceeding with {view.proceed}")
        if not view.in_progress and self.svc.phase.value is not Phase.RECOVERY:
            raise Conflict("there is no recovery to proceed with: no node is in recovery mode")

    # -- operator backups -------------------------------------------------------------

    async def save(self, request: web.Request) -> web.Response:
        try:
            backup = await capture(self.rt, self.writer, cluster_id=self.svc.cluster_id,
                                   timeout=max(30.0, 3 * self.rt.request_timeout))
        except TimeoutError as exc:
            raise RequestTimeout(f"no backup could be taken in time: {exc}") from None
        data = await asyncio.to_thread(encode, backup.header, backup.rows)
        log.info("node=%s served backup %d (%d keys) to an operator", self.rt.id, backup.counter,
                 backup.header.keys)
        return web.Response(body=data, content_type="application/octet-stream",
                            headers={"X-Quorate-Backup-Counter": str(backup.counter)})

    async def restore(self, request: web.Request) -> web.Response:
        data = await _read_limited(request, MAX_BACKUP_BYTES)
        try:
            backup = await asyncio.to_thread(decode, data, "the uploaded file")
        except BackupError as exc:
            raise BadRequest(str(exc)) from None
        if self.svc.restore_lock.locked():
            raise Conflict("another restore is running on this node")
        async with self.svc.restore_lock:
            await self.rt.read_barrier()
            plan = plan_restore(backup, self.rt.sm.kv.list_prefix(""), delete_others=True)
            log.warning("node=%s restoring backup %d of %s through the API: %d keys to write, %d to delete",
                        self.rt.id, backup.counter, backup.header.node, len(plan.puts), len(plan.deletes))
            deadline = asyncio.get_running_loop().time() + RESTORE_TIMEOUT_S
            try:
                report = await apply_plan(self.writer, plan, node=self.rt.id, deadline=deadline)
            except TimeoutError as exc:
                raise RequestTimeout(f"the restore did not finish in time ({exc}); part of it may have "
                                     "taken effect: run it again") from None
        return _json({**report.to_json(), "backup": backup.header.to_json()})

    # -- the internal write path --------------------------------------------------------

    async def internal_propose(self, request: web.Request) -> web.Response:
        if not self.rt.is_leader:
            raise NoLeader(f"{self.rt.id} is not the leader", leader=self.rt.leader_id)
        data = await request.read()
        try:
            decode_command(data)
        except CommandError as exc:
            raise BadRequest(f"not a KV command: {exc}") from None
        result = await self.rt.propose(data)
        return _json(WriteOutcome.from_result(result).to_json())


async def _read_limited(request: web.Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 20):
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"the backup is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
