"""One real node in-process: the Raft runtime on memory storage plus the
HTTP API, served on 127.0.0.1 (port 0) from a background event loop.

With one voter it elects itself within a few ticks, so the API's leader
paths (proposals, read barriers) run for real; with a second voter that
never answers it stays leaderless, for the paths taken without a leader."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from aiohttp import web

from quorate.api.groups import ManagerView
from quorate.api.server import Api
from quorate.raft import RaftConfig
from quorate.runtime.raft_loop import RaftRuntime
from quorate.runtime.state_machine import MemberInfo
from quorate.testing.memory_storage import MemoryStorage

T = TypeVar("T")
WAIT = 10.0


class LiveNode:
    def __init__(self, *, voters: Sequence[str] = ("n1",), manager: ManagerView | None = None) -> None:
        self.id = voters[0]
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="live-node", daemon=True)
        self._thread.start()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        info = MemberInfo("127.0.0.1:1", f"127.0.0.1:{port}")
        self.rt = RaftRuntime(self.id, RaftConfig(election_ticks=5), MemoryStorage(), lambda m: None,
                              self_info=info, tick_seconds=0.01, election_timeout_s=0.05, request_timeout=2.0,
                              bootstrap={v: info if v == self.id else MemberInfo("127.0.0.1:2", "") for v in voters})
        self.api = Api(self.rt, manager=manager)
        self._runner: web.AppRunner | None = None
        self.call(self._start())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    async def _start(self) -> None:
        await self.rt.start()
        self._runner = web.AppRunner(self.api.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    def wait_leader(self) -> None:
        deadline = time.monotonic() + WAIT
        while not self.rt.is_leader:
            assert time.monotonic() < deadline, "the single node did not elect itself"
            time.sleep(0.01)

    def keys(self, prefix: str) -> dict[str, str]:
        """The store's keys under ``prefix`` (read on the node's loop)."""

        async def read() -> dict[str, str]:
            return {kv.key: kv.value for kv in self.rt.sm.kv.list_prefix(prefix)}

        return self.call(read())

    def close(self) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            await self.rt.stop()

        self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT)
        self.loop.close()
