"""The simulator's clock: a heap of timed actions on a virtual timeline.

Time is an integer number of simulated milliseconds. Actions scheduled for the
same millisecond run in the order they were scheduled (a sequence number
breaks ties), so a run depends on nothing but the seed: no wall clock, no
hash order, no thread timing.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

Action = Callable[..., None]


class EventLoop:
    """Runs scheduled actions in (time, sequence) order."""

    __slots__ = ("_now", "_seq", "_heap", "processed")

    def __init__(self) -> None:
        self._now = 0
        self._seq = 0
        self._heap: list[tuple[int, int, Action, tuple[Any, ...]]] = []
        self.processed = 0

    @property
    def now(self) -> int:
        """Current simulated time in milliseconds."""
        return self._now

    def __len__(self) -> int:
        return len(self._heap)

    def call_at(self, when: int, action: Action, *args: Any) -> None:
        """Run ``action(*args)`` at simulated time ``when`` (never in the past)."""
        if when < self._now:
            raise ValueError(f"cannot schedule at {when}: it is already {self._now}")
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, action, args))

    def call_later(self, delay: int, action: Action, *args: Any) -> None:
        self.call_at(self._now + delay, action, *args)

    def next_time(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def run_one(self) -> bool:
        """Run the earliest action; False when nothing is scheduled."""
        if not self._heap:
            return False
        when, _, action, args = heapq.heappop(self._heap)
        self._now = when
        self.processed += 1
        action(*args)
        return True

    def run_until(self, deadline: int, after_each: Callable[[], None] | None = None) -> None:
        """Run every action due at or before ``deadline``; the clock ends there."""
        while self._heap and self._heap[0][0] <= deadline:
            self.run_one()
            if after_each is not None:
                after_each()
        self._now = max(self._now, deadline)
