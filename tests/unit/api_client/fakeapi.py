"""A fake quorate API for the client and CLI tests: real aiohttp servers on
127.0.0.1 (port 0) in a background thread, answering scripted responses
and recording every request. Nothing here sleeps: a test that needs a
request to hang releases it explicitly, and every wait has a timeout."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

WAIT = 10.0  # seconds: the bound of every wait in these tests


@dataclass
class Seen:
    method: str
    path: str  # decoded
    raw_path: str  # as sent
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class Hang:
    """Answer nothing until the test ends (the client must time out)."""


class Drop:
    """Close the connection without answering."""


Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]] | Hang | Drop | Callable[[Seen], Any]


class FakeNode:
    def __init__(self, loop: asyncio.AbstractEventLoop, release: asyncio.Event) -> None:
        self._loop = loop
        self._release = release
        self._scripts: dict[tuple[str, str], list[Reply]] = {}
        self.seen: list[Seen] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    def on(self, method: str, path: str, *replies: Reply) -> FakeNode:
        """Answer ``method path`` with ``replies`` in turn; the last repeats."""
        self._scripts[(method, path)] = list(replies)
        return self

    def requests(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        return [s for s in self.seen if (method is None or s.method == method) and (path is None or s.path == path)]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        seen = Seen(request.method, request.path, request.raw_path.split("?")[0], dict(request.query),
                    dict(request.headers), body)
        self.seen.append(seen)
        script = self._scripts.get((request.method, request.path))
        if not script:
            return web.json_response({"error": "unscripted", "message": f"{request.method} {request.path}"},
                                     status=500)
        reply = script.pop(0) if len(script) > 1 else script[0]
        if callable(reply) and not isinstance(reply, (Hang, Drop)):
            reply = reply(seen)
        if isinstance(reply, Hang):
            await asyncio.wait_for(self._release.wait(), WAIT)
            return web.json_response({"error": "late", "message": "released"}, status=500)
        if isinstance(reply, Drop):
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        status, payload, *rest = reply
        headers = rest[0] if rest else None
        if isinstance(payload, str):
            return web.Response(text=payload, status=status, headers=headers)
        return web.json_response(payload, status=status, headers=headers)


class FakeCluster:
    """Fake nodes sharing one event loop thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fake-api", daemon=True)
        self._thread.start()
        self._release = self._call(self._make_event())
        self.nodes: list[FakeNode] = []

    async def _make_event(self) -> asyncio.Event:
        return asyncio.Event()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    def node(self) -> FakeNode:
        n = FakeNode(self.loop, self._release)
        self._call(n.start())
        self.nodes.append(n)
        return n

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._release.set)
        for n in self.nodes:
            self._call(n.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT)
        self.loop.close()


class FakeSleep:
    """Records the client's pauses and advances a fake clock instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.now

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


STATUS = {"id": "n1", "role": "leader", "term": 3, "leader": "n1", "commit_index": 42, "applied_index": 42,
          "voters": ["n1", "n2", "n3"], "learners": [], "quorum": True, "problems": []}


def kv_json(key: str, value: str, rev: int = 5) -> dict[str, Any]:
    return {"key": key, "value": value, "create_revision": rev, "mod_revision": rev, "version": 1}


def members_json(*nodes: tuple[str, str]) -> list[dict[str, Any]]:
    """[(id, api url)] -> the /v1/members answer."""
    return [{"id": i, "peer_addr": f"127.0.0.1:{7001 + n}", "api_addr": url.split("://")[1], "role": "voter",
             "health": "alive", "last_contact_ms": 5} for n, (i, url) in enumerate(nodes)]
