"""Python clients for the quorate HTTP API.

    from quorate.client import Client
    with Client("http://127.0.0.1:7101", token=None) as c:
        rev = c.put("config/a", "1")
        kv = c.get("config/a")

:class:`Client` blocks (standard library only); :class:`AsyncClient` uses
aiohttp. Both try other nodes when one is down or has no leader, never
re-send a write whose outcome is unknown (:class:`WriteTimeout`), and raise
the typed errors below.
"""

from .aio import AsyncClient
from .endpoints import normalize_endpoint, parse_endpoints
from .errors import (
    BadRequestError,
    CompactedError,
    ConflictError,
    NoLeaderError,
    NotCommittedError,
    NotFoundError,
    ProtocolError,
    QuorateClientError,
    RecoveryModeError,
    RequestTimeoutError,
    RevisionMismatchError,
    ShuttingDownError,
    StartingError,
    UnauthorizedError,
    UnavailableError,
    WriteTimeout,
)
from .models import (
    Health,
    KeyValue,
    ListResult,
    Member,
    RecoveryOffer,
    RecoveryStatus,
    Status,
    WatchBatch,
    WatchEvent,
)
from .sync import Client

__all__ = [
    "AsyncClient",
    "BadRequestError",
    "Client",
    "CompactedError",
    "ConflictError",
    "Health",
    "KeyValue",
    "ListResult",
    "Member",
    "NoLeaderError",
    "NotCommittedError",
    "NotFoundError",
    "ProtocolError",
    "QuorateClientError",
    "RecoveryModeError",
    "RecoveryOffer",
    "RecoveryStatus",
    "RequestTimeoutError",
    "RevisionMismatchError",
    "ShuttingDownError",
    "StartingError",
    "Status",
    "UnauthorizedError",
    "UnavailableError",
    "WatchBatch",
    "WatchEvent",
    "WriteTimeout",
    "normalize_endpoint",
    "parse_endpoints",
]
