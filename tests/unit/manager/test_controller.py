"""The Manager on a one-node LoopCluster with a fake provider: specs lead to
instances, dead ones are replaced, status and instance views, the safety
rules for groups the store does not know (or cannot read), may_run, a
failing provider, and shutdown."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from quorate.kv import Applied, Delete, Put, encode_command
from quorate.manager.controller import Manager, ManagerSettings
from quorate.manager.model import SlotRecord, group_key, slot_key
from quorate.manager.spec import parse_spec, render
from quorate.providers.base import Instance, InstanceState, LaunchSpec, ProviderError
from quorate.runtime.raft_loop import RaftRuntime
from quorate.testing.fake_provider import FakeProvider
from quorate.testing.runtime_cluster import LoopCluster

INTERVAL = 0.02
WEB: dict[str, Any] = {"id": "web", "size": 3, "template": {"command": "web", "args": ["--slot={slot}"]}}


class Fake(FakeProvider):
    """A fake whose ``list`` can be made to fail (``failing``), with a
    ``peek`` that lists without going through the failure or the call log."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.failing = False
        self.create_delay_s = 0.0

    async def create(self, spec: LaunchSpec, fencing_term: int) -> Instance:
        if self.create_delay_s:
            self.calls.append(("create", spec.instance_id, fencing_term))
            await asyncio.sleep(self.create_delay_s)
        return await super().create(spec, fencing_term)

    async def list(self, group: str | None = None) -> list[Instance]:
        if self.failing:
            self.calls.append(("list", None, None))
            raise ProviderError("injected list failure")
        return await super().list(group)

    def peek(self, group: str | None = None) -> dict[str, InstanceState]:
        return {iid: i.state for iid, i in sorted(self._instances.items()) if group is None or i.group == group}

    def mutations(self) -> list[tuple[str, str | None, int | None]]:
        return [c for c in self.calls if c[0] in ("create", "destroy")]


@dataclass
class H:
    """The harness handed to each test body."""

    cluster: LoopCluster
    rt: RaftRuntime
    fake: Fake
    manager: Manager
    task: asyncio.Task[None]

    async def put(self, key: str, value: str) -> None:
        result = await self.rt.propose(encode_command(Put(key, value, None, f"t-{time.monotonic_ns()}")))
        assert isinstance(result, Applied), result

    async def apply(self, spec: dict[str, Any]) -> None:
        await self.put(group_key(spec["id"]), json.dumps(spec))

    async def delete(self, group: str) -> None:
        result = await self.rt.propose(encode_command(Delete(group_key(group), None, f"d-{time.monotonic_ns()}")))
        assert isinstance(result, Applied), result

    def record(self, group: str, slot: str) -> SlotRecord | None:
        kv = self.rt.sm.kv.get(slot_key(group, slot))
        return None if kv is None else SlotRecord.decode(kv.value, kv.mod_revision)

    def running(self, group: str) -> list[str]:
        return [iid for iid, s in self.fake.peek(group).items() if s is InstanceState.RUNNING]

    def cycle(self, group: str) -> int:
        status = self.manager.group_status(group)
        return int(status["cycle"]) if status else 0


async def until(cond: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.005)


async def cycles_pass(h: H, group: str, n: int) -> None:
    """Wait until ``n`` more cycles have finished (seen in the group's status)."""
    start = h.cycle(group)
    await until(lambda: h.cycle(group) >= start + n, f"{n} more cycles of {group}")


