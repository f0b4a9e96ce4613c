"""Typed errors of the quorate client.

Every error a caller can act on has its own class, and each says in its
docstring whether the request may have taken effect, because that decides
whether retrying is safe. Errors the server reports carry its JSON body in
``details``; errors raised on the client side (no endpoint reachable, a
connection lost mid-write, a malformed answer) carry what happened locally.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class QuorateClientError(Exception):
    """Base of every client error. ``code`` is the server's JSON error code
    (or a client-side one), ``status`` the HTTP status (0 when none)."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None, status: int = 0,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.status = status
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {**self.details, "error": self.code, "message": self.message}


class NoLeaderError(QuorateClientError):
    """No leader is known: the request was not proposed (safe to retry)."""

    code = "no_leader"


class ShuttingDownError(QuorateClientError):
    """The node is stopping: the request was not proposed (safe to retry)."""

    code = "shutting_down"


class NotCommittedError(QuorateClientError):
    """The proposal was overwritten by a new leader: it did not happen."""

    code = "not_committed"


class RequestTimeoutError(QuorateClientError):
    """The server did not see the request committed in time."""

    code = "timeout"


class WriteTimeout(RequestTimeoutError):
    """A write's outcome is unknown: it was proposed (or the connection was
    lost after sending it) and may still take effect. Never retried blindly;
    read the key back to learn what happened."""


class RevisionMismatchError(QuorateClientError):
    """``prev_revision`` did not hold; nothing changed. ``current_revision``
    is the key's mod revision (0 when absent), ready for the next CAS."""

    code = "revision_mismatch"

    @property
    def current_revision(self) -> int:
        return int(self.details.get("current_revision", 0))


class NotFoundError(QuorateClientError):
    """The key or member does not exist."""

    code = "not_found"


class CompactedError(QuorateClientError):
    """A watch asked for history that was compacted away; restart from a
    list (or from ``oldest_revision``)."""

    code = "compacted"

    @property
    def oldest_revision(self) -> int:
        return int(self.details.get("oldest_revision", 0))


class ConflictError(QuorateClientError):
    """The cluster refused a membership or leadership change; nothing changed."""

    code = "conflict"


class RecoveryModeError(QuorateClientError):
    """The cluster is in recovery mode; the message says what to do."""

    code = "recovery_mode"


class StartingError(QuorateClientError):
    """The node is still starting (learning the store's backup counter):
    the request was not applied (safe to retry)."""

    code = "starting"


class BadRequestError(QuorateClientError):
    """The server rejected the request as malformed; nothing changed."""

    code = "bad_request"


class UnauthorizedError(QuorateClientError):
    """The API token is missing or wrong."""

    code = "unauthorized"


class UnavailableError(QuorateClientError):
    """No endpoint answered; the request was not sent to any server (or,
    for reads, got no answer). ``details["attempts"]`` lists what failed."""

    code = "unavailable"


class ProtocolError(QuorateClientError):
    """The server's answer is not what the API promises."""

    code = "protocol_error"


_BY_CODE: dict[str, type[QuorateClientError]] = {
    cls.code: cls
    for cls in (NoLeaderError, ShuttingDownError, NotCommittedError, RequestTimeoutError,
                RevisionMismatchError, NotFoundError, CompactedError, ConflictError,
                RecoveryModeError, StartingError, BadRequestError, UnauthorizedError)
}

#: Errors that mean "nothing happened, another node (or a moment) may do better".
RETRYABLE: tuple[type[QuorateClientError], ...] = (NoLeaderError, ShuttingDownError, NotCommittedError,
                                                   StartingError)


def error_from_response(status: int, body: bytes) -> QuorateClientError:
    """The typed error for an HTTP error answer (JSON body or not)."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("error"), str):
        text = body.decode("utf-8", "replace").strip()[:200] or f"HTTP {status}"
        cls = UnauthorizedError if status == 401 else QuorateClientError
        code = None if status == 401 else f"http_{status}"
        return cls(text, code=code, status=status)
    code = data["error"]
    message = str(data.get("message") or code)
    cls = _BY_CODE.get(code, QuorateClientError)
    if cls is QuorateClientError and status == 401:
        cls = UnauthorizedError
    return cls(message, code=code, status=status, details=data)
