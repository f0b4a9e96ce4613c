"""HTTP endpoints of groups and instances (DESIGN.md public contract).

- ``PUT /v1/groups/{id}``, ``POST /v1/groups`` (body: a group spec) store the
  spec at ``_quorate/groups/<id>`` through the leader → ``{"group",
  "revision", "spec_hash"}``. A bad spec or an unknown provider is refused
  with 400 naming the field, before anything is proposed.
- ``GET /v1/groups`` → ``{"groups": [{"id", "provider", "size",
  "logical_ids", "desired", "spec_hash", "revision"}]}``, a linearizable
  read of the local store (``?consistency=stale`` reads it as it is).
- ``GET /v1/groups/{id}`` → ``{"spec", "revision", "spec_hash", "slots",
  "status"}``. Served by the leader, whose controller's last cycle is the
  ``status``; a node that cannot reach a leader answers from its own store
  with ``"status": null``.
- ``DELETE /v1/groups/{id}`` → ``{"revision"}``; the managers group cannot
  be deleted.
- ``GET /v1/instances[?group=G]`` → a list of instances (the contract's
  shape): the leader's fresh provider view, or this node's own when no
  leader is known; the ``X-Quorate-Source`` header says which (leader|local). 503 ``no_manager`` on a node that runs no manager.

Specs are stored as canonical JSON (sorted keys) so the same spec applied
twice stores the same bytes.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from quorate.errors import BadRequest, KeyNotFound, NoLeader, NoManager
from quorate.kv import Applied, Delete, NotFound, Put
from quorate.manager.model import GROUPS_PREFIX, SlotRecord, group_key, slots_prefix
from quorate.manager.spec import MANAGERS_GROUP, GroupSpec, SpecError, parse_spec
from quorate.providers.base import ProviderError

from .server import FORWARDED, _build, _json, _loads, _write_result

if TYPE_CHECKING:
    from .server import Api

log = logging.getLogger("quorate.api")


class ManagerView(Protocol):
    """What the API needs from the node's manager (controller + providers)."""

    async def instances(self, group: str | None) -> list[dict[str, Any]]:
        """A fresh provider view: dicts with at least ``id``, ``group``,
        ``logical_id``, ``slot``, ``state``, ``pid``, ``healthy``,
        ``incarnation``; every group when ``group`` is None."""

    def group_status(self, group: str) -> dict[str, Any] | None:
        """The controller's last cycle for ``group`` on this node, or None
        when no controller runs here."""


