"""The Executor on real runtimes (LoopCluster) with a fake provider: record
before create, term fencing, compare-and-swap, timeouts, membership order,
and never destroying the leader's own process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from quorate.kv import Applied, Put, encode_command
from quorate.manager.execute import Executor, GroupContext, LostLeadership
from quorate.manager.model import Action, Adopt, Create, Destroy, Replace, Restart, Retire, SlotRecord, slot_key
from quorate.manager.spec import GroupSpec, member_id, parse_spec, render
from quorate.providers.base import Instance, InstanceState, LaunchSpec
from quorate.runtime.raft_loop import RaftRuntime
from quorate.testing.fake_provider import FakeProvider
from quorate.testing.runtime_cluster import LoopCluster

WEB = parse_spec({"id": "web", "size": 2, "template": {"command": "serve", "args": ["{slot}"]}})
MANAGERS = parse_spec({"id": "managers", "logical_ids": ["n1", "n2", "n3"],
                       "template": {"command": "quorate", "args": ["--id={member_id}"],
                                    "state_path": "/data/{member_id}"}})


class Recording(FakeProvider):
    """A fake that notes, when create/destroy is entered, the slot record in
    the leader's store and the Raft members at that moment."""

    def __init__(self, rt: RaftRuntime, **kw: Any) -> None:
        super().__init__(**kw)
        self.rt = rt
        self.at_create: list[tuple[str, str | None, frozenset[str]]] = []
        self.order: list[str] = []

    async def create(self, spec: LaunchSpec, fencing_term: int) -> Instance:
        kv = self.rt.sm.kv.get(slot_key(spec.group, spec.slot))
        self.at_create.append((spec.instance_id, kv.value if kv else None, frozenset(self.rt.node.conf.members())))
        self.order.append(f"create {spec.instance_id}")
        return await super().create(spec, fencing_term)

    async def destroy(self, instance_id: str, fencing_term: int) -> None:
        self.order.append(f"destroy {instance_id}")
        await super().destroy(instance_id, fencing_term)


def run_on(ids: list[str], body: Callable[[LoopCluster, RaftRuntime], Awaitable[None]], timeout: float = 15) -> None:
    async def main() -> None:
        cluster = LoopCluster(ids)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            await asyncio.wait_for(body(cluster, leader), timeout=timeout)
        finally:
            await cluster.stop()
    asyncio.run(main())


def executor(rt: RaftRuntime, *, term: int | None = None, call_timeout_s: float = 2.0,
             concurrency: int = 4) -> Executor:
    return Executor(rt, rt.node.term if term is None else term, call_timeout_s=call_timeout_s,
                    concurrency=concurrency, render_context={"join": "", "cluster_id": "test"})


async def put(rt: RaftRuntime, key: str, value: str) -> int:
    result = await rt.propose(encode_command(Put(key, value, None, f"test-{key}-{time.monotonic_ns()}")))
    assert isinstance(result, Applied), result
    return result.revision


async def store_record(rt: RaftRuntime, spec: GroupSpec, slot: str, inc: int) -> SlotRecord:
    rec = SlotRecord(spec.id, slot, f"{spec.id}-{slot}-{inc}", inc,
                     member_id(slot, inc) if spec.is_logical else None, rt.node.term)
    rev = await put(rt, slot_key(spec.id, slot), rec.encode())
    return SlotRecord(rec.group, rec.slot, rec.instance_id, rec.incarnation, rec.member_id, rec.term, rev)


def stored(rt: RaftRuntime, group: str, slot: str) -> SlotRecord | None:
    kv = rt.sm.kv.get(slot_key(group, slot))
    return None if kv is None else SlotRecord.decode(kv.value, kv.mod_revision)


async def launch(fake: FakeProvider, spec: GroupSpec, slot: str, inc: int, term: int) -> Instance:
    return await fake.create(render(spec, slot, inc), term)


def ctx(spec: GroupSpec | None, fake: FakeProvider, records: list[SlotRecord] = (),  # type: ignore[assignment]
        self_instances: frozenset[str] = frozenset()) -> GroupContext:
    return GroupContext(spec, {r.slot: r for r in records}, fake, self_instances)


