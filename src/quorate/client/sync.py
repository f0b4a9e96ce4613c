"""The blocking client, on ``http.client`` from the standard library.

One connection per exchange: a kept-alive connection that the server closed
while idle would make a write's outcome look unknown, and a CLI or script
gains nothing from pooling on a LAN.
"""

from __future__ import annotations

import http.client
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from . import calls
from .calls import Call, Response
from .core import ClientCore
from .errors import QuorateClientError
from .models import Health, KeyValue, ListResult, Member, RecoveryStatus, Status, WatchBatch, WatchEvent
from .retry import Failure, Plan, Send, Sleep

T = TypeVar("T")


class Client:
    """Talks to a quorate cluster through any of its nodes.

    ``endpoints``: ``http://host:port`` (one, several, or comma-separated);
    more are learnt from ``GET /v1/members`` unless ``discover=False``.
    ``timeout`` bounds one HTTP exchange, ``deadline`` a whole call with its
    retries. See :mod:`quorate.client.retry` for what is retried.
    """

    def __init__(self, endpoints: str | Sequence[str], *, token: str | None = None, timeout: float = 10.0,
                 deadline: float = 30.0, max_attempts: int = 10, discover: bool = True,
                 ssl_context: ssl.SSLContext | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._core = ClientCore(endpoints, token=token, timeout=timeout, deadline=deadline,
                                max_attempts=max_attempts, discover=discover, clock=clock)
        self._ssl = ssl_context
        self._sleep = sleep

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing is pooled; kept for symmetry with :class:`AsyncClient`."""

    @property
    def endpoints(self) -> list[str]:
        return self._core.book.endpoints

    @property
    def last_endpoint(self) -> str:
        """The endpoint that answered last (asked first next time)."""
        return self._core.book.preferred

    def discover(self) -> list[str]:
        """Learn every member's API address now; returns the endpoints."""
        self._core.learn(self._drive(self._core.discovery_plan()))
        return self.endpoints

    # -- the API ------------------------------------------------------------

    def status(self, endpoint: str | None = None) -> Status:
        """This node's view (``endpoint`` pins the node asked)."""
        return self._run(calls.status(endpoint))

    def health(self, endpoint: str | None = None) -> Health:
        return self._run(calls.health(endpoint))

    def metrics_text(self, endpoint: str | None = None) -> str:
        return self._run(calls.metrics_text(endpoint))

    def members(self) -> tuple[Member, ...]:
        found = self._run(calls.members())
        self._core.saw_members(found)
        return found

    def put(self, key: str, value: str, prev_revision: int | None = None) -> int:
        """The key's new mod revision. ``prev_revision=0``: must not exist."""
        return self._run(calls.put(key, value, prev_revision))

    def get(self, key: str, stale: bool = False) -> KeyValue | None:
        return self._run(calls.get(key, stale))

    def delete(self, key: str, prev_revision: int | None = None) -> int | None:
        """The revision of the delete, or None when the key was absent."""
        return self._run(calls.delete(key, prev_revision))

    def list(self, prefix: str = "", limit: int | None = None, stale: bool = False) -> ListResult:
        return self._run(calls.list_prefix(prefix, limit, stale))

    def watch_once(self, prefix: str, from_revision: int, timeout: float = 30.0) -> WatchBatch:
        return self._run(calls.watch(prefix, from_revision, timeout))

    def watch(self, prefix: str, from_revision: int, *, poll_timeout: float = 30.0) -> Iterator[WatchEvent]:
        """Every event under ``prefix`` from ``from_revision`` on, forever
        (raises :class:`CompactedError` when that history is gone)."""
        revision = from_revision
        while True:
            batch = self.watch_once(prefix, revision, poll_timeout)
            yield from batch.events
            revision = batch.next_revision

    def join(self, node_id: str, peer_addr: str, api_addr: str) -> tuple[Member, ...]:
        """Add a node as a learner (promoted once caught up); the members."""
        return self._run(calls.join(node_id, peer_addr, api_addr))

    def promote(self, node_id: str) -> None:
        self._run(calls.promote(node_id))

    def remove(self, node_id: str, force: bool = False) -> None:
        self._run(calls.remove(node_id, force))

    def recovery_status(self, endpoint: str | None = None) -> RecoveryStatus:
        """Recovery mode: the offers, the suggestion and the state."""
        return self._run(calls.recovery_status(endpoint))

    def recovery_proceed(self, node: str | None = None) -> dict[str, Any]:
        """Restore ``node``'s backup (None: the suggested one)."""
        return self._run(calls.recovery_proceed(node))

    def quorum_plan(self, endpoint: str, remove: list[str] | None = None) -> dict[str, Any]:
        """What ``quorate recover`` from that node would do (nothing is changed)."""
        return self._run(calls.quorum_plan(endpoint, remove))

    def quorum_recover(self, endpoint: str, remove: list[str] | None = None) -> dict[str, Any]:
        """Force a new configuration from that node: quorum-loss recovery."""
        return self._run(calls.quorum_recover(endpoint, remove))

    def leave(self, endpoint: str) -> dict[str, Any]:
        """Make the node at ``endpoint`` leave the cluster."""
        return self._run(calls.leave(endpoint))

    def backup_save(self) -> bytes:
        """A fresh backup of the store (the bytes of a backup file)."""
        return self._run(calls.backup_save())

    def backup_restore(self, data: bytes) -> dict[str, Any]:
        """Make the store's keys equal those of the backup file ``data``."""
        return self._run(calls.backup_restore(data))

    def apply_group(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Store a group spec → ``{"group", "revision", "spec_hash"}``."""
        return self._run(calls.apply_group(spec))

    def list_groups(self) -> list[dict[str, Any]]:
        return self._run(calls.list_groups())

    def get_group(self, group_id: str) -> dict[str, Any]:
        """The spec, its slots and the controller's last cycle (``status``)."""
        return self._run(calls.get_group(group_id))

    def delete_group(self, group_id: str) -> dict[str, Any]:
        return self._run(calls.delete_group(group_id))

    def list_instances(self, group: str | None = None) -> list[dict[str, Any]]:
        """The instances the leader's providers see (every group when None)."""
        return self._run(calls.list_instances(group))

    def transfer_leader(self, target: str | None = None) -> str | None:
        """Hand leadership to ``target`` (None: the most caught-up voter)."""
        return self._run(calls.transfer_leader(target))

    # -- driving a plan -------------------------------------------------------

    def _run(self, call: Call[T]) -> T:
        if self._core.wants_discovery(call):
            try:
                self.discover()
            except QuorateClientError:
                pass  # best effort: the call itself reports what is wrong
        return self._drive(self._core.plan(call))

    def _drive(self, plan: Plan[T]) -> T:
        outcome: Response | Failure | None = None
        try:
            while True:
                action = plan.send(outcome)
                if isinstance(action, Sleep):
                    self._sleep(action.seconds)
                    outcome = None
                else:
                    outcome = self._exchange(action)
        except StopIteration as stop:
            return stop.value
        finally:
            plan.close()

    def _exchange(self, send: Send) -> Response | Failure:
        parts = urlsplit(send.endpoint)
        connect_timeout = min(send.timeout, self._core.policy.request_timeout)
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=connect_timeout,
                                               context=self._ssl)
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=connect_timeout)
        try:
            try:
                conn.connect()
            except OSError as exc:
                return Failure(sent=False, reason=f"cannot connect: {exc}")
            if conn.sock is not None:
                conn.sock.settimeout(send.timeout)
            req = send.request
            try:
                headers = self._core.headers(req.body is not None)
                conn.request(req.method, req.target, body=req.body, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                return Failure(sent=True, reason=f"{type(exc).__name__}: {exc}")
            return Response(resp.status, body, resp.getheader("Location"))
        finally:
            conn.close()
