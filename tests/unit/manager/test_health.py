"""HealthTracker.probe_due against real servers on 127.0.0.1 (an HTTP server
that can answer 200, answer 500 or hang, and a plain TCP listener)."""

from __future__ import annotations

import asyncio
import socket
import time
import types
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from quorate.manager import health as health_mod
from quorate.manager.health import HealthTracker

TIMEOUT = 0.2
LONG_AGO = 0.0          # a start period that ended at the epoch


class HttpServer:
    """A minimal HTTP/1.1 server: ``mode`` is "ok" (200), "fail" (500) or
    "hang" (reads the request, never answers)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            if self.mode == "hang":
                await asyncio.Event().wait()
            status = "200 OK" if self.mode == "ok" else "500 Internal Server Error"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
            self._handlers.discard(task)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._handlers):
            t.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for w in list(self._writers):
            w.close()
        if self._server is not None:
            await self._server.wait_closed()


def run(test: Callable[[HttpServer], Awaitable[None]]) -> None:
    """Run ``test`` with a started server, always closing it; bounded."""
    async def main() -> None:
        server = HttpServer()
        await server.start()
        try:
            await asyncio.wait_for(test(server), timeout=10)
        finally:
            await server.close()
    asyncio.run(main())


def http(server: HttpServer, iid: str = "web-0-1", *, interval: float = 0.0, timeout: float = TIMEOUT,
         start_period_end: float = LONG_AGO) -> tuple[str, dict[str, Any], float, float, float]:
    return (iid, {"type": "http", "url": server.url}, interval, timeout, start_period_end)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- http -------------------------------------------------------------------------------


def test_unhealthy_only_after_threshold_consecutive_failures_and_success_resets() -> None:
    async def body(server: HttpServer) -> None:
        h = HealthTracker()
        target = [http(server)]
        assert h.healthy("web-0-1") is None
        await h.probe_due(target)
        assert server.requests == 1
        assert h.healthy("web-0-1") is True
        assert not h.unhealthy("web-0-1", 1)
        assert h.last_error("web-0-1") == ""

        server.mode = "fail"
        for n in (1, 2):
            await h.probe_due(target)
            assert h.healthy("web-0-1") is False
            assert h.unhealthy("web-0-1", n)
            assert not h.unhealthy("web-0-1", 3), f"unhealthy after only {n} failure(s)"
        assert h.last_error("web-0-1") == f"HTTP 500 from {server.url}"
        await h.probe_due(target)
        assert h.unhealthy("web-0-1", 3)
        assert server.requests == 4

        # One success resets the count: two more failures are not three in a row.
        server.mode = "ok"
        await h.probe_due(target)
        assert h.healthy("web-0-1") is True
        assert not h.unhealthy("web-0-1", 1)
        assert h.last_error("web-0-1") == ""
        server.mode = "fail"
        await h.probe_due(target)
        await h.probe_due(target)
        assert not h.unhealthy("web-0-1", 3)
        await h.probe_due(target)
        assert h.unhealthy("web-0-1", 3)
    run(body)


def test_hanging_server_fails_by_timeout_within_the_timeout() -> None:
    async def body(server: HttpServer) -> None:
        server.mode = "hang"
        h = HealthTracker()
        t0 = time.monotonic()
        await h.probe_due([http(server)])
        elapsed = time.monotonic() - t0
        assert server.requests == 1  # it did reach the server, which never answered
        assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 0.8, elapsed
        assert h.healthy("web-0-1") is False
        assert h.last_error("web-0-1") == f"no answer within {TIMEOUT:g}s"
    run(body)


def test_targets_are_probed_at_once_each_bounded_by_its_timeout() -> None:
    async def body(server: HttpServer) -> None:
        server.mode = "hang"
        h = HealthTracker()
        targets = [http(server, f"web-{i}-1") for i in range(5)]
        t0 = time.monotonic()
        await h.probe_due(targets)
        elapsed = time.monotonic() - t0
        assert server.requests == 5
        assert elapsed < 2 * TIMEOUT + 0.5, f"five hanging probes took {elapsed:.2f}s: not concurrent"
        assert all(h.healthy(f"web-{i}-1") is False for i in range(5))
    run(body)


def test_connection_refused_is_a_failure() -> None:
    async def body(server: HttpServer) -> None:
        h = HealthTracker()
        url = f"http://127.0.0.1:{free_port()}/health"
        t0 = time.monotonic()
        await h.probe_due([("web-0-1", {"type": "http", "url": url}, 0.0, 5.0, LONG_AGO)])
        assert time.monotonic() - t0 < 2.0
        assert h.healthy("web-0-1") is False
        assert "ClientConnectorError" in h.last_error("web-0-1")
    run(body)


# -- tcp --------------------------------------------------------------------------------


def test_tcp_check_passes_on_a_listening_socket_and_fails_on_a_closed_port() -> None:
    async def body(server: HttpServer) -> None:
        h = HealthTracker()
        closed = free_port()
        await h.probe_due([
            ("up-0-1", {"type": "tcp", "host": "127.0.0.1", "port": server.port}, 0.0, TIMEOUT, LONG_AGO),
            ("down-0-1", {"type": "tcp", "host": "127.0.0.1", "port": closed}, 0.0, TIMEOUT, LONG_AGO),
        ])
        assert h.healthy("up-0-1") is True
        assert h.last_error("up-0-1") == ""
        assert h.healthy("down-0-1") is False
        assert "ConnectionRefusedError" in h.last_error("down-0-1")
        assert server.requests == 0  # a tcp check only connects
    run(body)


def test_tcp_check_counts_failures_like_http() -> None:
    async def body(server: HttpServer) -> None:
        h = HealthTracker()
        target = [("db-0-1", {"type": "tcp", "host": "127.0.0.1", "port": free_port()}, 0.0, TIMEOUT, LONG_AGO)]
        await h.probe_due(target)
        await h.probe_due(target)
        assert h.unhealthy("db-0-1", 2) and not h.unhealthy("db-0-1", 3)
    run(body)


# -- when to probe ------------------------------------------------------------------------


def test_instance_within_start_period_is_not_probed() -> None:
    async def body(server: HttpServer) -> None:
        server.mode = "fail"
        h = HealthTracker()
        starting = http(server, start_period_end=time.time() + 60)
        for _ in range(3):
            await h.probe_due([starting])
        assert server.requests == 0
        assert h.healthy("web-0-1") is None
        assert not h.unhealthy("web-0-1", 1)
        # Once the start period is over it is probed.
        await h.probe_due([http(server, start_period_end=time.time() - 0.001)])
        assert server.requests == 1
        assert h.healthy("web-0-1") is False
    run(body)


def test_process_checks_are_never_probed() -> None:
    async def body(server: HttpServer) -> None:
        h = HealthTracker()
        await h.probe_due([("web-0-1", {"type": "process", "host": "127.0.0.1"}, 0.0, TIMEOUT, LONG_AGO)])
        assert h.healthy("web-0-1") is None
        assert server.requests == 0
    run(body)


def test_interval_is_respected() -> None:
    async def body(server: HttpServer) -> None:
        h = HealthTracker()
        slow = [http(server, interval=60.0)]
        await h.probe_due(slow)
        assert server.requests == 1
        server.mode = "fail"
        await h.probe_due(slow)
        await h.probe_due(slow)
        assert server.requests == 1, "probed again before the interval passed"
        assert h.healthy("web-0-1") is True
        # A short interval: due again once it has passed.
        fast = [http(server, interval=0.05)]
        deadline = time.monotonic() + 5
        while server.requests == 1 and time.monotonic() < deadline:
            await h.probe_due(fast)
            await asyncio.sleep(0.01)
        assert server.requests == 2
        assert h.healthy("web-0-1") is False
    run(body)


def test_first_probe_is_due_whatever_the_monotonic_clock_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    # A monotonic clock that reads 5 s (a host that booted 5 s ago), patched in health.py only.
    monkeypatch.setattr(health_mod, "time", types.SimpleNamespace(monotonic=lambda: 5.0, time=time.time))

    async def body(server: HttpServer) -> None:
        h = HealthTracker()
        await h.probe_due([http(server, interval=30.0)])
        assert server.requests == 1, "an instance never probed was not probed"
    run(body)


def test_forget_except_drops_records() -> None:
    async def body(server: HttpServer) -> None:
        server.mode = "fail"
        h = HealthTracker()
        await h.probe_due([http(server, "a"), http(server, "b"), http(server, "c")])
        assert {h.healthy(i) for i in "abc"} == {False}
        h.forget_except({"a", "zzz"})
        assert h.healthy("a") is False and h.unhealthy("a", 1)
        for gone in "bc":
            assert h.healthy(gone) is None
            assert not h.unhealthy(gone, 1)
            assert h.last_error(gone) == ""
        # A forgotten instance starts counting afresh.
        await h.probe_due([http(server, "b")])
        assert h.unhealthy("b", 1) and not h.unhealthy("b", 2)
        h.forget_except(set())
        assert h.healthy("a") is None
    run(body)
