"""Several real node runtimes (``RaftRuntime``) in one event loop, wired by
an in-memory network, on memory storage.

Between the pure-core harness (``testing.cluster``, no clock) and real
processes: the runtimes tick on the real clock and run their real Ready
loops, apply loops and leadership observers, so the manager and anything
else that sits on a runtime can be driven through hundreds of leadership
changes in a few seconds, in-process, with every node inspectable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from quorate.raft import Message, NodeId, RaftConfig
from quorate.runtime.raft_loop import Leadership, RaftRuntime
from quorate.runtime.state_machine import MemberInfo
from quorate.testing.memory_storage import MemoryStorage


class LoopCluster:
    def __init__(self, ids: list[NodeId], *, tick_s: float = 0.005, election_ticks: int = 10,
                 request_timeout: float = 2.0) -> None:
        self.ids = list(ids)
        self.down: set[NodeId] = set()
        infos = {n: MemberInfo(f"mem:{n}", f"127.0.0.1:{1 + i}") for i, n in enumerate(ids)}
        self.storage = {n: MemoryStorage() for n in ids}
        self.losses: dict[NodeId, int] = {n: 0 for n in ids}   # every loss of leadership, counted at the source
        self.runtimes: dict[NodeId, RaftRuntime] = {}
        for n in ids:
            rt = RaftRuntime(n, RaftConfig(election_ticks=election_ticks, heartbeat_ticks=1, pre_vote=True,
                                           check_quorum=True),
                             self.storage[n], self._sender(n), self_info=infos[n], tick_seconds=tick_s,
                             election_timeout_s=tick_s * election_ticks, request_timeout=request_timeout,
                             bootstrap=infos)
            self._count_losses(rt)
            self.runtimes[n] = rt

    def _count_losses(self, rt: RaftRuntime) -> None:
        original: Callable[[Leadership], None] = rt.leadership.set

        def set_and_count(value: Leadership) -> None:
            if rt.leadership.value.is_leader and not value.is_leader:
                self.losses[rt.id] += 1
            original(value)

        rt.leadership.set = set_and_count  # type: ignore[method-assign]

    def _sender(self, src: NodeId) -> Callable[[Message], None]:
        def send(msg: Message) -> None:
            dst = msg.to
            if src in self.down or dst in self.down or dst not in self.runtimes:
                return
            asyncio.get_running_loop().call_soon(self._deliver, dst, msg)
        return send

    def _deliver(self, dst: NodeId, msg: Message) -> None:
        if dst not in self.down:
            self.runtimes[dst].step(msg)

    async def start(self) -> None:
        for rt in self.runtimes.values():
            await rt.start()

    async def stop(self) -> None:
        for rt in self.runtimes.values():
            await rt.stop()

    def leader(self) -> RaftRuntime | None:
        leaders = [rt for n, rt in self.runtimes.items() if n not in self.down and rt.is_leader]
        return max(leaders, key=lambda rt: rt.node.term) if leaders else None

    async def wait_leader(self, timeout: float = 10.0, not_in: frozenset[NodeId] = frozenset()) -> RaftRuntime:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rt = self.leader()
            if rt is not None and rt.id not in not_in and rt.sm.applied_index >= rt.node.commit_index:
                return rt
            await asyncio.sleep(0.002)
        raise TimeoutError(f"no leader (outside {sorted(not_in)}) within {timeout}s")
