"""Small helpers shared by the inbound and outbound sides of a connection."""

from __future__ import annotations

import asyncio

CLOSE_GRACE = 1.0  # seconds a closing connection may take to flush before it is aborted


def peer_address(writer: asyncio.StreamWriter) -> str:
    """``host:port`` of the other end, for log lines."""
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


async def close_quietly(writer: asyncio.StreamWriter, *, abort: bool = False) -> None:
    """Close and wait until the socket is released (no ResourceWarning later).
    ``abort`` drops unsent data at once; otherwise the flush gets a short grace."""
    transport = writer.transport
    if abort:
        transport.abort()
    else:
        writer.close()
    try:
        async with asyncio.timeout(CLOSE_GRACE):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        transport.abort()  # the socket is released on the next loop iteration


def describe(exc: BaseException) -> str:
    """An exception in words, for log lines (some, like TimeoutError, have none)."""
    text = str(exc)
    if isinstance(exc, TimeoutError) and not text:
        return "timed out"
    return text or type(exc).__name__
