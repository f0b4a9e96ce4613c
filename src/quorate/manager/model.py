"""The manager's vocabulary: where groups and slot records live in the
replicated KV, what the reconciler observes, and the actions it plans.

A *slot* is one place a group wants filled: an index ("0", "1", ...) for
interchangeable instances, a logical id ("n2") for named ones. The slot
record under ``_quorate/slots/<group>/<slot>`` names the instance meant to
fill it. It is written (with a compare-and-swap on its revision) *before*
the provider is asked to create anything, so a leader that dies mid-way
leaves an intent its successor finds and completes with the same instance
id, never a second instance (the provider's create is idempotent on the id).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from quorate.providers.base import Instance, InstanceState

GROUPS_PREFIX = "_quorate/groups/"
SLOTS_PREFIX = "_quorate/slots/"


def group_key(group: str) -> str:
    return GROUPS_PREFIX + group


def slot_key(group: str, slot: str) -> str:
    return f"{SLOTS_PREFIX}{group}/{slot}"


def slots_prefix(group: str) -> str:
    return f"{SLOTS_PREFIX}{group}/"


@dataclass(frozen=True, slots=True)
class SlotRecord:
    """The instance meant to fill one slot (the intent, recorded first)."""

    group: str
    slot: str
    instance_id: str
    incarnation: int
    member_id: str | None      # managers only: the node id the instance runs as
    term: int                  # the leader term that wrote it
    revision: int = 0          # the KV mod revision it was read at (0: not stored yet)

    def encode(self) -> str:
        return json.dumps({"group": self.group, "slot": self.slot, "instance_id": self.instance_id,
                           "incarnation": self.incarnation, "member_id": self.member_id, "term": self.term},
                          sort_keys=True)

    @classmethod
    def decode(cls, text: str, revision: int) -> SlotRecord:
        raw = json.loads(text)
        return cls(str(raw["group"]), str(raw["slot"]), str(raw["instance_id"]), int(raw["incarnation"]),
                   raw.get("member_id"), int(raw["term"]), revision)


@dataclass(frozen=True, slots=True)
class Observed:
    """One instance as the reconciler sees it in a cycle."""

    instance: Instance
    unhealthy: bool = False        # its health check failed failure_threshold times in a row
    state_intact: bool = False     # the provider can restart it in place with its own state


@dataclass(frozen=True, slots=True)
class GroupObservation:
    """Everything :func:`quorate.manager.plan.plan` needs for one group.

    ``spec`` is None for a group that was deleted (its instances go).
    ``members`` are the Raft voters and learners (the managers group only:
    a member that dies is removed before its replacement joins)."""

    group: str
    spec: Any                      # GroupSpec | None
    records: dict[str, SlotRecord] = field(default_factory=dict)   # slot -> record
    instances: list[Observed] = field(default_factory=list)        # what the provider lists for the group
    members: frozenset[str] = frozenset()


# -- actions -------------------------------------------------------------------------
# Each carries the reason it was planned, in words, for logs and `group show`.


@dataclass(frozen=True, slots=True)
class Adopt:
    """An instance runs that no record names, in a free wanted slot: record it."""
    group: str
    slot: str
    instance_id: str
    incarnation: int
    member_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Create:
    """Fill ``slot`` with incarnation ``incarnation``: write the record if it
    does not say so yet, then create (idempotent on the instance id)."""
    group: str
    slot: str
    incarnation: int
    reason: str


@dataclass(frozen=True, slots=True)
class Restart:
    """Start a terminated instance again in place, with its own durable state
    (same instance id, same member identity, no membership change)."""
    group: str
    slot: str
    instance_id: str
    incarnation: int
    reason: str


@dataclass(frozen=True, slots=True)
class Replace:
    """Swap the instance in ``slot`` for a new incarnation: record the new
    one, destroy the old, remove the old member from the Raft configuration
    (managers), then create the new one (which joins as a learner)."""
    group: str
    slot: str
    old_instance_id: str
    old_member_id: str | None
    incarnation: int
    reason: str


@dataclass(frozen=True, slots=True)
class Retire:
    """A slot no longer wanted: remove the member (managers), destroy the
    instance, delete the record."""
    group: str
    slot: str
    instance_id: str | None
    member_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Destroy:
    """An instance no record names and no wanted slot can take (an orphan,
    a duplicate, a leftover of a deleted group)."""
    group: str
    instance_id: str
    reason: str


Action = Adopt | Create | Restart | Replace | Retire | Destroy


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]
    notes: tuple[str, ...] = ()    # what was seen and deliberately left alone, and why

    @property
    def empty(self) -> bool:
        return not self.actions


def action_json(action: Action) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": type(action).__name__.lower()}
    for name in action.__slots__:  # type: ignore[union-attr]
        out[name] = getattr(action, name)
    return out


def is_available(obs: Observed) -> bool:
    return obs.instance.state in (InstanceState.RUNNING, InstanceState.STARTING) and not obs.unhealthy