def provider_calls(fake: FakeProvider, *methods: str) -> list[tuple[str, str | None, int | None]]:
    return [c for c in fake.calls if c[0] in methods]


# -- create / adopt / restart / retire ------------------------------------------------------------


def test_create_writes_the_record_before_calling_the_provider() -> None:
    async def body(cluster: LoopCluster, rt: RaftRuntime) -> None:
        fake = Recording(rt)
        ex = executor(rt)
        [out] = await ex.run([Create("web", "1", 1, "slot 1: empty")], ctx(WEB, fake))
        assert out["outcome"] == "ok", out
        assert out["kind"] == "create" and out["slot"] == "1" and out["reason"] == "slot 1: empty"
        assert out["detail"].startswith("web-1-1 pid ")
        # When the provider's create was entered, the record was already in the store.
        [(iid, value_at_create, _)] = fake.at_create
        assert iid == "web-1-1"
        assert value_at_create is not None, "provider.create was called before the slot record was written"
        rec = SlotRecord.decode(value_at_create, 0)
        assert (rec.group, rec.slot, rec.instance_id, rec.incarnation, rec.member_id, rec.term) == \
               ("web", "1", "web-1-1", 1, None, ex.term)
        assert provider_calls(fake, "create") == [("create", "web-1-1", ex.term)]
        [inst] = await fake.list("web")
        assert inst.state is InstanceState.RUNNING and inst.spec_hash == WEB.spec_hash()
    run_on(["n1"], body)


def test_create_with_an_older_record_swaps_it_by_cas_and_same_incarnation_does_not_write() -> None:
    async def body(cluster: LoopCluster, rt: RaftRuntime) -> None:
        fake = Recording(rt)
        old = await store_record(rt, WEB, "0", 1)
        ex = executor(rt)
        # Same incarnation recorded: no write, just the (idempotent) create.
        rev = rt.sm.kv.revision
        [out] = await ex.run([Create("web", "0", 1, "r")], ctx(WEB, fake, [old]))
        assert out["outcome"] == "ok", out
        assert rt.sm.kv.revision == rev
        # An older incarnation recorded: the new one replaces it.
        [out] = await ex.run([Create("web", "0", 2, "r")], ctx(WEB, fake, [old]))
        assert out["outcome"] == "ok", out
        new = stored(rt, "web", "0")
        assert new is not None and new.instance_id == "web-0-2" and new.incarnation == 2
        assert new.revision > old.revision
        assert [v is not None and SlotRecord.decode(v, 0).incarnation for _, v, _ in fake.at_create] == [1, 2]
    run_on(["n1"], body)


def test_adopt_only_writes_the_record() -> None:
    async def body(cluster: LoopCluster, rt: RaftRuntime) -> None:
        fake = FakeProvider()
        await launch(fake, WEB, "0", 3, rt.node.term)
        fake.calls.clear()
        [out] = await executor(rt).run([Adopt("web", "0", "web-0-3", 3, None, "orphan")], ctx(WEB, fake))
        assert out["outcome"] == "ok", out
        rec = stored(rt, "web", "0")
        assert rec is not None and rec.instance_id == "web-0-3" and rec.incarnation == 3
        assert fake.calls == []
    run_on(["n1"], body)


def test_restart_calls_create_with_the_same_instance_id() -> None:
    async def body(cluster: LoopCluster, rt: RaftRuntime) -> None:
        fake = FakeProvider()
        rec = await store_record(rt, WEB, "0", 4)
        first = await launch(fake, WEB, "0", 4, rt.node.term)
        fake.kill("web-0-4")
        fake.calls.clear()
        rev = rt.sm.kv.revision
        ex = executor(rt)
        [out] = await ex.run([Restart("web", "0", "web-0-4", 4, "terminated")], ctx(WEB, fake, [rec]))
        assert out["outcome"] == "ok", out
        assert out["instance_id"] == "web-0-4"
        assert fake.calls == [("create", "web-0-4", ex.term)]
        [inst] = await fake.list("web")
        assert inst.id == "web-0-4" and inst.state is InstanceState.RUNNING
        assert inst.pid != first.pid  # really started again
        assert rt.sm.kv.revision == rev  # no record change: same instance
    run_on(["n1"], body)


