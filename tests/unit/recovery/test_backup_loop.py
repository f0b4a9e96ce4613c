"""The backup loop on an in-process store: counters from a compare-and-set,
what sets the dirty flag, and a change made during a backup landing in the
next one (seed 002: the flag is cleared when a backup starts)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from fakes import FakeRuntime, FakeWriter, SharedStore

from quorate.kv import Put
from quorate.recovery.backup_file import BackupDir, read
from quorate.recovery.backup_loop import BackupLoop
from quorate.recovery.keys import COUNTER_KEY

WAIT = 10.0


def setup(tmp_path: Path, store: SharedStore | None = None, writer: FakeWriter | None = None,
          **kw: object) -> tuple[SharedStore, FakeRuntime, BackupDir, BackupLoop]:
    store = store or SharedStore()
    rt = FakeRuntime(store, "n1", ["n1"])
    backups = BackupDir(tmp_path / "b", keep=50)
    settings: dict = {"interval_s": 3600.0, "min_gap_s": 0.0, **kw}  # type: ignore[type-arg]
    loop = BackupLoop(rt, writer or FakeWriter(store), backups, cluster_id="c1", **settings)
    return store, rt, backups, loop


async def until(what: str, check, timeout: float = WAIT) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


def test_a_backup_takes_a_counter_and_holds_only_backed_up_keys(tmp_path: Path) -> None:
    async def main() -> None:
        store, rt, backups, loop = setup(tmp_path)
        store.put("app/a", "1")
        store.put("_quorate/members/n1", '{"peer_addr": "x:1", "api_addr": "x:2"}')
        store.put("_quorate/recovery/offers/n9", "{}")
        h1 = await loop.backup_once()
        h2 = await loop.backup_once()
        assert (h1.counter, h2.counter) == (1, 2) and store.value(COUNTER_KEY) == "2"
        b = read(backups.entries()[-1][1])
        assert b.items() == [("app/a", "1")]
        assert b.header.node == "n1" and b.header.cluster_id == "c1" and b.header.raft_index == store.index

    asyncio.run(main())


def test_the_counter_is_a_compare_and_set_retried_when_another_node_took_one(tmp_path: Path) -> None:
    async def main() -> None:
        store = SharedStore()
        raced = []

        async def other_node_first(cmd: Put) -> None:  # type: ignore[override]
            if cmd.key == COUNTER_KEY and not raced:
                raced.append(True)
                store.put(COUNTER_KEY, "1")  # another node takes counter 1 under our feet

        _, _, _, loop = setup(tmp_path, store, FakeWriter(store, other_node_first))
        h = await loop.backup_once()
        assert h.counter == 2 and store.value(COUNTER_KEY) == "2" and raced

    asyncio.run(main())


def test_bookkeeping_writes_never_make_a_backup_dirty(tmp_path: Path) -> None:
    async def main() -> None:
        store, rt, backups, loop = setup(tmp_path, dirty=False)
        await loop.backup_once()
        store.put(COUNTER_KEY, "77")
        store.put("_quorate/members/n2", "{}")
        store.put("_quorate/recovery/offers/n2", "{}")
        assert not loop.scan()
        store.put("_quorate/groups/web", "spec")  # quorate's own state is backed up
        assert loop.scan()

    asyncio.run(main())


def test_lost_history_counts_as_a_change(tmp_path: Path) -> None:
    async def main() -> None:
        store, rt, backups, loop = setup(tmp_path, dirty=False)
        await loop.backup_once()
        store.put(COUNTER_KEY, "9")
        store.sm.history.reset(store.sm.kv.revision)  # as after installing a snapshot
        assert loop.scan()

    asyncio.run(main())


class PausingDir(BackupDir):
    """Blocks inside the first file write until released."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, keep=50)
        self.writing = threading.Event()
        self.release = threading.Event()

    def write(self, header, rows):  # type: ignore[no-untyped-def]
        if not self.writing.is_set():
            self.writing.set()
            assert self.release.wait(WAIT)
        return super().write(header, rows)


def test_a_change_made_during_a_backup_is_in_the_next_one(tmp_path: Path) -> None:
    async def main() -> None:
        store = SharedStore()
        rt = FakeRuntime(store, "n1", ["n1"])
        backups = PausingDir(tmp_path)
        loop = BackupLoop(rt, FakeWriter(store), backups, cluster_id="c1", interval_s=3600.0, min_gap_s=0.0)
        store.put("app/k", "before")
        task = asyncio.create_task(loop.run())
        await until("the first backup to be writing its file", backups.writing.is_set)
        store.put("app/k", "during")  # the snapshot is taken; the file is being written
        backups.release.set()
        await until("two backups", lambda: len(backups.entries()) >= 2)
        await until("the loop to settle", lambda: not loop.dirty)
        first, second = (read(p) for _, p in backups.entries()[:2])
        assert first.items() == [("app/k", "before")]
        assert second.items() == [("app/k", "during")]
        assert second.counter > first.counter
        await asyncio.sleep(0.05)
        assert len(backups.entries()) == 2, "no change after the second backup, so no third one"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_a_clean_start_waits_for_a_change_or_the_interval(tmp_path: Path) -> None:
    async def main() -> None:
        store, rt, backups, loop = setup(tmp_path, dirty=False, interval_s=3600.0)
        task = asyncio.create_task(loop.run())
        await asyncio.sleep(0.05)
        assert backups.entries() == [] and store.value(COUNTER_KEY) is None
        store.put("app/x", "1")
        await until("a backup after the change", lambda: backups.entries())
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_the_interval_backs_up_an_unchanged_store(tmp_path: Path) -> None:
    async def main() -> None:
        store, rt, backups, loop = setup(tmp_path, dirty=False, interval_s=0.02)
        task = asyncio.create_task(loop.run())
        await until("three backups", lambda: len(backups.entries()) >= 3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_a_failed_backup_is_retried(tmp_path: Path) -> None:
    async def main() -> None:
        store = SharedStore()
        failures = []

        async def fail_once(cmd: Put) -> None:  # type: ignore[override]
            if not failures:
                failures.append(1)
                raise RuntimeError("disk on fire")

        _, rt, backups, loop = setup(tmp_path, store, FakeWriter(store, fail_once))
        task = asyncio.create_task(loop.run())
        await until("a backup after the failure", lambda: backups.entries(), timeout=WAIT)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_failing_backups_are_reported_in_the_status(tmp_path: Path) -> None:
    from quorate.recovery.service import Phase, RecoveryService

    async def main() -> None:
        store = SharedStore()
        rt = FakeRuntime(store, "n1", ["n1"])
        blocked = tmp_path / "backups"
        svc = RecoveryService(rt, FakeWriter(store), BackupDir(blocked), cluster_id="c1",  # type: ignore[arg-type]
                              backup_interval_s=3600.0, min_gap_s=0.0)
        task = asyncio.create_task(svc.run())
        await until("normal mode", lambda: svc.phase.value is Phase.NORMAL)
        blocked.write_text("a file where the backup dir should be")
        store.put("app/x", "1")
        await until("a failed backup", lambda: svc.loop is not None and svc.loop.last_error)
        problems = svc.adjust_status({"problems": []})["problems"]
        assert any("backups" in p and "failing" in p for p in problems), problems
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