def run(body: Callable[[H], Awaitable[None]], tmp: Path, *, may_run: Callable[[], bool] | None = None,
        prepare: Callable[[Fake], Awaitable[None]] | None = None, backoff_first_s: float = 0.0,
        timeout: float = 15.0) -> None:
    async def main() -> None:
        cluster = LoopCluster(["n1"])
        await cluster.start()
        manager: Manager | None = None
        task: asyncio.Task[None] | None = None
        try:
            rt = await cluster.wait_leader()
            f = Fake()
            if prepare is not None:
                await prepare(f)
                f.calls.clear()
            # No crash-loop back-off unless a test asks for it: replacements come at the next cycle.
            manager = Manager(rt, ManagerSettings(provider_dir=tmp, interval_s=INTERVAL, call_timeout_s=2.0,
                                                  barrier_timeout_s=2.0, backoff_first_s=backoff_first_s),
                              may_run=may_run or (lambda: True), providers={"process": f})
            task = asyncio.create_task(manager.run())
            await asyncio.wait_for(body(H(cluster, rt, f, manager, task)), timeout=timeout)
        finally:
            # The agent's order: stop following leadership, then close.
            try:
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                if manager is not None:
                    await manager.close()
            finally:
                await cluster.stop()
    asyncio.run(main())


async def launch(fake: FakeProvider, group: str, slot: str, inc: int, term: int = 1) -> Instance:
    spec = parse_spec({"id": group, "size": 1, "template": {"command": "x"}})
    return await fake.create(render(spec, slot, inc), term)


# -- specs become instances ---------------------------------------------------------------


def test_applied_spec_leads_to_the_right_instances(tmp_path: Path) -> None:
    async def body(h: H) -> None:
        await h.apply(WEB)
        await until(lambda: h.running("web") == ["web-0-1", "web-1-1", "web-2-1"], "three instances")
        for slot in "012":
            rec = h.record("web", slot)
            assert rec is not None and rec.instance_id == f"web-{slot}-1" and rec.term == h.rt.node.term
        assert sorted(c[1] for c in h.fake.mutations()) == ["web-0-1", "web-1-1", "web-2-1"]
        # Scaled down: the last slot is retired (instance and record).
        await h.apply({**WEB, "size": 2})
        await until(lambda: h.running("web") == ["web-0-1", "web-1-1"] and h.record("web", "2") is None,
                    "slot 2 retired")
        assert "web-2-1" not in h.fake.peek()
        # Deleted: every instance and record goes, the group leaves the status.
        await h.delete("web")
        await until(lambda: h.fake.peek("web") == {} and h.record("web", "0") is None
                    and h.record("web", "1") is None, "group deleted")
        await until(lambda: h.manager.group_status("web") is None, "status of a deleted group dropped")
    run(body, tmp_path)


def test_killed_instance_is_replaced_within_a_few_cycles(tmp_path: Path) -> None:
    async def body(h: H) -> None:
        await h.apply(WEB)
        await until(lambda: len(h.running("web")) == 3, "three instances")
        await cycles_pass(h, "web", 1)
        killed_at = h.cycle("web")
        h.fake.kill("web-1-1")
        await until(lambda: h.running("web") == ["web-0-1", "web-1-2", "web-2-1"], "slot 1 replaced")
        assert h.cycle("web") - killed_at <= 3, f"took {h.cycle('web') - killed_at} cycles"
        assert "web-1-1" not in h.fake.peek()
        rec = h.record("web", "1")
        assert rec is not None and (rec.instance_id, rec.incarnation) == ("web-1-2", 2)
    run(body, tmp_path)


def test_a_crash_looping_slot_is_started_again_with_growing_back_off(tmp_path: Path) -> None:
    def backoff_wait(h: H) -> float | None:
        for note in (h.manager.group_status("web") or {}).get("notes", []):
            m = re.fullmatch(r"slot 0: its instance died [0-9.]+s after starting; next start in ([0-9.]+)s "
                             r"\(crash-loop back-off\)", note)
            if m:
                return float(m.group(1))
        return None

    async def body(h: H) -> None:
        await h.apply({**WEB, "size": 1})
        await until(lambda: h.running("web") == ["web-0-1"], "web-0-1 up")
        h.fake.kill("web-0-1")
        await until(lambda: backoff_wait(h) is not None, "a back-off note")
        assert "web-0-2" not in h.fake.peek(), "started again during the back-off"
        await until(lambda: h.running("web") == ["web-0-2"], "web-0-2 up after the back-off")
        # (The status of the cycle that started it no longer holds the old note.)
        await until(lambda: backoff_wait(h) is None, "the replacing cycle published")
        # It dies again at once: the next wait is twice as long (0.8 s).
        h.fake.kill("web-0-2")
        await until(lambda: backoff_wait(h) is not None, "a second back-off note")
        wait = backoff_wait(h)
        assert wait is not None and wait > 0.4, wait
        await until(lambda: h.running("web") == ["web-0-3"], "web-0-3 up after the second back-off")
    run(body, tmp_path, backoff_first_s=0.4)