def test_retire_deletes_the_record_and_destroys_the_instance() -> None:
    async def body(cluster: LoopCluster, rt: RaftRuntime) -> None:
        fake = FakeProvider()
        keep = await store_record(rt, WEB, "0", 1)
        rec = await store_record(rt, WEB, "5", 2)
        await launch(fake, WEB, "0", 1, rt.node.term)
        await launch(fake, WEB, "5", 2, rt.node.term)
        fake.calls.clear()
        ex = executor(rt)
        [out] = await ex.run([Retire("web", "5", "web-5-2", None, "no longer wanted")],
                             ctx(WEB, fake, [keep, rec]))
        assert out["outcome"] == "ok", out
        assert stored(rt, "web", "5") is None
        assert stored(rt, "web", "0") == keep
        assert fake.calls == [("destroy", "web-5-2", ex.term)]
        assert [i.id for i in await fake.list("web")] == ["web-0-1"]
    run_on(["n1"], body)


def test_destroy_calls_the_provider_with_the_term() -> None:
    async def body(cluster: LoopCluster, rt: RaftRuntime) -> None:
        fake = FakeProvider()
        await launch(fake, WEB, "9", 1, rt.node.term)
        fake.calls.clear()
        ex = executor(rt)
        [out] = await ex.run([Destroy("web", "web-9-1", "orphan")], ctx(WEB, fake))
        assert out["outcome"] == "ok", out
        assert fake.calls == [("destroy", "web-9-1", ex.term)]
        assert await fake.list() == []
    run_on(["n1"], body)


# -- errors -------------------------------------------------------------------------------


def test_stale_cas_gives_an_error_and_no_provider_call() -> None:
    async def body(cluster: LoopCluster, rt: RaftRuntime) -> None:
        fake = FakeProvider()
        await launch(fake, WEB, "0", 1, rt.node.term)
        fake.calls.clear()
        seen = await store_record(rt, WEB, "0", 1)              # what the plan was made from
        meanwhile = await put(rt, slot_key("web", "0"), seen.encode())   # the record changed since
        ex = executor(rt)
        outs = await ex.run([Create("web", "0", 2, "r"),
                             Replace("web", "0", "web-0-1", None, 2, "unhealthy")], ctx(WEB, fake, [seen]))
        for out in outs:
            assert out["outcome"] == "error", out
            assert out["error"] == (f"slot web/0 changed meanwhile (revision {meanwhile}, "
                                    f"expected {seen.revision})")
        assert fake.calls == [], "the provider was called although the record write failed"
        # A record that appeared meanwhile (the plan saw none): Adopt and Create refuse too.
        outs = await ex.run([Create("web", "1", 1, "r")],
                            ctx(WEB, fake, []))
        assert outs[0]["outcome"] == "ok"
        outs = await ex.run([Adopt("web", "1", "web-1-7", 7, None, "orphan")], ctx(WEB, fake))
        assert outs[0]["outcome"] == "error" and "slot web/1 changed meanwhile" in outs[0]["error"]
        rec = stored(rt, "web", "1")
        assert rec is not None and rec.instance_id == "web-1-1"
    run_on(["n1"], body)


def test_stale_retire_keeps_the_record() -> None:
    async def body(cluster: LoopCluster, rt: RaftRuntime) -> None:
        fake = FakeProvider()
        seen = await store_record(rt, WEB, "5", 1)
        await put(rt, slot_key("web", "5"), seen.encode())
        [out] = await executor(rt).run([Retire("web", "5", None, None, "gone")], ctx(WEB, fake, [seen]))
        assert out["outcome"] == "error" and out["error"] == "slot web/5 changed meanwhile"
        assert stored(rt, "web", "5") is not None
    run_on(["n1"], body)


def test_slow_provider_call_times_out_as_an_error() -> None:
    async def body(cluster: LoopCluster, rt: RaftRuntime) -> None:
        fake = FakeProvider(delay_s=30.0)
        ex = executor(rt, call_timeout_s=0.1)
        t0 = time.monotonic()
        [out] = await ex.run([Create("web", "0", 1, "r")], ctx(WEB, fake))
        elapsed = time.monotonic() - t0
        assert out["outcome"] == "error", out
        assert out["error"] == "creating web-0-1 did not finish within 0.1s"
        assert elapsed < 1.0, elapsed
        assert [c[0] for c in fake.calls] == ["create"]
    run_on(["n1"], body)