class GroupRoutes:
    def __init__(self, api: Api, manager: ManagerView | None) -> None:
        self.api = api
        self.rt = api.rt
        self.manager = manager

    def install(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/v1/groups", self.list_groups)
        r.add_post("/v1/groups", self.apply)
        r.add_get("/v1/groups/{id}", self.show)
        r.add_put("/v1/groups/{id}", self.apply)
        r.add_delete("/v1/groups/{id}", self.delete)
        r.add_get("/v1/instances", self.instances)

    async def _via_leader(self, request: web.Request) -> web.Response | None:
        """The leader's answer, or None when this node answers itself: it
        leads, it was forwarded to already, or no leader can be reached."""
        if self.rt.is_leader or request.headers.get(FORWARDED) or self.rt.leader_id is None:
            return None
        try:
            return await self.api._forward(request, None)
        except NoLeader:
            return None

    # -- specs ------------------------------------------------------------------------

    async def apply(self, request: web.Request) -> web.Response:
        raw = await request.read()
        spec = _parse(_loads(raw), request.match_info.get("id"))
        _check_provider(spec.provider)
        value = json.dumps(spec.to_json(), sort_keys=True)
        cmd = _build(lambda: Put(group_key(spec.id), value, None, self.api._request_id()))
        result = await self.api._propose(request, cmd, raw)
        if isinstance(result, web.Response):
            return result
        if not isinstance(result, Applied):
            return _write_result(result)  # raises why it was not applied
        log.info("node=%s group %s applied at revision %d (spec %s)", self.rt.id, spec.id, result.revision,
                 spec.spec_hash())
        return _json({"group": spec.id, "revision": result.revision, "spec_hash": spec.spec_hash()})

    async def list_groups(self, request: web.Request) -> web.Response:
        await self.api._barrier(request)
        groups = []
        for kv in self.rt.sm.kv.list_prefix(GROUPS_PREFIX):
            spec = _stored_spec(kv.value)
            if isinstance(spec, str):
                groups.append({"id": kv.key[len(GROUPS_PREFIX):], "revision": kv.mod_revision, "error": spec})
                continue
            groups.append({"id": spec.id, "provider": spec.provider, "size": spec.size,
                           "logical_ids": spec.logical_ids, "desired": len(spec.slots()),
                           "spec_hash": spec.spec_hash(), "revision": kv.mod_revision})
        return _json({"groups": groups})

    async def show(self, request: web.Request) -> web.Response:
        if (forwarded := await self._via_leader(request)) is not None:
            return forwarded
        group = request.match_info["id"]
        await self.api._barrier(request)
        kv = self.rt.sm.kv.get(group_key(group))
        if kv is None:
            raise KeyNotFound(f"group {group!r} does not exist")
        spec = _stored_spec(kv.value)
        if isinstance(spec, str):
            raise BadRequest(f"the stored spec of group {group!r} is invalid ({spec}); apply it again")
        slots = [_slot_json(r.key, r.value, r.mod_revision) for r in self.rt.sm.kv.list_prefix(slots_prefix(group))]
        status = self.manager.group_status(group) if self.manager is not None and self.rt.is_leader else None
        return _json({"spec": spec.to_json(), "revision": kv.mod_revision, "spec_hash": spec.spec_hash(),
                      "slots": slots, "status": status})

    async def delete(self, request: web.Request) -> web.Response:
        group = request.match_info["id"]
        if group == MANAGERS_GROUP:
            raise BadRequest("the managers group cannot be deleted; change its logical_ids to resize it")
        cmd = _build(lambda: Delete(group_key(group), None, self.api._request_id()))
        result = await self.api._propose(request, cmd, None)
        if isinstance(result, web.Response):
            return result
        if isinstance(result, NotFound):
            raise KeyNotFound(f"group {group!r} does not exist")
        log.info("node=%s group %s deleted", self.rt.id, group)
        return _write_result(result)

    # -- instances --------------------------------------------------------------------

    async def instances(self, request: web.Request) -> web.Response:
        if (forwarded := await self._via_leader(request)) is not None:
            return forwarded
        if self.manager is None:
            raise NoManager(f"node {self.rt.id} runs no manager, so it cannot list instances")
        try:
            found = await self.manager.instances(request.query.get("group") or None)
        except ProviderError as exc:
            raise NoManager(f"the provider could not list instances: {exc}") from None
        resp = _json(found)
        resp.headers["X-Quorate-Source"] = "leader" if self.rt.is_leader else "local"
        return resp


def _parse(body: object, path_id: str | None) -> GroupSpec:
    """The spec in a request body; a PUT's path names the group, so the
    body may leave the id out but must not contradict it."""
    if not isinstance(body, dict):
        raise BadRequest(f"invalid group spec: spec: expected a JSON object, got {type(body).__name__}")
    if path_id is not None:
        given = body.setdefault("id", path_id)
        if given != path_id:
            raise BadRequest(f"invalid group spec: id: {given!r} differs from the id in the path {path_id!r}")
    try:
        return parse_spec(body)
    except SpecError as exc:
        raise BadRequest(str(exc)) from None


def _check_provider(name: str) -> None:
    # Imported here: providers register themselves (entry points) and are
    # only needed when a spec is applied.
    from quorate.providers.registry import known_providers

    known = sorted(known_providers())
    if name not in known:
        raise BadRequest(f"invalid group spec: provider: unknown provider {name!r}; "
                         f"known providers: {', '.join(known)}")


def _stored_spec(value: str) -> GroupSpec | str:
    """The stored spec, or why it does not parse (written around the API)."""
    try:
        return parse_spec(json.loads(value))
    except (ValueError, SpecError) as exc:
        return str(exc)


def _slot_json(key: str, value: str, revision: int) -> dict[str, Any]:
    try:
        rec = SlotRecord.decode(value, revision)
    except (ValueError, KeyError, TypeError) as exc:
        return {"slot": key.rsplit("/", 1)[-1], "error": f"unreadable slot record: {exc}"}
    return {"slot": rec.slot, "instance_id": rec.instance_id, "incarnation": rec.incarnation,
            "member_id": rec.member_id, "term": rec.term}