def test_group_status_has_cycle_summary_actions_and_last_change(tmp_path: Path) -> None:
    async def body(h: H) -> None:
        assert h.manager.group_status("web") is None
        await h.apply(WEB)
        await until(lambda: len(h.running("web")) == 3, "three instances")
        await until(lambda: (h.manager.group_status("web") or {}).get("actions") == [], "a quiet cycle")
        st = h.manager.group_status("web")
        assert st is not None
        assert isinstance(st["cycle"], int) and st["cycle"] >= 2
        assert st["term"] == h.rt.node.term == h.manager.active_term
        assert st["summary"] == "web: 3/3 available, 0 actions"
        assert st["notes"] == []
        last = st["last_change"]
        assert last is not None and last["cycle"] < st["cycle"]
        assert sorted((a["kind"], a["slot"], a["outcome"]) for a in last["actions"]) == \
               [("create", "0", "ok"), ("create", "1", "ok"), ("create", "2", "ok")]
        assert all(a["reason"] == f"slot {a['slot']}: empty; creating incarnation 1" for a in last["actions"])
        # The last change stays visible across quiet cycles.
        await cycles_pass(h, "web", 2)
        assert h.manager.group_status("web")["last_change"] == last  # type: ignore[index]
        assert h.manager.group_status("nope") is None
    run(body, tmp_path)


def test_instances_joins_provider_view_and_records(tmp_path: Path) -> None:
    async def prepare(fake: Fake) -> None:
        await launch(fake, "ghost", "0", 4)

    async def body(h: H) -> None:
        await h.apply({**WEB, "size": 2})
        await h.apply({"id": "managers", "logical_ids": ["n1"], "template": {"command": "quorate"}})
        await until(lambda: len(h.running("web")) == 2 and h.running("managers") == ["managers-n1-1"]
                    and h.record("managers", "n1") is not None, "web and managers up")
        web = await h.manager.instances("web")
        assert [(d["id"], d["slot"], d["tracked"], d["incarnation"], d["member_id"], d["provider"], d["state"])
                for d in web] == [("web-0-1", "0", True, 1, None, "fake", "running"),
                                  ("web-1-1", "1", True, 1, None, "fake", "running")]
        assert all(d["healthy"] is None and d["group"] == "web" for d in web)
        everything = await h.manager.instances(None)
        assert [d["id"] for d in everything] == ["ghost-0-4", "managers-n1-1", "web-0-1", "web-1-1"]
        by_id = {d["id"]: d for d in everything}
        assert by_id["managers-n1-1"]["member_id"] == "n1" and by_id["managers-n1-1"]["tracked"] is True
        assert by_id["ghost-0-4"]["tracked"] is False and by_id["ghost-0-4"]["member_id"] is None
        assert by_id["ghost-0-4"]["incarnation"] == 4
    run(body, tmp_path, prepare=prepare)


# -- safety rules ----------------------------------------------------------------------------


