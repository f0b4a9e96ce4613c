"""What one reconcile cycle does for one group, decided without IO.

:func:`plan` reads a :class:`GroupObservation` (the spec, the slot records,
what the provider lists, the Raft members) and returns the actions that move
the group one step toward its spec, each with its reason, plus notes on what
it saw and deliberately left alone. It is pure and deterministic (everything
is visited sorted by slot, then instance id): the same observation always
gives the same plan, so a new leader that re-plans from the same state
decides the same thing.

Order of the actions in a plan, and why:

1. ``Adopt``: it only writes a record, so a running orphan claims its free
   slot before anything else could put a second instance there.
2. ``Destroy``, ``Retire``: free what is no longer wanted (ports, capacity)
   and, for the managers, take members out before new ones join.
3. ``Replace``, ``Restart``, ``Create``: fill the wanted slots.

Safety rules kept here:

* ``UNKNOWN`` is never taken for dead: the slot waits. Only ``TERMINATED``
  (which the provider can prove) is repaired.
* A manager whose member id is in the Raft configuration is never started
  again from possibly empty state under that id: it gets a new incarnation
  (and so a new member id) instead.
* The managers change membership one member per cycle and are never rolled.
* A rollout keeps at most ``update.max_unavailable`` wanted slots unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quorate.manager.model import (
    Action, Adopt, Create, Destroy, GroupObservation, Observed, Plan, Replace, Restart, Retire, SlotRecord,
    is_available,
)
from quorate.manager.spec import MANAGERS_GROUP, GroupSpec
from quorate.manager.spec import instance_id as make_instance_id
from quorate.manager.spec import member_id as make_member_id
from quorate.providers.base import InstanceState

_LIVE = (InstanceState.RUNNING, InstanceState.STARTING)
_PHASES: tuple[type, ...] = (Adopt, Destroy, Retire, Replace, Restart, Create)


def parse_incarnation(group: str, slot: str, instance_id: str) -> int | None:
    """The incarnation in an id made by :func:`quorate.manager.spec.instance_id`
    for this group and slot, or None when the id was not made that way."""
    prefix = f"{group}-{slot}-"
    rest = instance_id[len(prefix):] if instance_id.startswith(prefix) else ""
    if not (rest.isascii() and rest.isdigit()):
        return None
    n = int(rest)
    return n if n >= 1 and make_instance_id(group, slot, n) == instance_id else None


def _slot_key(slot: str) -> tuple[int, int, str]:
    """Index slots in numeric order ("2" before "10"), then logical ids."""
    return (0, int(slot), slot) if slot.isascii() and slot.isdigit() else (1, 0, slot)


@dataclass
class _Draft:
    """Actions (kept with the slot and instance id they sort by) and notes."""

    actions: list[tuple[str, str, Action]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, slot: str, iid: str, action: Action) -> None:
        self.actions.append((slot, iid, action))

    def finish(self) -> Plan:
        ordered = sorted(self.actions, key=lambda e: (_PHASES.index(type(e[2])), _slot_key(e[0]), e[1]))
        return Plan(tuple(a for _, _, a in ordered), tuple(self.notes))


def plan(obs: GroupObservation) -> Plan:
    """The actions of one reconcile cycle for ``obs.group`` (see the module doc)."""
    draft = _Draft()
    listed = _listed(obs, draft)
    spec: GroupSpec | None = obs.spec
    if spec is None:
        _plan_deleted(obs, listed, draft)
    else:
        adopted = _plan_orphans(obs, spec, listed, draft)
        down, stale = _plan_wanted(obs, spec, listed, adopted, draft)
        _plan_rollout(obs, spec, listed, stale, down, draft)
        _plan_unwanted(obs, spec, draft)
    if obs.group == MANAGERS_GROUP:
        _one_membership_change(obs.members, draft)
    return draft.finish()


def summarize(obs: GroupObservation, result: Plan) -> str:
    """One line for logs: ``web: 3/3 available, 1 action``."""
    n = len(result.actions)
    tail = f"{n} action{'' if n == 1 else 's'}"
    if result.notes:
        tail += f", {len(result.notes)} note{'' if len(result.notes) == 1 else 's'}"
    listed = {o.instance.id: o for o in obs.instances if o.instance.group == obs.group}
    if obs.spec is None:
        return f"{obs.group}: deleted, {len(listed)} instance(s) left, {tail}"
    wanted = obs.spec.slots()
    up = sum(1 for slot in wanted if _slot_available(obs, slot, listed))
    return f"{obs.group}: {up}/{len(wanted)} available, {tail}"


# -- steps ----------------------------------------------------------------------------


def _listed(obs: GroupObservation, draft: _Draft) -> dict[str, Observed]:
    """The group's instances by id, in order; another group's are never touched."""
    out: dict[str, Observed] = {}
    for o in sorted(obs.instances, key=lambda o: (_slot_key(o.instance.slot), o.instance.id)):
        if o.instance.group != obs.group:
            draft.notes.append(f"instance {o.instance.id} belongs to group {o.instance.group}; ignored")
        else:
            out.setdefault(o.instance.id, o)
    return out


def _plan_deleted(obs: GroupObservation, listed: dict[str, Observed], draft: _Draft) -> None:
    """A deleted group: every recorded slot is retired, every other instance destroyed."""
    named = set()
    for slot in sorted(obs.records, key=_slot_key):
        rec = obs.records[slot]
        named.add(rec.instance_id)
        draft.add(slot, rec.instance_id, Retire(obs.group, slot, rec.instance_id, rec.member_id,
                                                f"group {obs.group} was deleted; retiring slot {slot} "
                                                f"(instance {rec.instance_id})"))
    for iid, o in listed.items():
        if iid not in named:
            draft.add(o.instance.slot, iid, Destroy(obs.group, iid, f"group {obs.group} was deleted; "
                                                                     f"destroying unrecorded instance {iid}"))


def _plan_orphans(obs: GroupObservation, spec: GroupSpec, listed: dict[str, Observed],
                  draft: _Draft) -> dict[str, Observed]:
    """Adopt at most one live orphan per free wanted slot (the highest available
    incarnation), destroy every other orphan. Returns slot -> adopted."""
    named = {rec.instance_id for rec in obs.records.values()}
    wanted = set(spec.slots())
    by_slot: dict[str, list[Observed]] = {}
    for iid, o in listed.items():
        if iid not in named:
            by_slot.setdefault(o.instance.slot, []).append(o)
    adopted: dict[str, Observed] = {}
    for slot in sorted(by_slot, key=_slot_key):
        orphans = by_slot[slot]
        free = slot in wanted and slot not in obs.records
        candidates = [o for o in orphans if free and o.instance.state in _LIVE
                      and parse_incarnation(obs.group, slot, o.instance.id) is not None]
        keep = max(candidates, key=lambda o: (is_available(o), _inc(obs.group, o)), default=None)
        if keep is not None:
            inc = _inc(obs.group, keep)
            member = make_member_id(slot, inc) if spec.is_logical else None
            adopted[slot] = keep
            draft.add(slot, keep.instance.id, Adopt(obs.group, slot, keep.instance.id, inc, member,
                                                    f"slot {slot}: instance {keep.instance.id} runs but no record "
                                                    f"names it; adopting incarnation {inc}"))
        for o in orphans:
            if o is not keep:
                why = _orphan_reason(obs, slot, wanted, o, keep)
                draft.add(slot, o.instance.id, Destroy(obs.group, o.instance.id, f"slot {slot}: instance "
                                                                               f"{o.instance.id} {why}; destroying"))
    return adopted


def _orphan_reason(obs: GroupObservation, slot: str, wanted: set[str], o: Observed, keep: Observed | None) -> str:
    if slot not in wanted:
        return "is not recorded and the slot is not wanted"
    if slot in obs.records:
        return f"is not recorded; the slot belongs to {obs.records[slot].instance_id}"
    if keep is not None:
        return f"is a duplicate; {keep.instance.id} is adopted"
    if parse_incarnation(obs.group, slot, o.instance.id) is None:
        return f"is not recorded and its id does not read {obs.group}-{slot}-<incarnation>"
    if o.instance.state is InstanceState.TERMINATED:
        return "is a terminated leftover no record names"
    return f"is not recorded and its state is {o.instance.state.value}"


def _plan_wanted(obs: GroupObservation, spec: GroupSpec, listed: dict[str, Observed], adopted: dict[str, Observed],
                 draft: _Draft) -> tuple[set[str], list[tuple[str, SlotRecord, Observed]]]:
    """Repair each wanted slot. Returns the slots unavailable now (or being
    repaired), and the healthy slots that run an older template."""
    down: set[str] = set()
    stale: list[tuple[str, SlotRecord, Observed]] = []
    for slot in sorted(spec.slots(), key=_slot_key):
        rec = obs.records.get(slot)
        if rec is None:
            if slot in adopted:
                if not is_available(adopted[slot]):
                    down.add(slot)
                continue
            inc = _next_incarnation(obs.group, slot, listed)
            draft.add(slot, make_instance_id(obs.group, slot, inc),
                      Create(obs.group, slot, inc, f"slot {slot}: empty; creating incarnation {inc}"))
            down.add(slot)
            continue
        o = listed.get(rec.instance_id)
        if o is not None and is_available(o):
            if o.instance.spec_hash != spec.spec_hash():
                stale.append((slot, rec, o))
            continue
        down.add(slot)
        step = _repair(obs, spec, slot, rec, o, listed)
        if isinstance(step, str):
            draft.notes.append(step)
        else:
            draft.add(slot, rec.instance_id, step)
    return down, stale


def _repair(obs: GroupObservation, spec: GroupSpec, slot: str, rec: SlotRecord, o: Observed | None,
            listed: dict[str, Observed]) -> Action | str:
    """The action for a recorded slot whose instance is not available, or a note."""
    iid = rec.instance_id
    if o is None:
        if spec.is_logical and rec.member_id is not None and rec.member_id in obs.members:
            return _replace(obs.group, slot, rec, listed,
                            f"is not listed but member {rec.member_id} is in the Raft configuration "
                            f"(starting it again with possibly empty state would be unsafe)")
        return Create(obs.group, slot, rec.incarnation, f"slot {slot}: instance {iid} is recorded but not listed; "
                                                        f"creating it (same id, create is idempotent)")
    state = o.instance.state
    if state is InstanceState.UNKNOWN:
        return f"slot {slot}: instance {iid} state unknown; waiting, not replacing"
    if state is InstanceState.TERMINATED:
        departed = (obs.group == MANAGERS_GROUP and rec.member_id is not None
                    and rec.member_id not in obs.members)
        if spec.is_logical and o.state_intact and not departed:
            return Restart(obs.group, slot, iid, rec.incarnation,
                           f"slot {slot}: instance {iid} terminated; restart in place with its own state")
        if departed:
            # It left (or was removed): its old state names a configuration
            # it is no longer in, so a new member takes the slot.
            return _replace(obs.group, slot, rec, listed, f"terminated after member {rec.member_id} departed")
        return _replace(obs.group, slot, rec, listed, "terminated")
    return _replace(obs.group, slot, rec, listed, "is unhealthy")


def _plan_rollout(obs: GroupObservation, spec: GroupSpec, listed: dict[str, Observed],
                  stale: list[tuple[str, SlotRecord, Observed]], down: set[str], draft: _Draft) -> None:
    """Replace healthy instances on an older template, lowest slots first,
    while at most ``max_unavailable`` wanted slots are unavailable."""
    if obs.group == MANAGERS_GROUP:
        for slot, rec, _ in stale:
            draft.notes.append(f"slot {slot}: instance {rec.instance_id} runs an older template; "
                               f"managers are not rolled, new incarnations use it")
        return
    limit = spec.update.max_unavailable
    budget = limit - len(down)
    for i, (slot, rec, o) in enumerate(stale):
        if i < budget:
            draft.add(slot, rec.instance_id,
                      _replace(obs.group, slot, rec, listed, f"runs template {o.instance.spec_hash or '-'}, "
                                                             f"the spec wants {spec.spec_hash()}"))
        else:
            draft.notes.append(f"slot {slot}: instance {rec.instance_id} runs an older template; "
                               f"waiting for the rollout budget (max_unavailable {limit})")


def _plan_unwanted(obs: GroupObservation, spec: GroupSpec, draft: _Draft) -> None:
    """Retire the records of slots no longer wanted (the managers: one per cycle)."""
    wanted = set(spec.slots())
    gone = [slot for slot in sorted(obs.records, key=_slot_key) if slot not in wanted]
    if obs.group == MANAGERS_GROUP and len(gone) > 1:
        for slot in gone[1:]:
            draft.notes.append(f"slot {slot}: no longer wanted; waiting for slot {gone[0]} to be retired first "
                               f"(one membership change at a time)")
        gone = gone[:1]
    for slot in gone:
        rec = obs.records[slot]
        member = f" and member {rec.member_id}" if rec.member_id else ""
        draft.add(slot, rec.instance_id, Retire(obs.group, slot, rec.instance_id, rec.member_id,
                                                f"slot {slot}: no longer wanted; retiring instance "
                                                f"{rec.instance_id}{member}"))


def _one_membership_change(members: frozenset[str], draft: _Draft) -> None:
    """Keep one membership change (a Replace of a dead member first: it
    shrinks the configuration by a member that cannot vote anyway), defer the rest."""
    changes = [e for e in draft.actions if _changes_membership(e[2], members)]
    changes.sort(key=lambda e: (not isinstance(e[2], Replace), _slot_key(e[0]), e[1]))
    deferred = changes[1:]
    if deferred:
        draft.actions = [e for e in draft.actions if e not in deferred]
        draft.notes.extend(f"{e[2].reason} - deferred: one membership change at a time" for e in deferred)


# -- small helpers ----------------------------------------------------------------------


def _changes_membership(action: Action, members: frozenset[str]) -> bool:
    if isinstance(action, Replace):
        return action.old_member_id is not None and action.old_member_id in members
    if isinstance(action, Retire):
        return action.member_id is not None and action.member_id in members
    return False


def _inc(group: str, o: Observed) -> int:
    return parse_incarnation(group, o.instance.slot, o.instance.id) or 0


def _next_incarnation(group: str, slot: str, listed: dict[str, Observed], recorded: int = 0) -> int:
    """One above every incarnation seen for the slot, so a new instance
    never reuses the id (or member id) of one still listed."""
    seen = [_inc(group, o) for o in listed.values() if o.instance.slot == slot]
    return max([recorded, *seen]) + 1


def _replace(group: str, slot: str, rec: SlotRecord, listed: dict[str, Observed], why: str) -> Replace:
    inc = _next_incarnation(group, slot, listed, rec.incarnation)
    return Replace(group, slot, rec.instance_id, rec.member_id, inc,
                   f"slot {slot}: instance {rec.instance_id} {why}; replacing with incarnation {inc}")


def _slot_available(obs: GroupObservation, slot: str, listed: dict[str, Observed]) -> bool:
    """Recorded and available, or unrecorded with an available instance to adopt."""
    rec = obs.records.get(slot)
    if rec is not None:
        o = listed.get(rec.instance_id)
        return o is not None and is_available(o)
    return any(o.instance.slot == slot and is_available(o) for o in listed.values())
