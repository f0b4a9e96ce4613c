"""Counters of the peer transport, for metrics and tests.

The transport bumps a private mutable :class:`Counters`; readers get a frozen
:class:`TransportStats` copy, so a metrics scrape never sees a half update and
cannot change the live numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType

__all__ = ["Counters", "TransportStats"]


@dataclass(frozen=True, slots=True)
class TransportStats:
    sent: int = 0  # messages written to a connection
    bytes_sent: int = 0  # frame bytes written, headers included
    received: int = 0  # messages handed to on_message
    bytes_received: int = 0  # frame bytes read on established connections
    dropped_queue_full: int = 0  # send() found the peer's queue full
    dropped_no_peer: int = 0  # send() to a node that is not a known peer
    dropped_unreachable: int = 0  # queued for a peer we could not connect to
    dropped_too_large: int = 0  # a message over the frame limit (a local bug)
    dropped_misaddressed: int = 0  # received for another node, or from another sender
    connections: int = 0  # outgoing connections that completed the handshake
    reconnects: int = 0  # outgoing attempts after a failure or a lost connection
    refused: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Incoming connections refused, by :class:`RefusalReason` value."""
    refused_by_peer: int = 0  # our hello was refused by the other side
    bad_frames: int = 0  # established incoming connections closed for a bad frame


@dataclass(slots=True)
class Counters:
    """The live, mutable counters (private to the transport)."""

    sent: int = 0
    bytes_sent: int = 0
    received: int = 0
    bytes_received: int = 0
    dropped_queue_full: int = 0
    dropped_no_peer: int = 0
    dropped_unreachable: int = 0
    dropped_too_large: int = 0
    dropped_misaddressed: int = 0
    connections: int = 0
    reconnects: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    refused_by_peer: int = 0
    bad_frames: int = 0

    def snapshot(self) -> TransportStats:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["refused"] = MappingProxyType(dict(self.refused))
        return TransportStats(**values)
