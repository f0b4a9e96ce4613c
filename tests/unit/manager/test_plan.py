"""The reconcile planner: examples for each rule, then properties over random observations."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from quorate.manager.model import (
    Action, Adopt, Create, Destroy, GroupObservation, Observed, Plan, Replace, Restart, Retire, SlotRecord,
    is_available,
)
from quorate.manager.plan import parse_incarnation, plan, summarize
from quorate.manager.spec import GroupSpec, instance_id, member_id, parse_spec
from quorate.providers.base import Instance, InstanceState

RUNNING, STARTING = InstanceState.RUNNING, InstanceState.STARTING
TERMINATED, UNKNOWN = InstanceState.TERMINATED, InstanceState.UNKNOWN
OLD = "old-template"


def web(size: int = 3, max_unavailable: int = 1, group: str = "web") -> GroupSpec:
    return parse_spec({"id": group, "size": size, "template": {"command": "serve", "args": ["{index}"]},
                       "update": {"max_unavailable": max_unavailable}})


def managers(*ids: str) -> GroupSpec:
    return parse_spec({"id": "managers", "logical_ids": list(ids or ("n1", "n2", "n3")),
                       "template": {"command": "quorate", "state_path": "/data/{member_id}"}})


def inst(spec: GroupSpec | str, slot: str, inc: int = 1, state: InstanceState = RUNNING, *, unhealthy: bool = False,
         intact: bool = False, spec_hash: str | None = None, group: str | None = None) -> Observed:
    gid = group or (spec if isinstance(spec, str) else spec.id)
    h = spec_hash if spec_hash is not None else (spec.spec_hash() if isinstance(spec, GroupSpec) else OLD)
    logical = slot if isinstance(spec, GroupSpec) and spec.is_logical else None
    return Observed(Instance(instance_id(gid, slot, inc), gid, logical, slot, state, h, 1, 0.0), unhealthy, intact)


def rec(spec: GroupSpec | str, slot: str, inc: int = 1) -> SlotRecord:
    gid = spec if isinstance(spec, str) else spec.id
    logical = isinstance(spec, GroupSpec) and spec.is_logical
    return SlotRecord(gid, slot, instance_id(gid, slot, inc), inc, member_id(slot, inc) if logical else None, 1)


def observe(spec: GroupSpec, records: Sequence[SlotRecord] = (), instances: Sequence[Observed] = (),
            members: set[str] | None = None) -> GroupObservation:
    return GroupObservation(spec.id, spec, {r.slot: r for r in records}, list(instances),
                            frozenset(members or ()))


def steady(spec: GroupSpec, **changes: Observed) -> GroupObservation:
    """Every slot recorded at incarnation 1 and running; ``changes`` swaps some instances."""
    slots = spec.slots()
    return observe(spec, [rec(spec, s) for s in slots], [changes.get(f"s{s}", inst(spec, s)) for s in slots],
                   {member_id(s, 1) for s in slots} if spec.is_logical else None)


def kinds(p: Plan) -> list[str]:
    return [type(a).__name__ for a in p.actions]


# -- examples ---------------------------------------------------------------------------


def test_fresh_group_creates_every_slot_at_incarnation_1() -> None:
    spec = web(3)
    p = plan(observe(spec))
    assert p.actions == tuple(Create("web", s, 1, f"slot {s}: empty; creating incarnation 1") for s in "012")
    assert summarize(observe(spec), p) == "web: 0/3 available, 3 actions"


def test_steady_state_plans_nothing() -> None:
    for spec in (web(3), managers()):
        obs = steady(spec)
        assert plan(obs) == Plan(())
    assert summarize(steady(web(3)), plan(steady(web(3)))) == "web: 3/3 available, 0 actions"


def test_killed_worker_is_replaced_with_the_next_incarnation() -> None:
    spec = web(3)
    p = plan(steady(spec, s1=inst(spec, "1", state=TERMINATED)))
    assert p.actions == (Replace("web", "1", "web-1-1", None, 2,
                                 "slot 1: instance web-1-1 terminated; replacing with incarnation 2"),)


def test_terminated_manager_with_intact_state_restarts_in_place() -> None:
    spec = managers()
    (a,) = plan(steady(spec, sn2=inst(spec, "n2", state=TERMINATED, intact=True))).actions
    assert isinstance(a, Restart) and (a.instance_id, a.incarnation) == ("managers-n2-1", 1)
    assert "restart in place with its own state" in a.reason


def test_terminated_manager_without_state_is_replaced_carrying_its_member_id() -> None:
    spec = managers()
    (a,) = plan(steady(spec, sn2=inst(spec, "n2", state=TERMINATED))).actions
    assert a == Replace("managers", "n2", "managers-n2-1", "n2", 2, a.reason)


def test_terminated_worker_with_intact_state_is_still_replaced() -> None:
    spec = web(2)
    (a,) = plan(steady(spec, s0=inst(spec, "0", state=TERMINATED, intact=True))).actions
    assert isinstance(a, Replace)


def test_record_without_instance_replaces_a_configured_member_and_creates_otherwise() -> None:
    spec = managers()
    base = steady(spec)
    missing = [o for o in base.instances if o.instance.slot != "n3"]
    in_config = dataclasses.replace(base, instances=missing)
    (a,) = plan(in_config).actions
    assert a == Replace("managers", "n3", "managers-n3-1", "n3", 2, a.reason) and "Raft configuration" in a.reason
    not_in_config = dataclasses.replace(in_config, members=frozenset({"n1", "n2"}))
    (b,) = plan(not_in_config).actions
    assert isinstance(b, Create) and (b.slot, b.incarnation) == ("n3", 1)
    worker = dataclasses.replace(steady(web(2)), instances=[inst(web(2), "0")])
    (c,) = plan(worker).actions
    assert c == Create("web", "1", 1, "slot 1: instance web-1-1 is recorded but not listed; "
                                      "creating it (same id, create is idempotent)")


def test_unknown_instance_is_only_noted() -> None:
    for spec, slot in ((web(3), "1"), (managers(), "n2")):
        p = plan(steady(spec, **{f"s{slot}": inst(spec, slot, state=UNKNOWN)}))
        assert p.actions == ()
        assert p.notes == (f"slot {slot}: instance {spec.id}-{slot}-1 state unknown; waiting, not replacing",)


def test_unhealthy_instance_is_replaced() -> None:
    spec = web(3)
    (a,) = plan(steady(spec, s2=inst(spec, "2", unhealthy=True))).actions
    assert isinstance(a, Replace) and (a.slot, a.incarnation) == ("2", 2) and "unhealthy" in a.reason


def test_rollout_is_limited_by_max_unavailable() -> None:
    spec = web(5, max_unavailable=2)
    old = {f"s{s}": inst(spec, s, spec_hash=OLD) for s in spec.slots()}
    p = plan(steady(spec, **old))
    assert [(type(a), a.slot) for a in p.actions] == [(Replace, "0"), (Replace, "1")]
    assert len(p.notes) == 3 and all("waiting for the rollout budget" in n for n in p.notes)
    p = plan(steady(spec, **{**old, "s4": inst(spec, "4", state=TERMINATED)}))
    assert [(type(a), a.slot) for a in p.actions] == [(Replace, "0"), (Replace, "4")]
    p = plan(steady(spec, **{**old, "s3": inst(spec, "3", state=UNKNOWN), "s4": inst(spec, "4", state=TERMINATED)}))
    assert [a.slot for a in p.actions] == ["4"]


def test_managers_are_not_rolled() -> None:
    spec = managers()
    p = plan(steady(spec, sn1=inst(spec, "n1", spec_hash=OLD)))
    assert p.actions == () and "managers are not rolled" in p.notes[0]


def test_shrink_retires_the_highest_slots() -> None:
    spec = web(3)
    obs = observe(spec, [rec(spec, s) for s in "01234"], [inst(spec, s) for s in "01234"])
    p = plan(obs)
    assert p.actions == (Retire("web", "3", "web-3-1", None, p.actions[0].reason),
                         Retire("web", "4", "web-4-1", None, p.actions[1].reason))


def test_deleted_group_retires_records_and_destroys_the_rest() -> None:
    spec = web(2)
    obs = dataclasses.replace(observe(spec, [rec(spec, "0"), rec(spec, "1")],
                                      [inst(spec, "0"), inst(spec, "1", 1), inst(spec, "1", 2)]), spec=None)
    p = plan(obs)
    assert [(type(a), getattr(a, "instance_id")) for a in p.actions] == [
        (Destroy, "web-1-2"), (Retire, "web-0-1"), (Retire, "web-1-1")]
    assert summarize(obs, p) == "web: deleted, 3 instance(s) left, 3 actions"


def test_orphan_in_a_free_slot_is_adopted() -> None:
    spec = web(2)
    p = plan(observe(spec, [rec(spec, "0")], [inst(spec, "0"), inst(spec, "1", 3, STARTING)]))
    assert p.actions == (Adopt("web", "1", "web-1-3", 3, None, p.actions[0].reason),)
    m = managers()
    p = plan(observe(m, [rec(m, "n1"), rec(m, "n3")], [inst(m, "n1"), inst(m, "n2", 2), inst(m, "n3")]))
    assert p.actions == (Adopt("managers", "n2", "managers-n2-2", 2, "n2-2", p.actions[0].reason),)


def test_duplicates_adopt_the_highest_available_and_destroy_the_others() -> None:
    spec = web(2)
    dupes = [inst(spec, "1", 1), inst(spec, "1", 2), inst(spec, "1", 3, unhealthy=True), inst(spec, "1", 4, TERMINATED)]
    p = plan(observe(spec, [rec(spec, "0")], [inst(spec, "0"), *dupes]))
    assert [(type(a), getattr(a, "instance_id")) for a in p.actions] == [
        (Adopt, "web-1-2"), (Destroy, "web-1-1"), (Destroy, "web-1-3"), (Destroy, "web-1-4")]
    assert all("duplicate" in a.reason for a in p.actions[1:])


def test_other_orphans_are_destroyed_and_a_new_incarnation_skips_their_ids() -> None:
    spec = web(2)
    obs = observe(spec, [rec(spec, "0", 2)],
                  [inst(spec, "0", 1), inst(spec, "0", 2), inst(spec, "1", 2, TERMINATED), inst(spec, "7", 1)])
    p = plan(obs)
    assert [(type(a), getattr(a, "instance_id", None), a.slot if isinstance(a, Create) else None, a.reason)
            for a in p.actions] == [
        (Destroy, "web-0-1", None, "slot 0: instance web-0-1 is not recorded; the slot belongs to web-0-2; destroying"),
        (Destroy, "web-1-2", None, "slot 1: instance web-1-2 is a terminated leftover no record names; destroying"),
        (Destroy, "web-7-1", None, "slot 7: instance web-7-1 is not recorded and the slot is not wanted; destroying"),
        (Create, None, "1", "slot 1: empty; creating incarnation 3")]


def test_instances_of_another_group_are_left_alone() -> None:
    spec = web(1)
    p = plan(observe(spec, [rec(spec, "0")], [inst(spec, "0"), inst(spec, "0", group="db")]))
    assert p.actions == () and p.notes == ("instance db-0-1 belongs to group db; ignored",)


def test_managers_change_membership_one_at_a_time() -> None:
    spec = managers("n1", "n2", "n3", "n4", "n5")
    p = plan(steady(spec, sn2=inst(spec, "n2", state=TERMINATED), sn4=inst(spec, "n4", state=TERMINATED)))
    assert [(type(a), a.slot) for a in p.actions] == [(Replace, "n2")]
    assert p.notes and "one membership change at a time" in p.notes[0] and "n4" in p.notes[0]
    # a restart in place is no membership change
    p = plan(steady(spec, sn2=inst(spec, "n2", state=TERMINATED), sn4=inst(spec, "n4", state=TERMINATED, intact=True)))
    assert kinds(p) == ["Replace", "Restart"]
    # shrinking the managers: one retire per cycle, and a dead member's replacement goes first
    shrunk = managers("n1", "n2", "n3")
    obs = dataclasses.replace(steady(spec), spec=shrunk)
    assert [(type(a), a.slot) for a in plan(obs).actions] == [(Retire, "n4")]
    obs = dataclasses.replace(steady(spec, sn2=inst(spec, "n2", state=TERMINATED)), spec=shrunk)
    p = plan(obs)
    assert [(type(a), a.slot) for a in p.actions] == [(Replace, "n2")] and len(p.notes) == 2


def test_action_order_is_adopt_then_destroy_retire_then_fill() -> None:
    spec = web(4)
    obs = observe(spec, [rec(spec, "0"), rec(spec, "1"), rec(spec, "9")],
                  [inst(spec, "0", state=TERMINATED), inst(spec, "1"), inst(spec, "2"), inst(spec, "8"),
                   inst(spec, "9")])
    assert kinds(plan(obs)) == ["Adopt", "Destroy", "Retire", "Replace", "Create"]


def test_parse_incarnation() -> None:
    assert parse_incarnation("web", "1", "web-1-3") == 3
    assert parse_incarnation("a-b", "n-1", "a-b-n-1-12") == 12
    for bad in ("web-1-0", "web-1-01", "web-1-", "web-2-3", "web-1-x", "web-1-³"):
        assert parse_incarnation("web", "1", bad) is None


# -- properties ---------------------------------------------------------------------------

STATES = st.sampled_from([RUNNING, RUNNING, STARTING, TERMINATED, UNKNOWN])


@st.composite
def observations(draw: st.DrawFn, unknown: bool = True, healthy: bool = False) -> GroupObservation:
    """A random group: wanted slots, records (also of unwanted slots), instances
    per slot (several incarnations, random state/health/hash), members, strangers."""
    kind = draw(st.sampled_from(["web", "db", "managers"]))
    if kind == "web":
        spec = web(draw(st.integers(0, 5)), draw(st.integers(1, 3)))
        universe = [str(i) for i in range(7)]
    else:
        names = ["n1", "n2", "n3", "n4", "n5", "n6"]
        ids = draw(st.lists(st.sampled_from(names[:5]), unique=True, max_size=5))
        spec = parse_spec({"id": kind, "logical_ids": ids, "template": {"command": "run"},
                           "update": {"max_unavailable": draw(st.integers(1, 3))}})
        universe = names
    states = st.sampled_from([RUNNING, STARTING]) if healthy else STATES if unknown else STATES.filter(
        lambda s: s is not UNKNOWN)
    records, instances, members = [], [], set()
    for slot in universe:
        wanted = slot in spec.slots()
        if healthy:
            if wanted:
                inc = draw(st.integers(1, 3))
                records.append(rec(spec, slot, inc))
                instances.append(inst(spec, slot, inc, draw(states), spec_hash=draw(st.sampled_from(
                    [spec.spec_hash(), OLD]))))
            continue
        if draw(st.integers(0, 3)) == 0 and not wanted:
            continue
        if draw(st.booleans()):
            records.append(rec(spec, slot, draw(st.integers(1, 3))))
        for inc in draw(st.lists(st.integers(1, 4), unique=True, max_size=3)):
            instances.append(inst(spec, slot, inc, draw(states), unhealthy=draw(st.booleans()),
                                  intact=draw(st.booleans()), spec_hash=draw(st.sampled_from([spec.spec_hash(), OLD]))))
            if draw(st.booleans()):
                members.add(member_id(slot, inc))
    if not healthy and draw(st.booleans()):
        instances.append(inst("other", "0"))
    members |= {r.member_id for r in records if r.member_id and draw(st.booleans())}
    obs = observe(spec, records, instances, members)
    if not healthy and draw(st.integers(0, 9)) == 0:
        obs = dataclasses.replace(obs, spec=None)
    return obs


def new_id(obs: GroupObservation, a: Action) -> str | None:
    """The instance an action means to keep (None for Destroy/Retire)."""
    if isinstance(a, (Adopt, Restart)):
        return a.instance_id
    if isinstance(a, (Create, Replace)):
        return instance_id(obs.group, a.slot, a.incarnation)
    return None


def gone_ids(a: Action) -> set[str]:
    if isinstance(a, Destroy):
        return {a.instance_id}
    if isinstance(a, Replace):
        return {a.old_instance_id}
    if isinstance(a, Retire) and a.instance_id:
        return {a.instance_id}
    return set()


def available_slots(obs: GroupObservation) -> set[str]:
    listed = {o.instance.id: o for o in obs.instances if o.instance.group == obs.group}
    out = set()
    for slot in obs.spec.slots():
        r = obs.records.get(slot)
        if r is not None:
            if r.instance_id in listed and is_available(listed[r.instance_id]):
                out.add(slot)
        elif any(o.instance.slot == slot and is_available(o) for o in listed.values()):
            out.add(slot)
    return out


@settings(max_examples=300, deadline=None)
@given(observations())
def test_plan_invariants(obs: GroupObservation) -> None:
    p = plan(obs)
    assert plan(obs) == p
    shuffled = dataclasses.replace(obs, instances=list(reversed(obs.instances)),
                                   records=dict(reversed(list(obs.records.items()))))
    assert plan(shuffled) == p
    own = {o.instance.id for o in obs.instances if o.instance.group == obs.group}
    recorded = {r.instance_id for r in obs.records.values()}
    # one instance per slot, never kept and destroyed at once
    per_slot = Counter(a.slot for a in p.actions if not isinstance(a, Destroy))
    assert all(n == 1 for n in per_slot.values()), p
    kept = {new_id(obs, a) for a in p.actions} - {None}
    gone = set().union(*(gone_ids(a) for a in p.actions))
    untouched = {r.instance_id for s, r in obs.records.items() if s not in per_slot}
    assert not (kept | untouched) & gone, p
    # own group only; destroys only what no record names
    for a in p.actions:
        assert a.group == obs.group
        assert gone_ids(a) <= own | recorded
        if isinstance(a, Destroy):
            assert a.instance_id in own - recorded
    if obs.spec is None:
        assert {type(a) for a in p.actions} <= {Retire, Destroy}
        return
    wanted = set(obs.spec.slots())
    for a in p.actions:
        if isinstance(a, (Adopt, Create, Replace, Restart)):
            assert a.slot in wanted
        if isinstance(a, Retire):
            assert a.slot not in wanted
    # a rollout never takes a slot down beyond the budget
    before = available_slots(obs)
    down = len(wanted - before)
    rolled = {a.slot for a in p.actions if isinstance(a, Replace) and a.slot in before}
    assert len(rolled) + down <= max(obs.spec.update.max_unavailable, down)
    if obs.group == "managers":
        assert len([a for a in p.actions if (isinstance(a, Replace) and a.old_member_id in obs.members)
                    or (isinstance(a, Retire) and a.member_id in obs.members)]) <= 1
        assert not rolled


@settings(max_examples=150, deadline=None)
@given(observations(healthy=True))
def test_rollout_from_a_healthy_group_stays_within_max_unavailable(obs: GroupObservation) -> None:
    p = plan(obs)
    touched = {a.slot for a in p.actions}
    assert len(touched) <= obs.spec.update.max_unavailable
    assert {type(a) for a in p.actions} <= {Replace}


def apply(obs: GroupObservation, p: Plan) -> GroupObservation:
    """A tiny world: every action takes effect at once, new instances come up
    running and healthy with the current template, members follow."""
    spec = obs.spec
    instances = {o.instance.id: o for o in obs.instances}
    records, members = dict(obs.records), set(obs.members)

    def start(slot: str, inc: int) -> None:
        logical = spec.is_logical
        records[slot] = rec(spec, slot, inc)
        instances[instance_id(obs.group, slot, inc)] = inst(spec, slot, inc)
        if logical:
            members.add(member_id(slot, inc))

    for a in p.actions:
        if isinstance(a, Adopt):
            records[a.slot] = SlotRecord(a.group, a.slot, a.instance_id, a.incarnation, a.member_id, 1)
        elif isinstance(a, Destroy):
            instances.pop(a.instance_id, None)
        elif isinstance(a, Retire):
            records.pop(a.slot, None)
            instances.pop(a.instance_id or "", None)
            members.discard(a.member_id or "")
        elif isinstance(a, Replace):
            instances.pop(a.old_instance_id, None)
            members.discard(a.old_member_id or "")
            start(a.slot, a.incarnation)
        elif isinstance(a, (Create, Restart)):
            start(a.slot, a.incarnation)
    return dataclasses.replace(obs, records=records, instances=list(instances.values()), members=frozenset(members))


@settings(max_examples=150, deadline=None)
@given(observations(unknown=False))
def test_applying_plans_reaches_a_fixed_point(obs: GroupObservation) -> None:
    rounds = (len(obs.spec.slots()) if obs.spec else 0) + 10
    for _ in range(rounds):
        p = plan(obs)
        if p.empty:
            break
        obs = apply(obs, p)
    else:
        raise AssertionError(f"no fixed point after {rounds} rounds: {plan(obs)}")
    if obs.spec is not None:
        assert set(obs.records) == set(obs.spec.slots())
        assert available_slots(obs) == set(obs.spec.slots())
