"""The asyncio client shares the calls and retry rules of the blocking one;
these tests check its own IO: aiohttp requests, failover, typed errors,
lost connections and the watch async generator."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest
from fakeapi import STATUS, WAIT, Drop, FakeCluster, Hang, kv_json, members_json

from quorate.client import AsyncClient, NoLeaderError, RevisionMismatchError, UnavailableError, WriteTimeout

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, WAIT)

    return asyncio.run(bounded())


def test_put_get_list_with_token(fake: FakeCluster) -> None:
    n = fake.node()
    n.on("PUT", "/v1/kv/dir/k 1", (200, {"revision": 3}))
    n.on("GET", "/v1/kv/dir/k 1", (200, kv_json("dir/k 1", "v", 3)))
    n.on("GET", "/v1/kv", (200, {"revision": 3, "kvs": [kv_json("dir/k 1", "v", 3)]}))
    n.on("GET", "/v1/status", (200, STATUS))

    async def go() -> None:
        async with AsyncClient(n.url, token="t0k", discover=False) as c:
            assert await c.put("dir/k 1", "v") == 3
            kv = await c.get("dir/k 1")
            assert kv is not None and kv.value == "v"
            assert (await c.list("dir/")).revision == 3
            assert (await c.status()).leader == "n1"

    run(go())
    assert n.seen[0].raw_path == "/v1/kv/dir/k%201"
    assert n.seen[0].body == {"value": "v"}
    assert {s.headers["Authorization"] for s in n.seen} == {"Bearer t0k"}


def test_failover_after_discovery_and_dead_seed(fake: FakeCluster, dead_endpoint: str) -> None:
    a, b = fake.node(), fake.node()
    a.on("GET", "/v1/members", (200, members_json(("n1", a.url), ("n2", b.url))))
    a.on("PUT", "/v1/kv/k", (503, {"error": "no_leader", "message": "election", "leader": "n2"}))
    b.on("PUT", "/v1/kv/k", (200, {"revision": 8}))

    async def go() -> int:
        async with AsyncClient([dead_endpoint, a.url]) as c:
            return await c.put("k", "v")

    assert run(go()) == 8
    assert len(b.seen) == 1


def test_typed_errors_and_write_timeouts(fake: FakeCluster) -> None:
    a, b = fake.node(), fake.node()
    a.on("PUT", "/v1/kv/cas", (409, {"error": "revision_mismatch", "message": "no", "current_revision": 4}))
    a.on("PUT", "/v1/kv/slow", (503, {"error": "timeout", "message": "not committed"}))
    a.on("PUT", "/v1/kv/drop", Drop())
    a.on("PUT", "/v1/kv/hang", Hang())
    a.on("PUT", "/v1/kv/nl", (503, {"error": "no_leader", "message": "none"}))
    b.on("PUT", "/v1/kv/nl", (503, {"error": "no_leader", "message": "none"}))

    async def go() -> None:
        async with AsyncClient([a.url, b.url], discover=False, timeout=0.5, deadline=0.6) as c:
            with pytest.raises(RevisionMismatchError) as info:
                await c.put("cas", "v", prev_revision=1)
            assert info.value.current_revision == 4
            for key in ("slow", "drop", "hang"):
                with pytest.raises(WriteTimeout):
                    await c.put(key, "v")
            with pytest.raises(NoLeaderError):
                await c.put("nl", "v")

    run(go())
    assert not b.requests("PUT", "/v1/kv/slow") and not b.requests("PUT", "/v1/kv/drop")
    assert not b.requests("PUT", "/v1/kv/hang")


def test_unreachable_is_unavailable(dead_endpoint: str) -> None:
    async def go() -> None:
        async with AsyncClient(dead_endpoint, discover=False, max_attempts=3) as c:
            await c.get("k")

    with pytest.raises(UnavailableError):
        run(go())


def test_watch_async_generator(fake: FakeCluster) -> None:
    a = fake.node()
    ev = [{"type": "put", "key": f"p/{i}", "revision": i, "value": str(i), "create_revision": i} for i in (2, 3)]
    a.on("GET", "/v1/watch", (200, {"events": ev[:1], "next_revision": 3}),
         (200, {"events": ev[1:], "next_revision": 4}))

    async def go() -> list[int]:
        async with AsyncClient(a.url, discover=False) as c:
            got = []
            async for event in c.watch("p/", 2, poll_timeout=1):
                got.append(event.revision)
                if len(got) == 2:
                    break
            return got

    assert run(go()) == [2, 3]
    assert [s.query["from_revision"] for s in a.seen] == ["2", "3"]
