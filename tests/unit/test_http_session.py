"""quorate's HTTP sessions never resend a write on their own (aiohttp's
default retries PUT and DELETE after a dropped connection, which applied a
write twice or reported an applied write as not applied)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from quorate.http_session import new_session


async def _count_requests(make_session) -> int:  # type: ignore[no-untyped-def]
    seen = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        while True:  # one keep-alive request answered, the next one dropped unanswered
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length")), 0)
            await reader.readexactly(length)
            seen += 1
            if seen == 1:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
                continue
            writer.close()
            return

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with make_session() as session:
            async with session.put(f"http://127.0.0.1:{port}/v1/kv/a", json={"value": "1"}) as r:
                await r.read()
            with pytest.raises(aiohttp.ClientError):
                async with session.put(f"http://127.0.0.1:{port}/v1/kv/a", json={"value": "2"}) as r:
                    await r.read()
    finally:
        server.close()
        await server.wait_closed()
    return seen


def test_a_dropped_write_is_not_resent() -> None:
    seen = asyncio.run(asyncio.wait_for(_count_requests(new_session), 30))
    assert seen == 2  # the first write, and the dropped one exactly once


def test_plain_aiohttp_would_resend_it() -> None:
    """Keeps the test above meaningful: the default session retries."""
    seen = asyncio.run(asyncio.wait_for(_count_requests(aiohttp.ClientSession), 30))
    assert seen == 3
