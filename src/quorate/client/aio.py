"""The asyncio client, on aiohttp. Same calls, same retry rules as
:class:`quorate.client.Client`; only sending and sleeping differ.

The aiohttp session is created on first use inside the running loop and
closed by :meth:`AsyncClient.close` (or ``async with``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import aiohttp
from yarl import URL

from quorate.http_session import new_session
from . import calls
from .calls import Call, Response
from .core import ClientCore
from .errors import QuorateClientError
from .models import Health, KeyValue, ListResult, Member, RecoveryStatus, Status, WatchBatch, WatchEvent
from .retry import Failure, Plan, Send, Sleep

T = TypeVar("T")


class AsyncClient:
    """See :class:`quorate.client.Client`; every method is a coroutine and
    :meth:`watch` an async generator."""

    def __init__(self, endpoints: str | Sequence[str], *, token: str | None = None, timeout: float = 10.0,
                 deadline: float = 30.0, max_attempts: int = 10, discover: bool = True,
                 ssl_context: ssl.SSLContext | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._core = ClientCore(endpoints, token=token, timeout=timeout, deadline=deadline,
                                max_attempts=max_attempts, discover=discover, clock=clock)
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def endpoints(self) -> list[str]:
        return self._core.book.endpoints

    @property
    def last_endpoint(self) -> str:
        return self._core.book.preferred

    async def discover(self) -> list[str]:
        self._core.learn(await self._drive(self._core.discovery_plan()))
        return self.endpoints

    # -- the API ------------------------------------------------------------

    async def status(self, endpoint: str | None = None) -> Status:
        return await self._run(calls.status(endpoint))

    async def health(self, endpoint: str | None = None) -> Health:
        return await self._run(calls.health(endpoint))

    async def metrics_text(self, endpoint: str | None = None) -> str:
        return await self._run(calls.metrics_text(endpoint))

    async def members(self) -> tuple[Member, ...]:
        found = await self._run(calls.members())
        self._core.saw_members(found)
        return found

    async def put(self, key: str, value: str, prev_revision: int | None = None) -> int:
        return await self._run(calls.put(key, value, prev_revision))

    async def get(self, key: str, stale: bool = False) -> KeyValue | None:
        return await self._run(calls.get(key, stale))

    async def delete(self, key: str, prev_revision: int | None = None) -> int | None:
        return await self._run(calls.delete(key, prev_revision))

    async def list(self, prefix: str = "", limit: int | None = None, stale: bool = False) -> ListResult:
        return await self._run(calls.list_prefix(prefix, limit, stale))

    async def watch_once(self, prefix: str, from_revision: int, timeout: float = 30.0) -> WatchBatch:
        return await self._run(calls.watch(prefix, from_revision, timeout))

    async def watch(self, prefix: str, from_revision: int, *,
                    poll_timeout: float = 30.0) -> AsyncIterator[WatchEvent]:
        revision = from_revision
        while True:
            batch = await self.watch_once(prefix, revision, poll_timeout)
            for event in batch.events:
                yield event
            revision = batch.next_revision

    async def join(self, node_id: str, peer_addr: str, api_addr: str) -> tuple[Member, ...]:
        return await self._run(calls.join(node_id, peer_addr, api_addr))

    async def promote(self, node_id: str) -> None:
        await self._run(calls.promote(node_id))

    async def remove(self, node_id: str, force: bool = False) -> None:
        await self._run(calls.remove(node_id, force))

    async def recovery_status(self, endpoint: str | None = None) -> RecoveryStatus:
        """Recovery mode: the offers, the suggestion and the state."""
        return await self._run(calls.recovery_status(endpoint))

    async def recovery_proceed(self, node: str | None = None) -> dict[str, Any]:
        """Restore ``node``'s backup (None: the suggested one)."""
        return await self._run(calls.recovery_proceed(node))

    async def backup_save(self) -> bytes:
        """A fresh backup of the store (the bytes of a backup file)."""
        return await self._run(calls.backup_save())

    async def backup_restore(self, data: bytes) -> dict[str, Any]:
        """Make the store's keys equal those of the backup file ``data``."""
        return await self._run(calls.backup_restore(data))

    async def apply_group(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Store a group spec → ``{"group", "revision", "spec_hash"}``."""
        return await self._run(calls.apply_group(spec))

    async def list_groups(self) -> list[dict[str, Any]]:
        return await self._run(calls.list_groups())

    async def get_group(self, group_id: str) -> dict[str, Any]:
        """The spec, its slots and the controller's last cycle (``status``)."""
        return await self._run(calls.get_group(group_id))

    async def delete_group(self, group_id: str) -> dict[str, Any]:
        return await self._run(calls.delete_group(group_id))

    async def list_instances(self, group: str | None = None) -> list[dict[str, Any]]:
        """The instances the leader's providers see (every group when None)."""
        return await self._run(calls.list_instances(group))

    async def transfer_leader(self, target: str | None = None) -> str | None:
        return await self._run(calls.transfer_leader(target))

    # -- driving a plan -------------------------------------------------------

    async def _run(self, call: Call[T]) -> T:
        if self._core.wants_discovery(call):
            try:
                await self.discover()
            except QuorateClientError:
                pass  # best effort: the call itself reports what is wrong
        return await self._drive(self._core.plan(call))

    async def _drive(self, plan: Plan[T]) -> T:
        outcome: Response | Failure | None = None
        try:
            while True:
                action = plan.send(outcome)
                if isinstance(action, Sleep):
                    await asyncio.sleep(action.seconds)
                    outcome = None
                else:
                    outcome = await self._exchange(action)
        except StopIteration as stop:
            return stop.value
        finally:
            plan.close()

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True)
            self._session = new_session(connector=connector)
        return self._session

    async def _exchange(self, send: Send) -> Response | Failure:
        req = send.request
        timeout = aiohttp.ClientTimeout(total=send.timeout,
                                        sock_connect=min(send.timeout, self._core.policy.request_timeout))
        try:
            async with self._session_now().request(
                req.method, URL(send.endpoint + req.target, encoded=True), data=req.body,
                headers=self._core.headers(req.body is not None), timeout=timeout, allow_redirects=False,
            ) as resp:
                body = await resp.read()
                return Response(resp.status, body, resp.headers.get("Location"))
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            return Failure(sent=False, reason=f"cannot connect: {exc}")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return Failure(sent=True, reason=f"{type(exc).__name__}: {exc}")
