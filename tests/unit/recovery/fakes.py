"""In-process stand-ins for the runtime and the internal writer: several
fake nodes share one state machine (a store every node sees at once), so
the backup loop and recovery mode run deterministically and fast."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

from quorate.kv import Delete, Put, encode_command
from quorate.raft.types import Entry
from quorate.recovery.writer import WriteOutcome
from quorate.runtime.metrics import NodeMetrics
from quorate.runtime.observer import LatestValue
from quorate.runtime.state_machine import StateMachine


class SharedStore:
    def __init__(self) -> None:
        self.sm = StateMachine()
        self.applied: LatestValue[int] = LatestValue(0)
        self.index = 0
        #: Every key written, in order.
        self.written: list[str] = []

    def apply(self, cmd: Put | Delete) -> object:
        self.index += 1
        result = self.sm.apply(Entry(1, self.index, data=encode_command(cmd)))
        self.written.append(cmd.key)
        self.applied.set(self.index)
        return result

    def put(self, key: str, value: str) -> None:
        self.apply(Put(key, value))

    def value(self, key: str) -> str | None:
        kv = self.sm.kv.get(key)
        return kv.value if kv else None


class FakeRuntime:
    request_timeout = 5.0
    election_timeout_s = 0.01

    def __init__(self, store: SharedStore, node_id: str, voters: list[str]) -> None:
        self.store = store
        self.id = node_id
        self.node = SimpleNamespace(conf=SimpleNamespace(voters=set(voters)))
        self.metrics = NodeMetrics()
        self.leadership = LatestValue(None)

    @property
    def sm(self) -> StateMachine:
        return self.store.sm

    @property
    def applied(self) -> LatestValue[int]:
        return self.store.applied

    async def read_barrier(self) -> int:
        await asyncio.sleep(0)
        return self.store.index


class FakeWriter:
    """Applies writes to the shared store; ``before`` runs before each one."""

    def __init__(self, store: SharedStore, before: Callable[[Put | Delete], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.before = before

    async def put(self, key: str, value: str, prev_revision: int | None = None) -> WriteOutcome:
        cmd = Put(key, value, prev_revision)
        if self.before is not None:
            await self.before(cmd)
        await asyncio.sleep(0)
        return WriteOutcome.from_result(self.store.apply(cmd))

    async def delete(self, key: str) -> WriteOutcome:
        await asyncio.sleep(0)
        return WriteOutcome.from_result(self.store.apply(Delete(key)))

    async def close(self) -> None:
        pass
