"""Internal writes through the leader, which work in recovery mode too.

The public API refuses user calls while a node is in recovery mode, yet
recovery itself writes: offers, the operator's choice, the restored keys,
the counter, completion; and the backup loop takes counters. On the
leader a write is proposed directly to the runtime; on any other node it
is sent to the leader's internal endpoint ``POST /v1/internal/propose``
(the encoded KV command as the body), which proposes it there and is
exempt from the recovery gate. It is protected by the API token like every
other endpoint.

Every write gives back a :class:`WriteOutcome`; transient failures (no
leader, not committed, the leader unreachable, a timeout) raise the
runtime's errors so callers decide whether retrying is safe: every caller
here writes idempotent values or compare-and-sets, so they all retry.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from quorate.http_session import new_session
from quorate.errors import NoLeader, NotCommitted, QuorateError, RequestTimeout, ShuttingDown
from quorate.kv import Applied, Delete, NotFound, Put, Rejected, RevisionMismatch, encode_command
from quorate.runtime.raft_loop import RaftRuntime

log = logging.getLogger("quorate.recovery")

INTERNAL_PROPOSE = "/v1/internal/propose"
FORWARDED = "X-Quorate-Forwarded"
T = TypeVar("T")

#: Errors after which the same write may simply be sent again.
TRANSIENT = (NoLeader, NotCommitted, RequestTimeout)


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """``applied``: the write took effect at ``revision``. Otherwise
    ``current_revision`` is the key's revision that failed the CAS (0:
    absent), or None for a delete of an absent key."""

    applied: bool
    revision: int = 0
    current_revision: int | None = None

    def to_json(self) -> dict[str, Any]:
        if self.applied:
            return {"result": "applied", "revision": self.revision}
        if self.current_revision is None:
            return {"result": "not_found"}
        return {"result": "revision_mismatch", "current_revision": self.current_revision}

    @classmethod
    def from_result(cls, result: Any) -> WriteOutcome:
        if isinstance(result, Applied):
            return cls(True, result.revision)
        if isinstance(result, RevisionMismatch):
            return cls(False, current_revision=result.current_revision)
        if isinstance(result, NotFound):
            return cls(False)
        if isinstance(result, Rejected):
            raise QuorateError(f"the store rejected an internal write: {result.reason}")
        raise QuorateError(f"unexpected apply result {result!r}")


class StoreWriter:
    def __init__(self, rt: RaftRuntime, *, api_token: str | None = None,
                 ssl_client: ssl.SSLContext | None = None) -> None:
        self.rt = rt
        self._token = api_token
        self._ssl = ssl_client
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def put(self, key: str, value: str, prev_revision: int | None = None) -> WriteOutcome:
        return await self.submit(Put(key, value, prev_revision, uuid.uuid4().hex))

    async def delete(self, key: str) -> WriteOutcome:
        return await self.submit(Delete(key, None, uuid.uuid4().hex))

    async def submit(self, cmd: Put | Delete) -> WriteOutcome:
        data = encode_command(cmd)
        if self.rt.is_leader:
            return WriteOutcome.from_result(await self.rt.propose(data))
        leader, info = self.rt.leader_id, self.rt.leader_info()
        if leader is None or info is None or not info.api_addr:
            raise NoLeader("no leader (or its API address) is known yet", leader=leader)
        return await self._post(leader, info.api_addr, data)

    async def _post(self, leader: str, api_addr: str, data: bytes) -> WriteOutcome:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.rt.request_timeout + 2)
            self._session = new_session(timeout=timeout)
        scheme = "https" if self._ssl else "http"
        headers = {FORWARDED: self.rt.id, "Content-Type": "application/octet-stream"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            async with self._session.post(f"{scheme}://{api_addr}{INTERNAL_PROPOSE}", data=data,
                                          headers=headers, ssl=self._ssl) as resp:
                payload = await resp.json(content_type=None)
                status = resp.status
        except aiohttp.ClientConnectorError as exc:
            raise NoLeader(f"the leader {leader} could not be reached: {exc}", leader=leader) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise RequestTimeout(f"the leader {leader} did not answer: {exc!r}") from None
        if status == 200 and isinstance(payload, dict):
            return _outcome_from_json(payload)
        code = payload.get("error") if isinstance(payload, dict) else None
        message = payload.get("message") if isinstance(payload, dict) else str(payload)
        if code in ("no_leader", "not_committed", "shutting_down", "starting"):
            raise NoLeader(f"{leader}: {message}", leader=None)
        if code == "timeout":
            raise RequestTimeout(f"{leader}: {message}")
        raise QuorateError(f"the leader {leader} refused an internal write ({status} {code}): {message}")


def _outcome_from_json(payload: dict[str, Any]) -> WriteOutcome:
    result = payload.get("result")
    if result == "applied":
        return WriteOutcome(True, int(payload["revision"]))
    if result == "revision_mismatch":
        return WriteOutcome(False, current_revision=int(payload["current_revision"]))
    if result == "not_found":
        return WriteOutcome(False)
    raise QuorateError(f"unexpected answer to an internal write: {payload!r}")


async def retrying(what: str, attempt: Callable[[], Awaitable[T]], *, deadline: float | None = None,
                   node: str = "?") -> T:
    """Run ``attempt`` until it succeeds, backing off on transient errors;
    :class:`TimeoutError` once ``deadline`` (loop time) has passed. Only for
    writes that are safe to repeat."""
    loop = asyncio.get_running_loop()
    delay = 0.05
    last_logged = loop.time()
    while True:
        try:
            return await attempt()
        except ShuttingDown:
            raise
        except TRANSIENT as exc:
            now = loop.time()
            if deadline is not None and now + delay > deadline:
                raise TimeoutError(f"{what}: gave up: {exc}") from exc
            if now - last_logged > 10:
                log.info("node=%s still trying to %s: %s", node, what, exc)
                last_logged = now
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)
