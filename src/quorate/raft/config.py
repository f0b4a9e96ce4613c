"""Settings of the consensus core, in ticks (the runtime maps ticks to time)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RaftConfig:
    # A follower campaigns after a random timeout in [election_ticks,
    # 2 * election_ticks); the leader heartbeats every heartbeat_ticks.
    election_ticks: int = 10
    # Inclusive upper bound of the randomized timeout; None = 2*election_ticks-1.
    election_ticks_max: int | None = None
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    # Pipelining bound: appends in flight to one follower.
    max_inflight: int = 64
    # Batching bound: entries in one append message.
    max_entries_per_append: int = 512
    # InstallSnapshot chunk size in bytes.
    snapshot_chunk_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        if self.heartbeat_ticks < 1:
            raise ValueError("heartbeat_ticks must be at least 1")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ValueError("election_ticks must be greater than heartbeat_ticks")
        if self.election_ticks_max is not None and self.election_ticks_max < self.election_ticks:
            raise ValueError("election_ticks_max must be at least election_ticks")
        if self.max_inflight < 1 or self.max_entries_per_append < 1:
            raise ValueError("max_inflight and max_entries_per_append must be positive")
        if self.snapshot_chunk_bytes < 1:
            raise ValueError("snapshot_chunk_bytes must be positive")

    @property
    def election_range(self) -> tuple[int, int]:
        """Inclusive bounds of the randomized election timeout, in ticks."""
        hi = self.election_ticks_max
        return self.election_ticks, (2 * self.election_ticks - 1 if hi is None else hi)
