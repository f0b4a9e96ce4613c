"""The sending side for one peer: a bounded queue and the task that owns the
only outgoing connection to that peer.

Theory of operation: :meth:`PeerLink.offer` never blocks; it puts the message
on the queue or reports it full (Raft resends, so dropping is safe). The
writer task loops: connect (with a timeout, TLS when configured), send the
hello and wait for the answer, then write queued messages as frames until the
connection fails. While connected it also watches the connection for end of
stream, so a peer that restarts is noticed at once rather than on the next
write. After a failure the messages still queued are dropped (they would be
stale by the time the peer is back), and the next attempt waits an
exponential, jittered backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from ..raft.types import Message, NodeId
from ._streams import close_quietly, describe
from .backoff import backoff_delay
from .codec import encode_message
from .errors import (
    ConnectionClosed,
    HandshakeRefused,
    LocalProtocolError,
    RemoteProtocolError,
    TransportError,
)
from .framing import FrameDecoder, encode_frame, read_frame
from .handshake import HELLO_MAX_FRAME, Hello, Refusal, decode_answer
from .stats import Counters

log = logging.getLogger("quorate.transport")

# A write gathers queued frames up to about this many bytes (a large
# snapshot chunk still goes alone: the limit is checked after each frame).
BATCH_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """What every link of one transport shares."""

    node_id: NodeId
    cluster_id: str
    token: str | None
    ssl_client: ssl.SSLContext | None
    max_frame: int
    queue_size: int
    connect_timeout: float
    handshake_timeout: float
    backoff_base: float
    backoff_cap: float
    epoch: Callable[[], int] = lambda: 0
    on_lost: Callable[[NodeId], None] = lambda node: None  # the peer closed, reset or refused us


class PeerLink:
    """Queue and writer task for one peer at one address."""

    def __init__(
        self,
        peer_id: NodeId,
        addr: tuple[str, int],
        settings: LinkSettings,
        counters: Counters,
        rng: random.Random,
    ) -> None:
        self.peer_id = peer_id
        self.addr = addr
        self._settings = settings
        self._counters = counters
        self._rng = rng
        self._queue: asyncio.Queue[Message] = asyncio.Queue(settings.queue_size)
        self._task: asyncio.Task[None] | None = None
        self._attempt = 0  # failures since the last successful handshake
        self._retry_now = asyncio.Event()  # cuts a backoff wait short (peer_is_back)
        self._last_error = ""  # to log a repeated failure once, not every second

    def offer(self, msg: Message) -> bool:
        """Queue ``msg``; False when the queue is full (the caller counts it)."""
        try:
            self._queue.put_nowait(msg)
        except asyncio.QueueFull:
            return False
        return True

    def peer_is_back(self) -> None:
        """The peer just connected to us: it is up, so a link waiting out a
        backoff connects now (a restarted follower needs the leader's link
        to catch up, and the backoff may have grown to its cap)."""
        self._attempt = 0
        self._retry_now.set()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"quorate-link-{self.peer_id}")

    def cancel(self) -> asyncio.Task[None] | None:
        """Stop the writer task; returns it so the owner can await its end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    async def _run(self) -> None:
        s = self._settings
        while True:
            try:
                await self._connect_and_pump()
            except (OSError, TimeoutError, TransportError) as exc:
                self._note_failure(exc)
                if isinstance(exc, (ConnectionRefusedError, ConnectionResetError, ConnectionClosed)):
                    s.on_lost(self.peer_id)
            except Exception:  # a bug here must not silence the peer for good
                log.exception("node=%s link to %s failed unexpectedly", s.node_id, self.peer_id)
            self._drop_queued()
            self._retry_now.clear()
            try:
                async with asyncio.timeout(backoff_delay(self._attempt, self._rng, s.backoff_base, s.backoff_cap)):
                    await self._retry_now.wait()
            except TimeoutError:
                pass
            self._attempt += 1
            self._counters.reconnects += 1

    async def _connect_and_pump(self) -> None:
        s = self._settings
        host, port = self.addr
        async with asyncio.timeout(s.connect_timeout):
            reader, writer = await asyncio.open_connection(
                host,
                port,
                ssl=s.ssl_client,
                ssl_handshake_timeout=s.connect_timeout if s.ssl_client else None,
            )
        try:
            async with asyncio.timeout(s.handshake_timeout):
                await self._handshake(reader, writer)
            self._note_connected()
            await self._pump(reader, writer)
        finally:
            await close_quietly(writer, abort=True)

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s = self._settings
        hello = Hello(cluster_id=s.cluster_id, node_id=s.node_id, token=s.token or "", epoch=s.epoch())
        writer.write(encode_frame(hello.encode(), HELLO_MAX_FRAME))
        await writer.drain()
        answer = decode_answer(await read_frame(reader, FrameDecoder(HELLO_MAX_FRAME)))
        if isinstance(answer, Refusal):
            self._counters.refused_by_peer += 1
            raise HandshakeRefused(answer.reason.value, answer.detail)
        if answer.node_id != self.peer_id or answer.cluster_id != s.cluster_id:
            raise RemoteProtocolError(
                f"the node at {self.addr[0]}:{self.addr[1]} is {answer.node_id!r:.80} of cluster "
                f"{answer.cluster_id!r:.80}, not {self.peer_id!r} of {s.cluster_id!r}"
            )

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Write queued messages until the connection fails (always raises)."""
        # The peer never sends after its answer: any read completing means it is gone.
        watcher = asyncio.ensure_future(reader.read(1))
        try:
            while True:
                frames = self._frames(await self._next_message(watcher))
                if not frames:
                    continue
                writer.writelines(frames)
                await writer.drain()
                self._counters.sent += len(frames)
                self._counters.bytes_sent += sum(map(len, frames))
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _next_message(self, watcher: asyncio.Future[bytes]) -> Message:
        if watcher.done():
            _raise_closed(watcher)
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
        getter = asyncio.ensure_future(self._queue.get())
        try:
            await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()
        if watcher.done():
            if getter.done() and not getter.cancelled():
                self._counters.dropped_unreachable += 1
            _raise_closed(watcher)
        return getter.result()

    def _frames(self, first: Message) -> list[bytes]:
        """``first`` and whatever else is queued already, framed: one write
        (one send syscall) for all of them instead of one each."""
        out: list[bytes] = []
        size = 0
        msg: Message | None = first
        while msg is not None:
            frame = self._frame(msg)
            if frame is not None:
                out.append(frame)
                size += len(frame)
            if size >= BATCH_BYTES:
                break
            try:
                msg = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                msg = None
        return out

    def _frame(self, msg: Message) -> bytes | None:
        try:
            return encode_frame(encode_message(msg), self._settings.max_frame)
        except LocalProtocolError as exc:
            self._counters.dropped_too_large += 1
            log.error(
                "node=%s dropped a %s message to %s: %s",
                self._settings.node_id,
                msg.type.name,
                self.peer_id,
                exc,
            )
            return None

    def _drop_queued(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
            self._counters.dropped_unreachable += 1

    def _note_connected(self) -> None:
        self._counters.connections += 1
        level = logging.INFO if self._last_error else logging.DEBUG
        log.log(
            level, "node=%s connected to peer %s at %s:%d", self._settings.node_id, self.peer_id, *self.addr
        )
        self._attempt = 0
        self._last_error = ""

    def _note_failure(self, exc: BaseException) -> None:
        text = describe(exc)
        level = logging.DEBUG if text == self._last_error else logging.WARNING
        log.log(
            level,
            "node=%s connection to peer %s at %s:%d failed: %s (retrying with backoff)",
            self._settings.node_id,
            self.peer_id,
            *self.addr,
            text,
        )
        self._last_error = text


def _raise_closed(watcher: asyncio.Future[bytes]) -> None:
    try:
        data = watcher.result()
    except OSError as exc:
        raise ConnectionClosed(f"connection lost: {exc}") from exc
    if data:
        raise RemoteProtocolError("peer sent data on a send-only connection")
    raise ConnectionClosed("connection closed by peer")