def test_instances_of_a_group_unknown_to_the_store_are_never_destroyed(tmp_path: Path) -> None:
    async def prepare(fake: Fake) -> None:
        await launch(fake, "ghost", "0", 1)
        await launch(fake, "ghost", "1", 1)
        await launch(fake, "ghost", "7", 3)
        fake.kill("ghost-7-3")

    async def body(h: H) -> None:
        await h.apply({**WEB, "size": 1})   # some other work, so cycles really run
        await until(lambda: h.running("web") == ["web-0-1"], "web up")
        await cycles_pass(h, "ghost", 5)
        assert h.fake.peek("ghost") == {"ghost-0-1": InstanceState.RUNNING, "ghost-1-1": InstanceState.RUNNING,
                                        "ghost-7-3": InstanceState.TERMINATED}
        assert [c for c in h.fake.mutations() if c[1] and c[1].startswith("ghost")] == []
        st = h.manager.group_status("ghost")
        assert st is not None
        assert st["summary"] == "ghost: unknown to the store"
        assert st["actions"] == []
        assert st["notes"] == ["3 instance(s) of group 'ghost' are not in the store; left alone "
                               "(apply the group's spec to adopt them)"]
        # Applying the spec adopts the live ones (no new instance) and clears the leftover.
        await h.apply({"id": "ghost", "size": 2, "template": {"command": "x"}})
        await until(lambda: h.record("ghost", "0") is not None and h.record("ghost", "1") is not None
                    and "ghost-7-3" not in h.fake.peek(), "ghost adopted")
        assert h.running("ghost") == ["ghost-0-1", "ghost-1-1"]
        assert [c[:2] for c in h.fake.mutations() if c[1] and c[1].startswith("ghost")] == \
               [("destroy", "ghost-7-3")]
    run(body, tmp_path, prepare=prepare)


@pytest.mark.parametrize("stored", [
    "not json {",
    json.dumps({"id": "bad", "size": -1, "template": {"command": "x"}}),
    json.dumps({"id": "bad", "size": 2, "template": {"command": "x"}, "from_a_newer_version": True}),
])
def test_an_invalid_stored_spec_leaves_that_group_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                         stored: str) -> None:
    caplog.set_level(logging.ERROR, logger="quorate.manager")

    async def prepare(fake: Fake) -> None:
        await launch(fake, "bad", "0", 1)

    async def body(h: H) -> None:
        await h.put(group_key("bad"), stored)
        await h.apply({**WEB, "size": 1})
        await until(lambda: h.running("web") == ["web-0-1"], "the valid group is served")
        await cycles_pass(h, "web", 5)
        assert h.fake.peek("bad") == {"bad-0-1": InstanceState.RUNNING}
        assert [c for c in h.fake.mutations() if c[1] and c[1].startswith("bad")] == []
        assert h.record("bad", "0") is None and h.record("bad", "1") is None
        errors = [r.getMessage() for r in caplog.records if "stored spec of group bad is invalid" in r.getMessage()]
        assert len(errors) == 1, errors  # said once, not every cycle
    run(body, tmp_path, prepare=prepare)


def test_a_group_whose_stored_spec_became_invalid_keeps_its_instances(tmp_path: Path) -> None:
    async def body(h: H) -> None:
        await h.apply({**WEB, "size": 2})
        await h.apply({"id": "other", "size": 1, "template": {"command": "x"}})
        await until(lambda: len(h.running("web")) == 2 and h.record("web", "1") is not None, "web up")
        # E.g. a newer version wrote a field this one does not know, or the value got corrupted.
        await h.put(group_key("web"), json.dumps({**WEB, "size": 2, "from_a_newer_version": True}))
        await cycles_pass(h, "other", 5)
        assert h.running("web") == ["web-0-1", "web-1-1"], "instances of an unreadable spec were destroyed"
        assert h.record("web", "0") is not None and h.record("web", "1") is not None
    run(body, tmp_path)


# -- when the controllers run ------------------------------------------------------------------


