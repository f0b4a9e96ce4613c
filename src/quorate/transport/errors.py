"""Errors of the peer transport, by direction.

A *local* error means this process asked for something the protocol forbids
(a frame over the limit, a message that cannot be encoded): a bug or a
misconfiguration here. A *remote* error means the peer broke the protocol or
refused us: the transport logs it, closes that one connection and carries on.
Receive paths convert foreign failures (msgpack, ssl, OSError) into these with
``raise ... from`` so callers catch one family.
"""

from __future__ import annotations


class TransportError(Exception):
    """Base class of every error the transport raises."""


class LocalProtocolError(TransportError):
    """We tried to send something the wire protocol cannot carry."""


class RemoteProtocolError(TransportError):
    """The peer sent something the wire protocol does not allow."""


class FrameError(RemoteProtocolError):
    """A frame or its payload is malformed (not msgpack, wrong shape or types)."""


class OversizeFrame(FrameError):
    """A length prefix claims more than the limit; refused before any payload
    is read, so a hostile prefix cannot make us allocate the claimed size."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")


class ConnectionClosed(RemoteProtocolError):
    """The peer closed the connection (cleanly or in the middle of a frame)."""


class HandshakeRefused(TransportError):
    """The peer answered our hello with a refusal (remote decision)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"peer refused the handshake: {reason}: {message}")
