"""Load generators on plain HTTP/1.1 keep-alive connections (asyncio streams).

The same thin client drives every system's HTTP front (quorate's API, etcd's
gRPC-JSON gateway, the PySyncObj node's front), so the generator costs the
same per request whichever system is measured. quorate's own Python client
is measured separately (``client_closed_loop``).

- ``closed_loop``: N clients, one connection each, one request in flight
  per client, for a fixed time: throughput and latency.
- ``open_loop``: requests started at a fixed offered rate whatever the
  answers, on a pool of connections (at most ``max_inflight`` outstanding;
  a request that finds none free is counted as not sent): CPU per write.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Req = tuple[str, str, bytes | None]  # method, path with query, body
MakeReq = Callable[[int, int], Req]  # (client, sequence number) -> request


class HttpConn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        try:
            return await self._response()
        except BaseException:
            self.close()  # a half-read answer would poison the next request
            raise

    async def _response(self) -> tuple[int, bytes]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, chunked, close = 0, False, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if chunked:
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
        else:
            body = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, body


@dataclass
class LoadResult:
    ok: int = 0
    errors: int = 0
    not_sent: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, ok requests only

    @property
    def ops_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct_ms(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        s = sorted(self.latencies)
        return 1000 * s[min(len(s) - 1, int(p * len(s)))]

    def median_ms(self) -> float:
        return 1000 * statistics.median(self.latencies) if self.latencies else float("nan")


async def closed_loop(host: str, port: int, clients: int, seconds: float, make: MakeReq,
                      timeout: float = 10.0, max_ops: int | None = None) -> LoadResult:
    res = LoadResult()
    stop_at = time.perf_counter() + seconds
    counter = iter(range(max_ops if max_ops is not None else 1 << 62))

    async def one(c: int) -> None:
        conn = HttpConn(host, port)
        try:
            while time.perf_counter() < stop_at:
                i = next(counter, None)
                if i is None:
                    return
                method, path, body = make(c, i)
                t0 = time.perf_counter()
                try:
                    status, _ = await asyncio.wait_for(conn.request(method, path, body), timeout)
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                    res.errors += 1
                    conn.close()
                    await asyncio.sleep(0.01)
                    continue
                if status == 200:
                    res.ok += 1
                    res.latencies.append(time.perf_counter() - t0)
                else:
                    res.errors += 1
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(c) for c in range(clients)))
    res.seconds = time.perf_counter() - t0
    return res


async def open_loop(host: str, port: int, rate: float, seconds: float, make: MakeReq,
                    max_inflight: int = 256, timeout: float = 10.0) -> LoadResult:
    res = LoadResult()
    pool: asyncio.Queue[HttpConn] = asyncio.Queue()
    for _ in range(max_inflight):
        pool.put_nowait(HttpConn(host, port))
    tasks: set[asyncio.Task[None]] = set()

    async def send(conn: HttpConn, i: int) -> None:
        method, path, body = make(0, i)
        t0 = time.perf_counter()
        try:
            status, _ = await asyncio.wait_for(conn.request(method, path, body), timeout)
            if status == 200:
                res.ok += 1
                res.latencies.append(time.perf_counter() - t0)
            else:
                res.errors += 1
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            res.errors += 1
            conn.close()
        finally:
            pool.put_nowait(conn)

    start = time.perf_counter()
    sent = 0
    total = int(rate * seconds)
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            if pool.empty():
                res.not_sent += 1
            else:
                t = asyncio.create_task(send(pool.get_nowait(), sent))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(0.001)
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 1)
    res.seconds = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait().close()
    return res


async def client_closed_loop(endpoint: str, clients: int, seconds: float, key: Callable[[int, int], str],
                             value: str) -> LoadResult:
    """quorate's own :class:`quorate.client.AsyncClient` (one per client)."""
    from quorate.client import AsyncClient, QuorateClientError

    res = LoadResult()
    stop_at = time.perf_counter() + seconds

    async def one(c: int) -> None:
        async with AsyncClient(endpoint, discover=False, timeout=10.0) as client:
            i = 0
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    await client.put(key(c, i), value)
                except QuorateClientError:
                    res.errors += 1
                    continue
                finally:
                    i += 1
                res.ok += 1
                res.latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(c) for c in range(clients)))
    res.seconds = time.perf_counter() - t0
    return res
