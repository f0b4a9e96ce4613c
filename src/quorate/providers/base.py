"""The provider interface: how the manager creates, destroys and observes
instances, whatever they run on.

The one fact the rest of quorate leans on is the difference between an
instance that is *confirmed* dead (``TERMINATED``: the provider can prove it,
for a local process because its pid is gone or now belongs to another
process) and one that is merely silent (``UNKNOWN``). Only the first may ever
justify replacing a manager's vote (quorum-loss recovery, S2/S3).

Every mutating call carries a fencing token, the Raft term of the leader that
decided it. A provider remembers the highest token it has seen and refuses a
lower one, so a deposed leader that wakes up late cannot create or destroy
anything behind its successor's back.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from enum import Enum


class InstanceState(str, Enum):
    STARTING = "starting"      # created, not yet seen running
    RUNNING = "running"
    TERMINATED = "terminated"  # confirmed dead: it will never run again
    UNKNOWN = "unknown"        # cannot tell (unreachable host, unreadable record)


class ProviderError(Exception):
    """A provider call failed; the message says what and why."""


class StaleFencingToken(ProviderError):
    """The call carried a term lower than one the provider already saw:
    it comes from a leader that has been replaced."""

    def __init__(self, given: int, highest: int) -> None:
        super().__init__(f"fencing token {given} is stale: the provider has already acted for term {highest}")
        self.given = given
        self.highest = highest


class UnknownProvider(ProviderError):
    """No provider is registered under that name."""


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """Everything needed to start one instance, fully rendered (no
    placeholders left)."""

    instance_id: str
    group: str
    logical_id: str | None
    slot: str                      # the logical id, or the index of an interchangeable instance
    argv: tuple[str, ...]          # command and arguments
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    spec_hash: str = ""
    state_path: str | None = None  # durable state the instance keeps (a manager's data dir)


@dataclass(frozen=True, slots=True)
class Instance:
    """What a provider knows about one instance."""

    id: str
    group: str
    logical_id: str | None
    slot: str
    state: InstanceState
    spec_hash: str
    fencing_term: int
    created_at: float              # wall time, seconds since the epoch
    pid: int | None = None         # process provider only
    state_path: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "group": self.group, "logical_id": self.logical_id, "slot": self.slot,
                "state": self.state.value, "pid": self.pid, "spec_hash": self.spec_hash,
                "fencing_term": self.fencing_term, "created_at": self.created_at}


class Provider(abc.ABC):
    """Creates and observes instances. Implementations must be safe to call
    from several managers at once (they may share the provider's state), and
    every call must return or raise within a bounded time."""

    name: str = ""

    @abc.abstractmethod
    async def create(self, spec: LaunchSpec, fencing_term: int) -> Instance:
        """Start ``spec``. Idempotent on ``spec.instance_id``: when that
        instance already runs, return it unchanged. A previously terminated
        instance with that id is started again (a restart in place, with the
        same ``state_path``). Raises StaleFencingToken or ProviderError."""

    @abc.abstractmethod
    async def destroy(self, instance_id: str, fencing_term: int) -> None:
        """Stop the instance for good and forget it. Idempotent: an unknown id
        is not an error."""

    @abc.abstractmethod
    async def list(self, group: str | None = None) -> list[Instance]:
        """Every instance the provider knows (of ``group``), with its state."""

    @abc.abstractmethod
    async def describe(self, instance_id: str) -> InstanceState:
        """The state of one instance; TERMINATED for an id the provider has
        no record of only when it can be sure it never ran or is gone."""

    def state_intact(self, instance: Instance) -> bool:
        """Whether the instance's durable state is still there, so it can be
        restarted in place rather than replaced. Providers that cannot tell
        answer False."""
        return False

    async def close(self) -> None:
        """Release what the provider holds (not the instances: they outlive it)."""
