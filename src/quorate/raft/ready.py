"""The one output of the core: what to persist, send, install and apply.

Ordering contract (the caller must follow it, in this order):

1. Persist ``snapshot`` (if any), then append ``entries`` (an entry at an
   index already stored replaces it and everything after it), then write
   ``hard_state`` (if any), and make all of it durable (fsync).
2. Send ``messages``. They may depend on step 1 (a vote, an append
   acknowledgement), so never send them before the write is durable.
   The one exception is ``early_messages()``: appends, heartbeats and
   snapshot chunks, which only a leader sends, may go out *before* step 1,
   in parallel with the leader's own write (thesis §10.2.1). That is safe
   because the leader counts its own entries towards commitment only once
   ``advance`` says they are durable, and its term and vote became durable
   before it could win the election.
3. Install ``snapshot`` into the state machine (if any), then apply
   ``committed_entries`` in order. Serve each ``read_states`` item once the
   applied index reaches its ``index``.
4. Call ``advance(ready)`` on the node that produced it.

Nothing else leaves the core. A Ready with nothing in it is never produced.
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import Entry, HardState, Message, MessageType, ReadState, Snapshot, SoftState

_EARLY = frozenset({MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT})


@dataclass(frozen=True, slots=True)
class Ready:
    soft_state: SoftState | None
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    messages: tuple[Message, ...]
    committed_entries: tuple[Entry, ...]
    read_states: tuple[ReadState, ...]

    def must_sync(self) -> bool:
        """True when step 1 has something to make durable."""
        return bool(self.entries) or self.hard_state is not None or self.snapshot is not None

    def early_messages(self) -> tuple[Message, ...]:
        """Leader-to-follower messages that may be sent before persisting."""
        return tuple(m for m in self.messages if m.type in _EARLY)

    def late_messages(self) -> tuple[Message, ...]:
        """Messages that must wait until step 1 is durable."""
        return tuple(m for m in self.messages if m.type not in _EARLY)