def test_controllers_wait_for_may_run(tmp_path: Path) -> None:
    allowed = False
    asked = 0

    def may_run() -> bool:
        nonlocal asked
        asked += 1
        return allowed

    async def body(h: H) -> None:
        nonlocal allowed
        await h.apply(WEB)
        # The manager has looked at leadership many times, and not started.
        await until(lambda: asked >= 8, "may_run asked repeatedly")
        assert h.manager.sessions_started == 0
        assert h.manager.active_term is None
        assert h.manager.group_status("web") is None
        assert h.fake.calls == []
        allowed = True
        await until(lambda: len(h.running("web")) == 3, "controllers started once allowed")
        assert h.manager.active_term == h.rt.node.term
        # Not allowed any more (e.g. recovery mode): the controllers stop.
        allowed = False
        await until(lambda: h.manager.active_term is None, "controllers stopped")
        h.fake.kill("web-0-1")
        seen = asked
        await until(lambda: asked >= seen + 8, "may_run asked repeatedly")
        assert h.fake.peek("web")["web-0-1"] is InstanceState.TERMINATED
        assert "web-0-2" not in h.fake.peek()
    run(body, tmp_path, may_run=may_run)


def test_a_failing_list_fails_the_cycle_with_a_warning_and_the_loop_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="quorate.manager")

    def failures() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and "reconcile cycle failed" in r.getMessage()]

    async def body(h: H) -> None:
        await h.apply(WEB)
        await until(lambda: len(h.running("web")) == 3, "three instances")
        h.fake.failing = True
        h.fake.kill("web-2-1")
        done = len(h.fake.mutations())
        await until(lambda: len(failures()) >= 3, "three failed cycles")
        assert all("injected list failure" in m for m in failures())
        assert len(h.fake.mutations()) == done, "acted without a listing"
        assert h.manager.active_term == h.rt.node.term  # the controllers still run
        h.fake.failing = False
        await until(lambda: h.running("web") == ["web-0-1", "web-1-1", "web-2-2"], "replaced after recovery")
        assert h.manager.sessions_started == 1   # the same loop went on, no restart
    run(body, tmp_path)


# -- shutdown ------------------------------------------------------------------------------------


def test_close_stops_everything_promptly(tmp_path: Path) -> None:
    async def body(h: H) -> None:
        await h.apply(WEB)
        await until(lambda: len(h.running("web")) == 3, "three instances")
        session = h.manager._session
        assert session is not None and not session.task.done()
        h.fake.create_delay_s = 30.0   # a provider call in flight when closing
        h.fake.kill("web-0-1")
        await until(lambda: any(c[0] == "create" and c[1] == "web-0-2" for c in h.fake.calls), "slow create")
        t0 = time.monotonic()
        h.task.cancel()
        await asyncio.gather(h.task, return_exceptions=True)
        await h.manager.close()
        assert time.monotonic() - t0 < 1.0
        assert session.task.done()
        assert h.manager.active_term is None
        assert h.manager.group_status("web") is None
        assert [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("controllers-")] == []
    run(body, tmp_path)


def test_close_while_run_is_active_keeps_the_controllers_stopped(tmp_path: Path) -> None:
    async def body(h: H) -> None:
        await h.apply(WEB)
        await until(lambda: len(h.running("web")) == 3, "three instances")
        sessions = h.manager.sessions_started
        await h.manager.close()
        await until(lambda: h.task.done(), "run() to return after close()")
        assert h.manager.sessions_started == sessions, "controllers started again after close()"
        assert h.manager.active_term is None
    run(body, tmp_path)


def test_cancelling_run_stops_the_controllers(tmp_path: Path) -> None:
    async def body(h: H) -> None:
        await h.apply(WEB)
        await until(lambda: len(h.running("web")) == 3, "three instances")
        session = h.manager._session
        assert session is not None
        h.task.cancel()
        await asyncio.gather(h.task, return_exceptions=True)
        await asyncio.wait({session.task}, timeout=0.3)   # room for a cancellation to land
        assert session.task.done(), "the controllers outlived run()"
    run(body, tmp_path)
