"""The one output of the core: what to persist, send, install and apply.

Ordering contract (the caller must follow it, in this order):

1. Persist ``snapshot`` (if any), then append ``entries`` (an entry at an
   index already stored replaces it and everything after it), then write
   ``hard_state`` (if any), and make all of it durable (fsync).
2. Send ``messages``. They may depend on step 1 (a vote, an append
   acknowledgement), so never send them before the write is durable.
3. Install ``snapshot`` into the state machine (if any), then apply
   ``committed_entries`` in order. Serve each ``read_states`` item once the
   applied index reaches its ``index``.
4. Call ``advance(ready)`` on the node that produced it.

Nothing else leaves the core. A Ready with nothing in it is never produced.
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import Entry, HardState, Message, ReadState, Snapshot, SoftState


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
