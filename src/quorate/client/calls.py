"""Every API call as data: the HTTP request, how to decode the answer, and
what may be retried. Shared by :class:`Client` and :class:`AsyncClient`, so
paths, query strings and JSON handling exist once.

A call is *idempotent* when sending it twice is harmless (reads, watches):
it may be re-sent after a connection was lost mid-request. Writes are not:
their outcome is then unknown and the client raises :class:`WriteTimeout`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode

from .errors import NotFoundError, ProtocolError, QuorateClientError, error_from_response
from .models import (
    Health,
    KeyValue,
    ListResult,
    Member,
    RecoveryStatus,
    Status,
    WatchBatch,
    members_from_json,
)

T = TypeVar("T")

#: The server caps a watch long poll at this many seconds.
MAX_WATCH_POLL = 60.0


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # already percent-encoded
    query: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None

    @property
    def target(self) -> str:
        """Path and query, as sent on the request line."""
        return self.path + (f"?{urlencode(self.query)}" if self.query else "")


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    location: str | None = None


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    request: Request
    decode: Callable[[Response], T]
    idempotent: bool
    #: Statuses that are answers, not errors (health answers 503 when unhealthy).
    ok_statuses: frozenset[int] = frozenset({200})
    #: A 404 ``not_found`` decodes to None instead of raising.
    absent_ok: bool = False
    #: Added to the per-request timeout (a long poll waits on purpose).
    extra_timeout: float = 0.0
    #: Ask this endpoint only (per-node calls); no failover.
    endpoint: str | None = None

    def outcome(self, resp: Response) -> T | None:
        """Decode an answer, or raise its typed error."""
        if resp.status in self.ok_statuses:
            return self.decode(resp)
        error = error_from_response(resp.status, resp.body)
        if self.absent_ok and isinstance(error, NotFoundError):
            return None
        raise error


def _json(resp: Response) -> Any:
    try:
        return json.loads(resp.body)
    except ValueError as exc:
        raise ProtocolError(f"answer is not JSON: {resp.body[:80]!r}", status=resp.status) from exc


def _revision(resp: Response) -> int:
    data = _json(resp)
    rev = data.get("revision") if isinstance(data, dict) else None
    if not isinstance(rev, int) or isinstance(rev, bool):
        raise ProtocolError(f"answer lacks an integer revision: {data!r}")
    return rev


def _body(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def key_path(key: str) -> str:
    """``/v1/kv/<key>``; ``/`` stays a separator, everything else is quoted."""
    if not key:
        raise ValueError("a key must not be empty")
    return "/v1/kv/" + quote(key, safe="/")


# -- the calls ------------------------------------------------------------


def status(endpoint: str | None = None) -> Call[Status]:
    return Call(Request("GET", "/v1/status"), lambda r: Status.from_json(_json(r)), True, endpoint=endpoint)


def health(endpoint: str | None = None) -> Call[Health]:
    return Call(Request("GET", "/v1/health"), lambda r: Health.from_json(_json(r)), True,
                ok_statuses=frozenset({200, 503}), endpoint=endpoint)


def metrics_text(endpoint: str | None = None) -> Call[str]:
    return Call(Request("GET", "/metrics"), lambda r: r.body.decode("utf-8", "replace"), True, endpoint=endpoint)


def members() -> Call[tuple[Member, ...]]:
    return Call(Request("GET", "/v1/members"), lambda r: members_from_json(_json(r)), True)


def put(key: str, value: str, prev_revision: int | None = None) -> Call[int]:
    if not isinstance(value, str):
        raise TypeError("a value is a str")
    body: dict[str, Any] = {"value": value}
    if prev_revision is not None:
        body["prev_revision"] = int(prev_revision)
    return Call(Request("PUT", key_path(key), body=_body(body)), _revision, False)


def get(key: str, stale: bool = False) -> Call[KeyValue | None]:
    query = (("consistency", "stale"),) if stale else ()
    return Call(Request("GET", key_path(key), query), lambda r: KeyValue.from_json(_json(r)), True, absent_ok=True)


def delete(key: str, prev_revision: int | None = None) -> Call[int | None]:
    query = (("prev_revision", str(int(prev_revision))),) if prev_revision is not None else ()
    return Call(Request("DELETE", key_path(key), query), _revision, False, absent_ok=True)


def list_prefix(prefix: str, limit: int | None = None, stale: bool = False) -> Call[ListResult]:
    query = [("prefix", prefix)]
    if limit is not None:
        query.append(("limit", str(int(limit))))
    if stale:
        query.append(("consistency", "stale"))
    return Call(Request("GET", "/v1/kv", tuple(query)), lambda r: ListResult.from_json(_json(r)), True)


def watch(prefix: str, from_revision: int, timeout: float = 30.0) -> Call[WatchBatch]:
    """One long poll; it answers when an event exists or after ``timeout``
    seconds (sent as a whole number, rounded up, capped at 60)."""
    seconds = min(max(math.ceil(timeout), 0), int(MAX_WATCH_POLL))
    query = (("prefix", prefix), ("from_revision", str(int(from_revision))), ("timeout", str(seconds)))
    return Call(Request("GET", "/v1/watch", query), lambda r: WatchBatch.from_json(_json(r)), True,
                extra_timeout=float(seconds))


def join(node_id: str, peer_addr: str, api_addr: str) -> Call[tuple[Member, ...]]:
    body = _body({"id": node_id, "peer_addr": peer_addr, "api_addr": api_addr})
    return Call(Request("POST", "/v1/members", body=body), lambda r: members_from_json(_json(r)), False)


def _item_path(collection: str, item_id: str, suffix: str = "") -> str:
    """``/v1/<collection>/<id>``; the id is one quoted path segment."""
    if not item_id:
        raise ValueError(f"an id in /v1/{collection} must not be empty")
    return f"/v1/{collection}/" + quote(item_id, safe="") + suffix


def _member_path(node_id: str, suffix: str = "") -> str:
    return _item_path("members", node_id, suffix)


def promote(node_id: str) -> Call[None]:
    return Call(Request("POST", _member_path(node_id, "/promote"), body=b"{}"), lambda r: None, False)


def remove(node_id: str, force: bool = False) -> Call[None]:
    """Remove a member; refused when it is alive or the removal would break
    the quorum, unless ``force``."""
    query = (("force", "true"),) if force else ()
    return Call(Request("DELETE", _member_path(node_id), query), lambda r: None, False)


def transfer_leader(target: str | None = None) -> Call[str | None]:
    def decode(r: Response) -> str | None:
        data = _json(r)
        got = data.get("target") if isinstance(data, dict) else None
        return got if isinstance(got, str) else None

    return Call(Request("POST", "/v1/leader/transfer", body=_body({"target": target})), decode, False)


def recovery_status(endpoint: str | None = None) -> Call[RecoveryStatus]:
    return Call(Request("GET", "/v1/recovery"), lambda r: RecoveryStatus.from_json(_json(r)), True,
                endpoint=endpoint)


def recovery_proceed(node: str | None = None) -> Call[dict[str, Any]]:
    """Choose the backup to restore (None: the suggested one). A
    compare-and-set on the server: only the first choice counts."""
    return Call(Request("POST", "/v1/recovery/proceed", body=_body({"node": node})), _json, False)


def quorum_plan(endpoint: str, remove: list[str] | None = None) -> Call[dict[str, Any]]:
    """What forcing a new configuration from that node would do (a dry run);
    ``remove``: the voters to drop (default: those that do not answer)."""
    query = (("remove", ",".join(remove)),) if remove else ()
    return Call(Request("GET", "/v1/quorum/recover", query), _object, True, endpoint=endpoint)


def quorum_recover(endpoint: str, remove: list[str] | None = None) -> Call[dict[str, Any]]:
    """Force a new configuration from that node (quorum-loss recovery)."""
    body: dict[str, Any] = {"confirm": True}
    if remove:
        body["remove"] = list(remove)
    return Call(Request("POST", "/v1/quorum/recover", body=_body(body)), _object, False, endpoint=endpoint)


def leave(endpoint: str) -> Call[dict[str, Any]]:
    """That node leaves the cluster (leadership handed over, removed, stopped)."""
    # A leader first hands leadership over, then waits for its removal.
    return Call(Request("POST", "/v1/leave"), _object, False, endpoint=endpoint, extra_timeout=30.0)


#: Seconds a backup download or restore may take beyond the request timeout.
BACKUP_EXTRA_TIMEOUT = 600.0


def backup_save() -> Call[bytes]:
    """A fresh backup of the store, as the bytes of a backup file."""
    return Call(Request("GET", "/v1/backup"), lambda r: r.body, True, extra_timeout=BACKUP_EXTRA_TIMEOUT)


def backup_restore(data: bytes) -> Call[dict[str, Any]]:
    """Make the store's keys equal the backup file's ``data``."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("a backup is bytes")
    return Call(Request("POST", "/v1/backup/restore", body=bytes(data)), _json, False,
                extra_timeout=BACKUP_EXTRA_TIMEOUT)


