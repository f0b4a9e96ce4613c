"""Recovery mode and the node's phases on an in-process store shared by
fake nodes: offers, the operator's or the automatic choice, the restore
(every key, the counter last, then completion), orphans, and the edge
cases of seed 002."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request
from fakes import FakeRuntime, FakeWriter, SharedStore

from quorate.errors import RecoveryMode, Starting
from quorate.recovery.backup_file import Backup, BackupDir, BackupHeader
from quorate.recovery.keys import COMPLETE_KEY, COUNTER_KEY, OFFERS_PREFIX, PROCEED_KEY
from quorate.recovery.mode import RecoveryRun, recovery_view
from quorate.recovery.service import Phase, RecoveryService
from quorate.recovery.startup import Action

WAIT = 10.0
VOTERS = ["n1", "n2", "n3"]


def backup(counter: int, items: dict[str, str], node: str = "n1") -> Backup:
    rows = tuple((k, v, i + 1, i + 1, 1) for i, (k, v) in enumerate(sorted(items.items())))
    return Backup(BackupHeader(counter, 1000.0 + counter, "c1", 10, node, len(rows), len(rows)), rows)


async def until(check, timeout: float = WAIT) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


def run_of(store: SharedStore, node: str, b: Backup | None, auto: float | None = None) -> RecoveryRun:
    return RecoveryRun(FakeRuntime(store, node, VOTERS), FakeWriter(store), b, auto_after_s=auto)  # type: ignore[arg-type]


def test_operator_choice_restores_every_key_then_the_counter_then_completion() -> None:
    async def main() -> None:
        store = SharedStore()
        runs = [run_of(store, "n1", backup(5, {"a": "1", "b": "2"})),
                run_of(store, "n2", backup(7, {"a": "1", "b": "3", "c": "4"}, "n2")),
                run_of(store, "n3", None)]
        tasks = [asyncio.create_task(r.run()) for r in runs]
        await until(lambda: len(recovery_view(runs[0].rt).offers) == 3)
        view = recovery_view(runs[0].rt)
        assert [(o.node, o.counter) for o in view.offers] == [("n1", 5), ("n2", 7), ("n3", None)]
        assert view.suggested() is not None and view.suggested().node == "n2"  # type: ignore[union-attr]
        store.written.clear()
        store.put(PROCEED_KEY, "n2")
        done = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        assert {(c.node, c.counter) for c in done} == {("n2", 7)}
        assert [store.value(k) for k in ("a", "b", "c")] == ["1", "3", "4"]
        assert store.value(COUNTER_KEY) == "7"
        order = [k for k in store.written if not k.startswith(OFFERS_PREFIX)]
        assert order[-2:] == [COUNTER_KEY, COMPLETE_KEY], order
        assert set(order[1:-2]) == {"a", "b", "c"}

    asyncio.run(main())


def test_auto_recover_proceeds_with_the_highest_counter_once_every_voter_offered() -> None:
    async def main() -> None:
        store = SharedStore()
        runs = [run_of(store, "n1", backup(5, {"a": "old"}), auto=3600.0),
                run_of(store, "n2", backup(9, {"a": "new"}, "n2"), auto=3600.0),
                run_of(store, "n3", None, auto=3600.0)]
        done = await asyncio.wait_for(asyncio.gather(*(r.run() for r in runs)), WAIT)
        assert {c.node for c in done} == {"n2"} and store.value("a") == "new"

    asyncio.run(main())


def test_auto_recover_after_the_delay_when_a_voter_never_offers() -> None:
    async def main() -> None:
        store = SharedStore()
        runs = [run_of(store, "n1", backup(5, {"a": "x"}), auto=0.2), run_of(store, "n2", None, auto=0.2)]
        done = await asyncio.wait_for(asyncio.gather(*(r.run() for r in runs)), WAIT)
        assert {c.node for c in done} == {"n1"} and store.value(PROCEED_KEY) == "n1"

    asyncio.run(main())


def test_without_auto_recover_nothing_proceeds_by_itself() -> None:
    async def main() -> None:
        store = SharedStore()
        task = asyncio.create_task(run_of(store, "n1", backup(5, {"a": "x"})).run())
        await asyncio.sleep(0.3)
        assert not task.done() and store.value(PROCEED_KEY) is None and store.value("a") is None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_the_chosen_node_restarted_mid_restore_finishes_it() -> None:
    async def main() -> None:
        store = SharedStore()
        store.put(OFFERS_PREFIX + "n1", '{"counter": 5, "wall_time": 1005.0}')
        store.put(PROCEED_KEY, "n1")
        store.put("a", "1")  # half restored before the crash
        store.written.clear()
        done = await asyncio.wait_for(run_of(store, "n1", backup(5, {"a": "1", "b": "2"})).run(), WAIT)
        assert done.node == "n1" and store.value("b") == "2"
        assert "a" not in store.written, "a key already holding its value is not written again"

    asyncio.run(main())


# -- the service: phases, orphans, the gate -----------------------------------------


def service(store: SharedStore, node: str, tmp_path: Path, **kw: object) -> RecoveryService:
    rt = FakeRuntime(store, node, VOTERS)
    svc = RecoveryService(rt, FakeWriter(store), BackupDir(tmp_path / node), cluster_id="c1",  # type: ignore[arg-type]
                          backup_interval_s=3600.0, min_gap_s=0.0, **kw)  # type: ignore[arg-type]
    svc.refuse_linger_s = 0.0
    return svc


def seed_backup(tmp_path: Path, node: str, b: Backup) -> None:
    BackupDir(tmp_path / node).write(b.header, b.rows)


def test_recovery_then_normal_mode_with_the_newer_backup_kept_as_an_orphan(tmp_path: Path) -> None:
    async def main() -> None:
        store = SharedStore()
        seed_backup(tmp_path, "n1", backup(5, {"a": "older"}))
        seed_backup(tmp_path, "n2", backup(9, {"a": "newer"}, "n2"))
        s1, s2 = service(store, "n1", tmp_path), service(store, "n2", tmp_path)
        # One after the other, so each decision is known: n1 finds only its own
        # backup (case 3); n2 then finds a recovery under way and joins it.
        tasks = [asyncio.create_task(s1.run())]
        await until(lambda: s1.phase.value is Phase.RECOVERY)
        tasks.append(asyncio.create_task(s2.run()))
        await until(lambda: s2.phase.value is Phase.RECOVERY)
        await until(lambda: len(recovery_view(s1.rt).offers) == 2)
        store.put(PROCEED_KEY, "n1")  # the operator picks the older one
        await until(lambda: s1.phase.value is Phase.NORMAL and s2.phase.value is Phase.NORMAL)
        assert store.value("a") == "older"
        orphans = s2.backups.orphans()
        assert len(orphans) == 1 and "orphan-000000000009-" in orphans[0].name
        # Both back up the restored state at once, above the restored counter.
        await until(lambda: s1.backups.entries()[-1][0] > 5 and s2.backups.entries())
        assert s2.backups.newest().items() == [("a", "older")]  # type: ignore[union-attr]
        assert s1.decision is not None and s1.decision.case == 3
        assert s2.decision is not None and s2.decision.action is Action.RECOVERY
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def test_a_node_that_decided_normal_joins_a_recovery_that_starts_after(tmp_path: Path) -> None:
    async def main() -> None:
        store = SharedStore()
        s3 = service(store, "n3", tmp_path)  # no backup: case 1 on the empty store
        t3 = asyncio.create_task(s3.run())
        await until(lambda: s3.phase.value is Phase.NORMAL)
        assert s3.decision is not None and s3.decision.case == 1
        seed_backup(tmp_path, "n1", backup(4, {"k": "v"}))
        s1 = service(store, "n1", tmp_path)
        t1 = asyncio.create_task(s1.run())
        await until(lambda: s3.phase.value is Phase.RECOVERY)
        await until(lambda: recovery_view(s1.rt).offer("n3") is not None)
        store.put(PROCEED_KEY, "n1")
        await until(lambda: s1.phase.value is Phase.NORMAL and s3.phase.value is Phase.NORMAL)
        assert store.value("k") == "v"
        for t in (t1, t3):
            t.cancel()
        await asyncio.gather(t1, t3, return_exceptions=True)

    asyncio.run(main())


def test_a_rolled_back_store_is_refused_or_accepted(tmp_path: Path) -> None:
    async def main() -> None:
        store = SharedStore()
        store.put(COUNTER_KEY, "3")
        seed_backup(tmp_path, "n1", backup(8, {"k": "v"}))
        refused: list[str] = []
        s = service(store, "n1", tmp_path, on_refuse=refused.append)
        await asyncio.wait_for(s.run(), WAIT)
        assert s.phase.value is Phase.REFUSED and "rolled back" in refused[0]
        accepting = service(store, "n1", tmp_path, accept_rollback=True)
        task = asyncio.create_task(accepting.run())
        await until(lambda: accepting.phase.value is Phase.NORMAL)
        assert [p.name[:20] for p in accepting.backups.orphans()] == ["orphan-000000000008-"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


@pytest.mark.parametrize(("method", "path", "served"), [
    ("GET", "/v1/status", True), ("GET", "/v1/health", True), ("GET", "/metrics", True),
    ("GET", "/v1/recovery", True), ("POST", "/v1/recovery/proceed", True), ("GET", "/v1/members", True),
    ("POST", "/v1/internal/propose", True), ("PUT", "/v1/kv/_quorate/members/n1", True),
    ("GET", "/v1/kv?prefix=_quorate/recovery/", True),
    ("PUT", "/v1/kv/app/x", False), ("GET", "/v1/kv/app/x", False), ("DELETE", "/v1/kv/app/x", False),
    ("GET", "/v1/kv?prefix=", False), ("GET", "/v1/watch?prefix=app/", False), ("POST", "/v1/members", False),
    ("DELETE", "/v1/members/n2", False), ("POST", "/v1/leader/transfer", False), ("GET", "/v1/backup", False),
    ("POST", "/v1/backup/restore", False),
])
def test_the_gate_in_recovery_mode(method: str, path: str, served: bool, tmp_path: Path) -> None:
    async def main() -> None:
        svc = service(SharedStore(), "n1", tmp_path)
        svc.phase.set(Phase.RECOVERY)
        request = make_mocked_request(method, path)
        if served:
            await svc.admit(request)
        else:
            with pytest.raises(RecoveryMode) as exc:
                await svc.admit(request)
            assert "quorate recovery status" in exc.value.message and "proceed" in exc.value.message
        st = svc.adjust_status({"role": "leader", "problems": []})
        assert st["role"] == "recovery" and "quorate recovery proceed" in st["problems"][0]
        assert not svc.healthy()

    asyncio.run(main())


def test_the_gate_while_starting_waits_for_the_decision(tmp_path: Path) -> None:
    async def main() -> None:
        svc = service(SharedStore(), "n1", tmp_path)
        svc.rt.request_timeout = 0.05  # type: ignore[misc]
        with pytest.raises(Starting):
            await svc.admit(make_mocked_request("PUT", "/v1/kv/a"))
        waiting = asyncio.create_task(svc.admit(make_mocked_request("PUT", "/v1/kv/a")))
        await asyncio.sleep(0)
        svc.phase.set(Phase.NORMAL)
        await asyncio.wait_for(waiting, WAIT)
        assert "starting" not in str(svc.adjust_status({"problems": []}))

    asyncio.run(main())