def test_provider_error_is_an_error_outcome() -> None:
    async def body(cluster: LoopCluster, rt: RaftRuntime) -> None:
        fake = FakeProvider()
        fake.fail_next(1)
        [out, out2] = await executor(rt).run([Create("web", "0", 1, "r"), Create("web", "1", 1, "r")],
                                             ctx(WEB, fake))
        # Actions run concurrently: exactly one of them got the injected failure.
        assert sorted(o["outcome"] for o in (out, out2)) == ["error", "ok"]
        failed = out if out["outcome"] == "error" else out2
        assert failed["error"] == "injected failure (FakeProvider.fail_next)"
    run_on(["n1"], body)


def test_concurrency_limits_actions_in_flight() -> None:
    async def body(cluster: LoopCluster, rt: RaftRuntime) -> None:
        in_flight = peak = 0

        class Slow(FakeProvider):
            async def create(self, spec: LaunchSpec, fencing_term: int) -> Instance:
                nonlocal in_flight, peak
                in_flight += 1
                peak = max(peak, in_flight)
                try:
                    await asyncio.sleep(0.02)
                    return await super().create(spec, fencing_term)
                finally:
                    in_flight -= 1

        spec = parse_spec({"id": "web", "size": 6, "template": {"command": "x"}})
        outs = await executor(rt, concurrency=2).run([Create("web", str(i), 1, "r") for i in range(6)],
                                                     ctx(spec, Slow()))
        assert [o["outcome"] for o in outs] == ["ok"] * 6
        assert [o["slot"] for o in outs] == [str(i) for i in range(6)]  # outcomes in action order
        assert peak == 2
    run_on(["n1"], body)


# -- term fencing ----------------------------------------------------------------------------


def test_lost_leadership_when_the_plan_term_is_not_led() -> None:
    async def body(cluster: LoopCluster, rt: RaftRuntime) -> None:
        fake = FakeProvider()
        ex = executor(rt, term=rt.node.term + 1)   # a plan of a term this node does not lead
        with pytest.raises(LostLeadership, match=f"no longer the leader of term {rt.node.term + 1}"):
            await ex.run([Create("web", "0", 1, "r")], ctx(WEB, fake))
        assert fake.calls == []
        assert stored(rt, "web", "0") is None
    run_on(["n1"], body)


def test_lost_leadership_after_a_real_leadership_change() -> None:
    async def body(cluster: LoopCluster, rt: RaftRuntime) -> None:
        fake = FakeProvider()
        ex = executor(rt)
        rt.transfer_leadership(None)
        new = await cluster.wait_leader(not_in=frozenset({rt.id}))
        assert new.id != rt.id
        with pytest.raises(LostLeadership):
            await ex.run([Create("web", "0", 1, "r"), Destroy("web", "web-0-9", "r")], ctx(WEB, fake))
        assert fake.calls == []
        # A plan of the new term on the new leader works.
        [out] = await executor(new).run([Create("web", "0", 1, "r")], ctx(WEB, fake))
        assert out["outcome"] == "ok", out
    run_on(["n1", "n2", "n3"], body)


# -- managers: membership ------------------------------------------------------------------------


async def _managers_with_one_down(cluster: LoopCluster, rt: RaftRuntime, fake: FakeProvider
                                  ) -> tuple[str, dict[str, SlotRecord]]:
    """Record and run all three managers; take one follower off the network."""
    records = {}
    for slot in MANAGERS.slots():
        records[slot] = await store_record(rt, MANAGERS, slot, 1)
        await launch(fake, MANAGERS, slot, 1, rt.node.term)
    down = sorted(set(cluster.ids) - {rt.id})[0]
    cluster.down.add(down)
    fake.kill(f"managers-{down}-1")
    fake.calls.clear()
    if isinstance(fake, Recording):
        fake.at_create.clear()
        fake.order.clear()
    return down, records


