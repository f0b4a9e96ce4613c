"""What a leader knows of one follower's log, and how it sends to it.

A follower is in one of three states (as in etcd-io/raft):

- PROBE: the leader does not know where the logs diverge; it sends one
  append at a time and waits for the answer (or a heartbeat response).
- REPLICATE: logs match up to ``match``; the leader streams appends
  optimistically, up to ``max_inflight`` unacknowledged ones (pipelining).
- SNAPSHOT: the entries it needs are compacted; the leader streams the
  snapshot in chunks and sends nothing else until the follower has it.

Invariant: ``match < next``; entries up to ``match`` are known to be
identical on the follower and the leader.
"""

from __future__ import annotations

import enum
from collections import deque

from .types import Snapshot


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """Last indices of appends in flight to one follower, oldest first."""

    __slots__ = ("capacity", "_items")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def full(self) -> bool:
        return len(self._items) >= self.capacity

    def add(self, last_index: int) -> None:
        self._items.append(last_index)

    def free_le(self, index: int) -> None:
        """An ack up to ``index`` frees every append ending at or before it."""
        while self._items and self._items[0] <= index:
            self._items.popleft()

    def free_first(self) -> None:
        if self._items:
            self._items.popleft()

    def reset(self) -> None:
        self._items.clear()


class Progress:
    __slots__ = (
        "match", "next", "state", "probe_sent", "inflights", "recent_active",
        "snapshot", "snapshot_offset", "snapshot_progressed",
    )

    def __init__(self, next_index: int, max_inflight: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.inflights = Inflights(max_inflight)
        # Set by any response; cleared by the leader's check-quorum pass.
        self.recent_active = False
        # The snapshot being streamed in SNAPSHOT state, and the next byte wanted.
        self.snapshot: Snapshot | None = None
        self.snapshot_offset = 0
        # Set when a chunk is acknowledged; a heartbeat round without one
        # means the stream stalled (a chunk was lost) and the leader resends.
        self.snapshot_progressed = False

    def _reset_state(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.inflights.reset()
        self.snapshot = None
        self.snapshot_offset = 0
        self.snapshot_progressed = False

    def become_probe(self) -> None:
        # Coming back from a snapshot, probe right after it.
        if self.state is ProgressState.SNAPSHOT and self.snapshot is not None:
            snap_index = self.snapshot.meta.index
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, snap_index + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot: Snapshot) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.snapshot = snapshot

    def maybe_update(self, index: int) -> bool:
        """Record an acknowledgement up to ``index``; False if it was stale."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def optimistic_update(self, last_sent: int) -> None:
        self.next = last_sent + 1

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """Move ``next`` back after a rejection at ``rejected``; False if the
        rejection is stale (answers an append we no longer care about)."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def __repr__(self) -> str:
        return f"Progress(match={self.match}, next={self.next}, state={self.state.value})"
