"""Peer transport: Raft messages between manager nodes over asyncio TCP.

Length-prefixed msgpack frames (``framing``, ``codec``), a handshake that
checks cluster id and token on every connection (``handshake``), reconnect
with jittered backoff, optional mutual TLS (``tls``). The wire format is
described in docs/transport.md.
"""

from __future__ import annotations

from .codec import decode_message, encode_message
from .errors import (
    ConnectionClosed,
    FrameError,
    HandshakeRefused,
    LocalProtocolError,
    OversizeFrame,
    RemoteProtocolError,
    TransportError,
)
from .framing import DEFAULT_MAX_FRAME, FrameDecoder, encode_frame, read_frame
from .handshake import PROTOCOL_VERSION, RefusalReason
from .stats import TransportStats
from .tcp import PeerTransport
from .tls import make_ssl_contexts

__all__ = [
    "DEFAULT_MAX_FRAME",
    "PROTOCOL_VERSION",
    "ConnectionClosed",
    "FrameDecoder",
    "FrameError",
    "HandshakeRefused",
    "LocalProtocolError",
    "OversizeFrame",
    "PeerTransport",
    "RefusalReason",
    "RemoteProtocolError",
    "TransportError",
    "TransportStats",
    "decode_message",
    "encode_frame",
    "encode_message",
    "make_ssl_contexts",
    "read_frame",
]