def _object(resp: Response) -> dict[str, Any]:
    data = _json(resp)
    if not isinstance(data, dict):
        raise ProtocolError(f"expected a JSON object, got {data!r:.80}")
    return data


def _object_list(resp: Response) -> list[dict[str, Any]]:
    """Decode a bare JSON list of objects."""
    items = _json(resp)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ProtocolError("answer is not a list of objects")
    return items


def _items(name: str) -> Callable[[Response], list[dict[str, Any]]]:
    """Decode ``{name: [objects...]}`` to the list."""
    def decode(resp: Response) -> list[dict[str, Any]]:
        items = _object(resp).get(name)
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ProtocolError(f"answer lacks a list of objects {name!r}")
        return items

    return decode


def apply_group(spec: dict[str, Any]) -> Call[dict[str, Any]]:
    """Store a group spec (validated by the server) → ``{"group",
    "revision", "spec_hash"}``. Without an ``id`` the server names the field."""
    if not isinstance(spec, dict):
        raise TypeError("a group spec is a dict")
    group = spec.get("id")
    if isinstance(group, str) and group:
        return Call(Request("PUT", _item_path("groups", group), body=_body(spec)), _object, False)
    return Call(Request("POST", "/v1/groups", body=_body(spec)), _object, False)


def list_groups() -> Call[list[dict[str, Any]]]:
    return Call(Request("GET", "/v1/groups"), _items("groups"), True)


def get_group(group_id: str) -> Call[dict[str, Any]]:
    """``{"spec", "revision", "spec_hash", "slots", "status"}``."""
    return Call(Request("GET", _item_path("groups", group_id)), _object, True)


def delete_group(group_id: str) -> Call[dict[str, Any]]:
    return Call(Request("DELETE", _item_path("groups", group_id)), _object, False)


def list_instances(group: str | None = None) -> Call[list[dict[str, Any]]]:
    query = (("group", group),) if group else ()
    return Call(Request("GET", "/v1/instances", query), _object_list, True)


def leader_hint(error: QuorateClientError) -> object:
    """Where a refusing node says the leader is (URL first, then node id)."""
    for name in ("leader_api", "leader_api_addr", "leader"):
        if error.details.get(name):
            return error.details[name]
    return None
