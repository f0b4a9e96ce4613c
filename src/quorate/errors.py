"""Errors the node runtime reports to API callers. Each maps to one HTTP
status and one JSON error code of the public contract, and says in words
whether the request may have taken effect."""

from __future__ import annotations


class QuorateError(Exception):
    code = "internal"
    status = 500

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message, **self.details}


class NoLeader(QuorateError):
    """Nothing was proposed: no leader is known (the write did not happen)."""

    code = "no_leader"
    status = 503


class RequestTimeout(QuorateError):
    """Proposed but not seen committed in time: the write may have happened."""

    code = "timeout"
    status = 503


class NotCommitted(QuorateError):
    """The proposal was overwritten by a new leader: it did not happen."""

    code = "not_committed"
    status = 503


class RecoveryMode(QuorateError):
    """The node is in recovery mode (S5): nothing was applied."""

    code = "recovery_mode"
    status = 503


class Starting(QuorateError):
    """The node has not decided yet how to start (it is learning the
    store's backup counter, S5): nothing was applied; retry."""

    code = "starting"
    status = 503


class BadRequest(QuorateError):
    code = "bad_request"
    status = 400


class KeyNotFound(QuorateError):
    code = "not_found"
    status = 404


class RevisionConflict(QuorateError):
    code = "revision_mismatch"
    status = 409


class CompactedRevision(QuorateError):
    code = "compacted"
    status = 410


class Conflict(QuorateError):
    """The request contradicts the cluster's state (e.g. a member exists)."""

    code = "conflict"
    status = 409


class ShuttingDown(QuorateError):
    code = "shutting_down"
    status = 503


class NoManager(QuorateError):
    """The node runs no manager (or its provider failed): it cannot say
    which instances exist. Nothing was changed."""

    code = "no_manager"
    status = 503