def test_replace_of_a_manager_removes_the_old_member_before_creating_the_new_one() -> None:
    async def body(cluster: LoopCluster, rt: RaftRuntime) -> None:
        fake = Recording(rt)
        down, records = await _managers_with_one_down(cluster, rt, fake)
        assert down in rt.node.conf.members()
        ex = executor(rt)
        [out] = await ex.run([Replace("managers", down, f"managers-{down}-1", down, 2, "terminated")],
                             ctx(MANAGERS, fake, list(records.values())))
        assert out["outcome"] == "ok", out
        assert out["instance_id"] == f"managers-{down}-1"
        # Old destroyed, then the new one created: and when it was, the old member was gone.
        assert fake.order == [f"destroy managers-{down}-1", f"create managers-{down}-2"]
        [(iid, value, members_at_create)] = fake.at_create
        assert iid == f"managers-{down}-2"
        assert down not in members_at_create, "the new manager was created while the old member still votes"
        assert value is not None and SlotRecord.decode(value, 0).member_id == f"{down}-2"
        assert down not in rt.node.conf.members()
        assert rt.node.conf.voters == frozenset(cluster.ids) - {down}
        rec = stored(rt, "managers", down)
        assert rec is not None and (rec.instance_id, rec.incarnation, rec.member_id) == \
               (f"managers-{down}-2", 2, f"{down}-2")
        new = {i.id: i for i in await fake.list("managers")}
        assert f"managers-{down}-1" not in new
        assert new[f"managers-{down}-2"].state_path == f"/data/{down}-2"
    run_on(["n1", "n2", "n3"], body)


def test_retire_of_a_manager_removes_the_member_first() -> None:
    async def body(cluster: LoopCluster, rt: RaftRuntime) -> None:
        fake = Recording(rt)
        down, records = await _managers_with_one_down(cluster, rt, fake)
        members_at_destroy: list[frozenset[str]] = []
        original = fake.destroy

        async def destroy(instance_id: str, fencing_term: int) -> None:
            members_at_destroy.append(frozenset(rt.node.conf.members()))
            await original(instance_id, fencing_term)

        fake.destroy = destroy  # type: ignore[method-assign]
        two = parse_spec({"id": "managers", "logical_ids": sorted(set(cluster.ids) - {down}),
                          "template": {"command": "quorate"}})
        [out] = await executor(rt).run([Retire("managers", down, f"managers-{down}-1", down, "not wanted")],
                                       ctx(two, fake, list(records.values())))
        assert out["outcome"] == "ok", out
        assert members_at_destroy == [frozenset(cluster.ids) - {down}]
        assert stored(rt, "managers", down) is None
        assert down not in rt.node.conf.members()
    run_on(["n1", "n2", "n3"], body)


# -- never destroy this very process ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["destroy", "retire", "replace"])
def test_own_instance_is_never_destroyed_leadership_is_handed_off(kind: str) -> None:
    async def body(cluster: LoopCluster, rt: RaftRuntime) -> None:
        fake = FakeProvider()
        me = f"managers-{rt.id}-1"
        rec = await store_record(rt, MANAGERS, rt.id, 1)
        await launch(fake, MANAGERS, rt.id, 1, rt.node.term)
        fake.calls.clear()
        action: Action = {
            "destroy": Destroy("managers", me, "duplicate"),
            "retire": Retire("managers", rt.id, me, rt.id, "not wanted"),
            "replace": Replace("managers", rt.id, me, rt.id, 2, "unhealthy"),
        }[kind]
        [out] = await executor(rt).run([action], ctx(MANAGERS, fake, [rec], frozenset({me})))
        assert out["outcome"] == "ok", out
        assert out["detail"].startswith("skipped (it is this leader's own instance); leadership handed to ")
        target = out["detail"].rsplit(" ", 1)[1]
        assert target in set(cluster.ids) - {rt.id}
        assert fake.calls == [], "the provider was called about the leader's own instance"
        assert [i.id for i in await fake.list()] == [me]
        assert stored(rt, "managers", rt.id) == rec
        assert rt.id in rt.node.conf.voters
        new = await cluster.wait_leader(not_in=frozenset({rt.id}))
        assert new.id == target
    run_on(["n1", "n2", "n3"], body)
