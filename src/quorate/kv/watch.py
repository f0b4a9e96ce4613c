"""Recent change history, for watches that start from a past revision.

The history is a bounded window of the latest events, in revision order. A
watch asking for a revision older than the window gets ``Compacted`` (with
the oldest revision it may ask for) instead of a silent gap.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from .commands import KVError


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    key: str
    revision: int
    value: str | None = None          # None for deletes
    create_revision: int = 0

    def to_json(self) -> dict[str, object]:
        return {"type": self.type.value, "key": self.key, "revision": self.revision,
                "value": self.value, "create_revision": self.create_revision}


class Compacted(KVError):
    """The requested revision is no longer in the history."""

    def __init__(self, requested: int, oldest: int) -> None:
        self.requested = requested
        self.oldest = oldest
        super().__init__(
            f"revision {requested} is compacted: history starts at revision {oldest}; "
            "re-read the current state and watch from its revision + 1")


class EventHistory:
    """The last ``capacity`` events; ``first_revision`` is the oldest
    revision a watch may start from."""

    __slots__ = ("_events", "_first_revision")

    def __init__(self, capacity: int = 10_000, first_revision: int = 1) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._events: deque[WatchEvent] = deque(maxlen=capacity)
        # Everything before this revision is unknown (compacted or before a restore).
        self._first_revision = first_revision

    @property
    def first_revision(self) -> int:
        if self._events and len(self._events) == self._events.maxlen:
            return self._events[0].revision
        return self._first_revision

    def reset(self, revision: int) -> None:
        """Forget everything: the state jumped to ``revision`` (a snapshot)."""
        self._events.clear()
        self._first_revision = revision + 1

    def append(self, event: WatchEvent) -> None:
        if self._events and event.revision <= self._events[-1].revision:
            raise ValueError(f"event revision {event.revision} out of order")
        self._events.append(event)

    def since(self, revision: int, prefix: str = "") -> list[WatchEvent]:
        """Events with ``revision >= revision`` whose key has ``prefix``."""
        oldest = self.first_revision
        if revision < oldest:
            raise Compacted(revision, oldest)
        return [e for e in self._events if e.revision >= revision and e.key.startswith(prefix)]
