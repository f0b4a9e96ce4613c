"""The HTTP API of one node (aiohttp), per the public contract in DESIGN.md.

Every error is JSON ``{"error": code, "message": text}``. Writes and
membership changes are served by the leader: a follower forwards them once
(marked with a header so a stale hint can never make a loop). Linearizable
reads are served locally after a ReadIndex round, so any node can answer.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import itertools
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from aiohttp import web

from quorate.http_session import new_session
from quorate.errors import (
    BadRequest,
    Conflict,
    CompactedRevision,
    KeyNotFound,
    NoLeader,
    QuorateError,
    RequestTimeout,
    RevisionConflict,
)
from quorate.kv import Applied, Compacted, Delete, NotFound, Put, Rejected, RevisionMismatch, encode_command
from quorate.kv.commands import CommandError, KVError
from quorate.raft import ConfChange, ConfChangeType
from quorate.manager.electorate import cleanup, removal_refusal
from quorate.runtime import views
from quorate.runtime.raft_loop import RaftRuntime
from quorate.runtime.state_machine import MemberInfo

from .schemas import JoinBody, PutBody, TransferBody, parse_body

if TYPE_CHECKING:
    from .groups import ManagerView

log = logging.getLogger("quorate.api")

FORWARDED = "X-Quorate-Forwarded"
RESERVED_PREFIX = "_quorate/"
MAX_BODY = 2 << 20  # a 1 MiB value plus JSON overhead
WATCH_MAX_S = 60.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RUNTIME: web.AppKey[RaftRuntime] = web.AppKey("runtime", RaftRuntime)
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _error(code: str, message: str, status: int, **extra: Any) -> web.Response:
    return _json({"error": code, "message": message, **extra}, status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except QuorateError as exc:
        return _json(exc.to_json(), exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status, "bad_request")
        return _error(code, exc.reason or code, exc.status)


def _remote(request: web.Request) -> str:
    """``host:port`` of the caller, for log lines."""
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(request.remote)


def _auth(token: str | None, node_id: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Bearer-token check; /v1/health stays open so that load balancers and
    the health checks of other tools need no secret. A refusal is logged with
    the caller's address and what was wrong, never with the presented token."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is not None and request.path != "/v1/health":
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                why = ("no Authorization header" if not given else
                       "wrong bearer token" if given.startswith("Bearer ") else "not a bearer token")
                # The raw path: percent-escapes stay escaped, so no line can be forged in the log.
                log.warning("node=%s refused API request %s %.200s from %s: unauthorized (%s)", node_id,
                            request.method, request.rel_url.raw_path, _remote(request), why)
                return _error("unauthorized", "a valid 'Authorization: Bearer TOKEN' header is required", 401)
        return await handler(request)

    return middleware


class Gate(Protocol):
    """What the node's mode (S5: starting, recovery mode) says about
    requests; see ``quorate.recovery.service``."""

    async def admit(self, request: web.Request) -> None:
        """Return to serve the request; raise a QuorateError to refuse it."""

    def adjust_status(self, status: dict[str, Any]) -> dict[str, Any]: ...

    def healthy(self) -> bool: ...


def _gate_middleware(gate: Gate) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        await gate.admit(request)
        return await handler(request)

    return middleware


class Api:
    def _request_id(self) -> str:
        """Unique per write: this node, a per-process nonce, a counter."""
        return f"{self.rt.id}-{self._nonce}-{next(self._ids)}"

    def __init__(self, runtime: RaftRuntime, *, api_token: str | None = None,
                 peer_ssl: Any = None, gate: Gate | None = None, manager: ManagerView | None = None,
                 status_hooks: list[Callable[[dict[str, Any]], dict[str, Any]]] | None = None) -> None:
        self.rt = runtime
        self.manager = manager
        self.api_token = api_token
        self._client_ssl = peer_ssl
        self.gate = gate
        self._status_hooks = list(status_hooks or [])  # more words for /v1/status (quorum recovery)
        self.leave_hook: Callable[[], Awaitable[dict[str, Any]]] | None = None  # set by the agent
        self._nonce = secrets.token_hex(4)
        self._ids = itertools.count(1)

    # -- app ------------------------------------------------------------------

    def app(self) -> web.Application:
        middlewares = [_errors, _auth(self.api_token, self.rt.id)]
        if self.gate is not None:
            middlewares.append(_gate_middleware(self.gate))
        app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY)
        app.cleanup_ctx.append(self._session_ctx)
        r = app.router
        r.add_get("/v1/status", self.get_status)
        r.add_get("/v1/health", self.get_health)
        r.add_get("/metrics", self.get_metrics)
        r.add_get("/v1/kv", self.list_kv)
        r.add_get("/v1/kv/{key:.+}", self.get_kv)
        r.add_put("/v1/kv/{key:.+}", self.put_kv)
        r.add_delete("/v1/kv/{key:.+}", self.delete_kv)
        r.add_get("/v1/watch", self.watch)
        r.add_get("/v1/members", self.get_members)
        r.add_post("/v1/members", self.join)
        r.add_post("/v1/members/{id}/promote", self.promote)
        r.add_delete("/v1/members/{id}", self.remove_member)
        r.add_post("/v1/leader/transfer", self.transfer)
        r.add_post("/v1/leave", self.leave)
        from .groups import GroupRoutes  # it builds on this module's helpers

        GroupRoutes(self, self.manager).install(app)
        return app

    async def _session_ctx(self, app: web.Application) -> Any:
        timeout = aiohttp.ClientTimeout(total=self.rt.request_timeout + 2)
        async with new_session(timeout=timeout) as session:
            self._session = session
            yield

    # -- forwarding to the leader ------------------------------------------------

    async def _forward(self, request: web.Request, body: bytes | None) -> web.Response:
        """Send a leader-only request to the leader, once."""
        if request.headers.get(FORWARDED):
            raise NoLeader("the node this request was forwarded to is not the leader either; "
                           "the request was not applied", leader=self.rt.leader_id)
        leader, info = await self._wait_leader_address()
        scheme = "https" if self._client_ssl else "http"
        url = f"{scheme}://{info.api_addr}{request.rel_url}"
        headers = {FORWARDED: self.rt.id, "Content-Type": "application/json"}
        if auth := request.headers.get("Authorization"):
            headers["Authorization"] = auth
        try:
            async with self._session.request(request.method, url, data=body, headers=headers,
                                             ssl=self._client_ssl) as resp:
                payload = await resp.read()
                return web.Response(body=payload, status=resp.status, content_type="application/json")
        except aiohttp.ClientConnectorError as exc:
            raise NoLeader(f"the leader {leader} could not be reached ({exc!s}); "
                           "the request was not applied", leader=leader) from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            # Sent, but no answer: the leader may have applied it.
            raise RequestTimeout(f"the leader {leader} did not answer ({exc!s}); "
                                 "the request may or may not have taken effect") from None

    async def _wait_leader_address(self) -> tuple[str, MemberInfo]:
        """The leader and its API address, waiting briefly: right after an
        election the leader's address registration may still be in flight."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(self.rt.request_timeout, 3.0)
        while True:
            leader, info = self.rt.leader_id, self.rt.leader_info()
            if leader is not None and info is not None and info.api_addr:
                return leader, info
            left = deadline - loop.time()
            if left <= 0:
                what = "no leader is known" if leader is None else f"the API address of leader {leader} is not known yet"
                raise NoLeader(f"{what}; the request was not applied, retry", leader=leader)
            try:
                await self.rt.applied.wait_newer(self.rt.applied.version, min(left, 0.05))
            except TimeoutError:
                pass

    # -- status ---------------------------------------------------------------------

    async def get_status(self, request: web.Request) -> web.Response:
        st = views.status(self.rt)
        for hook in self._status_hooks:
            st = hook(st)
        return _json(self.gate.adjust_status(st) if self.gate is not None else st)

    async def get_health(self, request: web.Request) -> web.Response:
        healthy = views.has_quorum(self.rt) and (self.gate is None or self.gate.healthy())
        return _json({"healthy": healthy, "id": self.rt.id, "leader": self.rt.leader_id}, 200 if healthy else 503)

    async def get_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.rt.metrics.render(), content_type="text/plain")

    # -- kv -----------------------------------------------------------------------------

    async def _propose(self, request: web.Request, cmd: Put | Delete, body: bytes | None) -> Any:
        if not self.rt.is_leader:
            return await self._forward(request, body)
        return await self.rt.propose(encode_command(cmd))

    async def put_kv(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = parse_body(PutBody, _loads(raw))
        cmd = _build(lambda: Put(request.match_info["key"], body.value, body.prev_revision, self._request_id()))
        result = await self._propose(request, cmd, raw)
        if isinstance(result, web.Response):
            return result
        return _write_result(result)

    async def delete_kv(self, request: web.Request) -> web.Response:
        prev = _int_query(request, "prev_revision")
        cmd = _build(lambda: Delete(request.match_info["key"], prev, self._request_id()))
        result = await self._propose(request, cmd, None)
        if isinstance(result, web.Response):
            return result
        return _write_result(result)

    async def _barrier(self, request: web.Request) -> None:
        consistency = request.query.get("consistency", "linearizable")
        if consistency not in ("linearizable", "stale"):
            raise BadRequest("consistency must be 'linearizable' or 'stale'")
        if consistency == "linearizable":
            await self.rt.read_barrier()

    async def get_kv(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        await self._barrier(request)
        kv = self.rt.sm.kv.get(key)
        if kv is None:
            raise KeyNotFound(f"key {key!r} does not exist")
        return _json(_kv_json(kv))

    async def list_kv(self, request: web.Request) -> web.Response:
        prefix = request.query.get("prefix", "")
        limit = _int_query(request, "limit")
        await self._barrier(request)
        kvs = self.rt.sm.kv.list_prefix(prefix, None if _hides_reserved(prefix) else limit)
        if _hides_reserved(prefix):
            kvs = [kv for kv in kvs if not kv.key.startswith(RESERVED_PREFIX)][:limit]
        return _json({"revision": self.rt.sm.kv.revision, "kvs": [_kv_json(kv) for kv in kvs]})

    async def watch(self, request: web.Request) -> web.Response:
        prefix = request.query.get("prefix", "")
        start = _int_query(request, "from_revision")
        timeout = min(_float_query(request, "timeout", 30.0), WATCH_MAX_S)
        if start is None:
            start = self.rt.sm.kv.revision + 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while True:
            try:
                events = self.rt.sm.history.since(start, prefix)
            except Compacted as exc:
                raise CompactedRevision(str(exc), oldest_revision=exc.oldest) from None
            if _hides_reserved(prefix):
                events = [e for e in events if not e.key.startswith(RESERVED_PREFIX)]
            if events:
                return _json({"events": [e.to_json() for e in events], "next_revision": events[-1].revision + 1})
            left = deadline - loop.time()
            if left <= 0:
                return _json({"events": [], "next_revision": max(start, self.rt.sm.kv.revision + 1)})
            try:
                await self.rt.applied.wait_newer(self.rt.applied.version, left)
            except TimeoutError:
                pass

    # -- members ----------------------------------------------------------------------

    async def get_members(self, request: web.Request) -> web.Response:
        if not self.rt.is_leader and not request.headers.get(FORWARDED) and self.rt.leader_info():
            try:
                return await self._forward(request, None)
            except NoLeader:
                pass  # fall back to what this node sees
        return _json(views.members(self.rt))

    async def join(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = parse_body(JoinBody, _loads(raw))
        if not self.rt.is_leader:
            return await self._forward(request, raw)
        if body.id not in self.rt.node.conf.members():
            await self._make_room(body.id)
            await self.rt.add_learner(body.id, MemberInfo(body.peer_addr, body.api_addr))
        return _json({"members": views.members(self.rt)})

    async def _make_room(self, joiner: str) -> None:
        """A node joining is a replacement waiting: a failed voter goes
        first, through consensus, so the electorate never counts a dead
        member next to its replacement (S4, seed 004)."""
        states = views.member_states(self.rt)
        gone = cleanup(states, suspect_after_s=self.rt.election_timeout_s,
                       dead_after_s=self.rt.dead_member_timeout_s, min_voters=self.rt.min_voters,
                       replacements_waiting=1)
        voters = [m for m in gone if m in self.rt.node.conf.voters]
        if voters:
            log.warning("node=%s removing failed voter %s before %s joins (no dead member is counted next "
                        "to its replacement)", self.rt.id, voters[0], joiner)
            await self.rt.change_membership(ConfChange(ConfChangeType.REMOVE, voters[0]))

    async def promote(self, request: web.Request) -> web.Response:
        if not self.rt.is_leader:
            return await self._forward(request, None)
        node_id = request.match_info["id"]
        info = self.rt.sm.members.get(node_id)
        await self.rt.change_membership(
            ConfChange(ConfChangeType.ADD_VOTER, node_id, info.encode() if info else ""))
        return _json({})

    async def remove_member(self, request: web.Request) -> web.Response:
        """Remove a member. Refused, with the reason, when the member is
        alive or the removal would break the quorum; ``?force=true``
        overrides both, ``?reason=leave`` (a member leaving) only the first."""
        if not self.rt.is_leader:
            return await self._forward(request, None)
        target = request.match_info["id"]
        force = request.query.get("force", "").lower() in ("1", "true", "yes")
        leaving = request.query.get("reason") == "leave"
        conf = self.rt.node.conf
        if target not in conf.members():
            raise KeyNotFound(f"{target} is not a member (members: {', '.join(sorted(conf.members()))})")
        if not force:
            alive = views.alive_members(self.rt) - ({target} if leaving else set())
            why = removal_refusal(set(conf.voters), alive, target)
            if why is not None:
                raise Conflict(why)
        if target == self.rt.id:
            raise Conflict(f"{target} leads: hand leadership over first (`quorate members transfer`), or make "
                           "it leave (`quorate members leave`), which does both")
        await self.rt.change_membership(ConfChange(ConfChangeType.REMOVE, target))
        log.warning("node=%s removed member %s%s", self.rt.id, target,
                    " (forced)" if force else " (it left)" if leaving else "")
        return _json({"removed": target, "forced": force})

    async def leave(self, request: web.Request) -> web.Response:
        """This node leaves the cluster: leadership handed over if it leads,
        removed from the configuration, then it stops."""
        if self.leave_hook is None:
            raise Conflict("this node cannot leave through the API (it runs without an agent)")
        return _json(await self.leave_hook())

    async def transfer(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = parse_body(TransferBody, _loads(raw) if raw else {})
        if not self.rt.is_leader:
            return await self._forward(request, raw)
        target = self.rt.transfer_leadership(body.target)
        return _json({"target": target})


def _hides_reserved(prefix: str) -> bool:
    """Listings and watches leave out quorate's own keys unless asked for
    them by prefix: they are bookkeeping, not the user's data."""
    return not prefix.startswith(RESERVED_PREFIX)


def _loads(raw: bytes) -> object:
    # ValueError covers JSONDecodeError, bad UTF-8 and integers over 4300
    # digits; RecursionError is a body nested past the parser's depth.
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


def _build(make: Callable[[], Put | Delete]) -> Put | Delete:
    try:
        return make()
    except (CommandError, KVError, ValueError, TypeError) as exc:
        raise BadRequest(str(exc)) from None


def _int_query(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise BadRequest(f"query parameter {name} must not be negative")
    return value


def _float_query(request: web.Request, name: str, default: float) -> float:
    """A number of seconds from the query string; a word there is the
    caller's mistake (400), not the server's (500)."""
    raw = request.query.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name} must be a number, got {raw[:40]!r}") from None


def _kv_json(kv: Any) -> dict[str, Any]:
    return {"key": kv.key, "value": kv.value, "create_revision": kv.create_revision,
            "mod_revision": kv.mod_revision, "version": kv.version}


def _write_result(result: Any) -> web.Response:
    if isinstance(result, Applied):
        return _json({"revision": result.revision})
    if isinstance(result, RevisionMismatch):
        raise RevisionConflict("prev_revision does not match the key's current revision",
                               current_revision=result.current_revision)
    if isinstance(result, NotFound):
        raise KeyNotFound("the key does not exist")
    if isinstance(result, Rejected):
        raise BadRequest(f"the command was rejected: {result.reason}")
    raise QuorateError(f"unexpected apply result {result!r}")
