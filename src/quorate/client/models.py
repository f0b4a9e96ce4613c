"""What the API answers, as frozen dataclasses.

Decoding checks the fields the client relies on and raises
:class:`ProtocolError` otherwise, so a wrong answer fails at the boundary
instead of deep in a caller. Each object keeps the server's JSON in ``raw``
(not compared, not shown) so ``--json`` output passes through fields this
client does not know yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import ProtocolError

T = TypeVar("T")


def _get(data: Mapping[str, Any], name: str, kind: type[T] | tuple[type, ...], default: Any = ...) -> Any:
    value = data.get(name, default)
    if value is ...:
        raise ProtocolError(f"answer lacks field {name!r}")
    if value is default and default is not ...:
        return value
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(f"field {name!r} has unexpected value {value!r}")
    return value


def _mapping(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ProtocolError(f"expected a JSON object for {what}, got {type(data).__name__}")
    return data


def _list(data: Any, what: str) -> list[Any]:
    if not isinstance(data, list):
        raise ProtocolError(f"expected a JSON list for {what}, got {type(data).__name__}")
    return data


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: str
    create_revision: int
    mod_revision: int
    version: int = 0
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> KeyValue:
        d = _mapping(data, "a key")
        return cls(key=_get(d, "key", str), value=_get(d, "value", str),
                   create_revision=_get(d, "create_revision", int), mod_revision=_get(d, "mod_revision", int),
                   version=_get(d, "version", int, 0), raw=d)


@dataclass(frozen=True, slots=True)
class ListResult:
    """Keys under a prefix, read at store ``revision``: watching from
    ``revision + 1`` misses nothing and repeats nothing."""

    revision: int
    kvs: tuple[KeyValue, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> ListResult:
        d = _mapping(data, "a key listing")
        kvs = tuple(KeyValue.from_json(kv) for kv in _list(d.get("kvs"), "kvs"))
        return cls(revision=_get(d, "revision", int), kvs=kvs, raw=d)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # "put" | "delete"
    key: str
    revision: int
    value: str | None = None
    create_revision: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> WatchEvent:
        d = _mapping(data, "a watch event")
        kind = _get(d, "type", str)
        if kind not in ("put", "delete"):
            raise ProtocolError(f"unknown watch event type {kind!r}")
        return cls(type=kind, key=_get(d, "key", str), revision=_get(d, "revision", int),
                   value=_get(d, "value", (str, type(None)), None),
                   create_revision=_get(d, "create_revision", (int, type(None)), None), raw=d)


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """One long poll: the events found and where the next poll starts."""

    events: tuple[WatchEvent, ...]
    next_revision: int
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> WatchBatch:
        d = _mapping(data, "a watch answer")
        events = tuple(WatchEvent.from_json(e) for e in _list(d.get("events"), "events"))
        return cls(events=events, next_revision=_get(d, "next_revision", int), raw=d)


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    peer_addr: str
    api_addr: str
    role: str  # voter | learner
    health: str = "alive"  # alive | suspect | failed | departed
    last_contact_ms: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Member:
        d = _mapping(data, "a member")
        contact = _get(d, "last_contact_ms", (int, float, type(None)), None)
        return cls(id=_get(d, "id", str), peer_addr=_get(d, "peer_addr", (str, type(None)), "") or "",
                   api_addr=_get(d, "api_addr", (str, type(None)), "") or "",
                   role=_get(d, "role", str), health=_get(d, "health", str, "alive"),
                   last_contact_ms=None if contact is None else int(contact), raw=d)


def members_from_json(data: Any) -> tuple[Member, ...]:
    """``GET /v1/members`` answers a list; ``POST /v1/members`` wraps it."""
    if isinstance(data, Mapping) and "members" in data:
        data = data["members"]
    return tuple(Member.from_json(m) for m in _list(data, "members"))


@dataclass(frozen=True, slots=True)
class Status:
    id: str
    role: str  # leader | follower | candidate | learner | recovery
    term: int
    leader: str | None
    commit_index: int
    applied_index: int
    voters: tuple[str, ...]
    learners: tuple[str, ...]
    quorum: bool
    problems: tuple[str, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Status:
        d = _mapping(data, "a status")
        return cls(id=_get(d, "id", str), role=_get(d, "role", str), term=_get(d, "term", int),
                   leader=_get(d, "leader", (str, type(None)), None),
                   commit_index=_get(d, "commit_index", int), applied_index=_get(d, "applied_index", int),
                   voters=tuple(str(v) for v in _get(d, "voters", list, [])),
                   learners=tuple(str(v) for v in _get(d, "learners", list, [])),
                   quorum=_get(d, "quorum", bool, False),
                   problems=tuple(str(p) for p in _get(d, "problems", list, [])), raw=d)


@dataclass(frozen=True, slots=True)
class Health:
    """``GET /v1/health``; a 503 answer is a normal "unhealthy" result."""

    healthy: bool
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Health:
        d = _mapping(data, "health")
        return cls(healthy=_get(d, "healthy", bool), raw=d)


@dataclass(frozen=True, slots=True)
class RecoveryOffer:
    """A node's offer in recovery mode: its newest local backup (``counter``
    None: the node has no backup, it only says it is there)."""

    node: str
    counter: int | None
    wall_time: float | None = None

    @classmethod
    def from_json(cls, data: Any) -> RecoveryOffer:
        d = _mapping(data, "an offer")
        wall = _get(d, "wall_time", (int, float, type(None)), None)
        return cls(node=_get(d, "node", str), counter=_get(d, "counter", (int, type(None)), None),
                   wall_time=None if wall is None else float(wall))


@dataclass(frozen=True, slots=True)
class RecoveryStatus:
    """``GET /v1/recovery``: ``state`` is waiting | proceeding | complete
    (or none: no recovery at all); ``suggested`` the node whose backup has
    the highest counter, while waiting."""

    active: bool
    state: str
    offers: tuple[RecoveryOffer, ...]
    suggested: str | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> RecoveryStatus:
        d = _mapping(data, "a recovery status")
        offers = tuple(RecoveryOffer.from_json(o) for o in _list(d.get("offers", []), "offers"))
        return cls(active=_get(d, "active", bool), state=_get(d, "state", str), offers=offers,
                   suggested=_get(d, "suggested", (str, type(None)), None), raw=d)
