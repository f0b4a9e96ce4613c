"""The receiving side: one task per accepted connection.

Theory of operation: with TLS configured a connection arrives here after
its handshake (``tls.TlsAcceptor``, which reports a failed one to
``refuse_tls`` with the caller's address: asyncio's own server-side TLS
would swallow it). Then the first frame
must be a hello (small frame limit, handshake timeout); it is checked and
answered. A refusal is logged at WARNING, counted, answered when the stream
still carries frames, and the connection closed: nothing else happens. An
accepted connection then carries Raft messages one per frame; each one
addressed to this node and sent by the node that said hello is handed to
``on_message`` in order. A bad frame closes that connection with a WARNING.
A newer connection from the same node replaces an older one.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from ..raft.types import Message, NodeId
from ._streams import close_quietly, peer_address
from .codec import decode_message
from .errors import ConnectionClosed, FrameError, OversizeFrame
from .framing import HEADER_SIZE, FrameDecoder, encode_frame, read_frame
from .handshake import (
    HELLO_MAX_FRAME,
    Accept,
    Hello,
    Refusal,
    RefusalReason,
    check_hello,
    decode_hello,
    sniff,
)
from .stats import Counters
from .tls import describe_tls_failure

log = logging.getLogger("quorate.transport")


@dataclass(frozen=True, slots=True)
class InboundSettings:
    node_id: NodeId
    cluster_id: str
    token: str | None
    ssl_server: ssl.SSLContext | None
    max_frame: int
    handshake_timeout: float
    # Why a peer of that id and epoch may not connect (None: it may).
    admit: Callable[[NodeId, int], str | None] = lambda node, epoch: None


class Inbound:
    """Serves accepted connections; owns the table of live ones by node id."""

    def __init__(
        self, settings: InboundSettings, counters: Counters, on_message: Callable[[Message], None],
        on_hello: Callable[[NodeId], None] = lambda node: None,
        on_lost: Callable[[NodeId], None] = lambda node: None,
    ) -> None:
        """``on_hello(node)`` runs when ``node`` has said an accepted hello,
        ``on_lost(node)`` when its connection (the newest from it) ends."""
        self._s = settings
        self._counters = counters
        self._on_message = on_message
        self._on_hello = on_hello
        self._on_lost = on_lost
        self._by_node: dict[NodeId, asyncio.StreamWriter] = {}
        self._open: set[asyncio.StreamWriter] = set()  # every accepted connection not yet closed

    def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> asyncio.Task[None]:
        """Start serving a new connection; the task is the caller's to track.
        The connection is recorded first, so abort_all() closes it even if the
        task is cancelled before it ever runs."""
        self._open.add(writer)
        return asyncio.create_task(self.serve(reader, writer))

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Handle one connection from accept to close; never raises but
        CancelledError (when the transport stops)."""
        addr = peer_address(writer)
        graceful = False  # a refusal is flushed before closing; anything else is cut
        try:
            decoder = FrameDecoder(HELLO_MAX_FRAME)
            hello = await self._read_hello(reader, writer, decoder, addr)
            if hello is None:
                graceful = True
                return
            writer.write(encode_frame(Accept(self._s.cluster_id, self._s.node_id).encode()))
            await writer.drain()
            self._register(hello.node_id, writer, addr)
            self._on_hello(hello.node_id)
            try:
                decoder.max_frame = self._s.max_frame
                await self._receive(reader, decoder, hello.node_id, addr)
            finally:
                if self._by_node.get(hello.node_id) is writer:
                    del self._by_node[hello.node_id]
                    self._on_lost(hello.node_id)
        except (OSError, ConnectionClosed) as exc:
            log.debug("node=%s connection from %s ended: %s", self._s.node_id, addr, exc)
        finally:
            self._open.discard(writer)
            await close_quietly(writer, abort=not graceful)

    def refuse_tls(self, addr: str, exc: BaseException) -> None:
        """A caller whose TLS handshake failed (reported by TlsAcceptor)."""
        self._refuse(None, addr, Refusal(RefusalReason.TLS, f"TLS handshake failed: {describe_tls_failure(exc)}"))

    async def _read_hello(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, decoder: FrameDecoder, addr: str
    ) -> Hello | None:
        """The checked hello, or None after refusing (or after a silent close)."""
        try:
            async with asyncio.timeout(self._s.handshake_timeout):
                payload = await read_frame(reader, decoder)
        except TimeoutError:
            outcome: Hello | Refusal = Refusal(
                RefusalReason.TIMEOUT, f"no hello within {self._s.handshake_timeout}s"
            )
        except OversizeFrame as exc:
            hint = sniff(decoder.header_bytes())
            outcome = (
                Refusal(RefusalReason.GARBAGE, hint)
                if hint
                else Refusal(RefusalReason.OVERSIZE_FRAME, str(exc))
            )
        except ConnectionClosed as exc:
            if not decoder.buffered:  # a port probe, or a peer giving up: not a refusal
                log.info("node=%s connection from %s closed before hello", self._s.node_id, addr)
                return None
            outcome = Refusal(RefusalReason.GARBAGE, f"{exc}; {sniff(decoder.header_bytes())}".rstrip("; "))
        else:
            outcome = decode_hello(payload)
        if isinstance(outcome, Hello):
            refusal = check_hello(outcome, self._s.cluster_id, self._s.token)
            if refusal is None:
                why = self._s.admit(outcome.node_id, outcome.epoch)
                if why is None:
                    return outcome
                refusal = Refusal(RefusalReason.STALE_EPOCH, why)
            outcome = refusal
        self._refuse(writer, addr, outcome)
        return None

    def _refuse(self, writer: asyncio.StreamWriter | None, addr: str, refusal: Refusal) -> None:
        """Log and count; answer with the reason while the stream is usable
        (the caller closes it)."""
        self._counters.refused[refusal.reason.value] += 1
        log.warning(
            "node=%s refused connection from %s: %s (%s)",
            self._s.node_id,
            addr,
            refusal.reason.value,
            refusal.detail,
        )
        if writer is not None and not writer.is_closing():
            writer.write(encode_frame(refusal.encode()))

    def _register(self, node: NodeId, writer: asyncio.StreamWriter, addr: str) -> None:
        old = self._by_node.get(node)
        if old is not None:
            log.info(
                "node=%s new connection from %s (%s) replaces the older one", self._s.node_id, node, addr
            )
            old.transport.abort()
        self._by_node[node] = writer

    async def _receive(
        self, reader: asyncio.StreamReader, decoder: FrameDecoder, peer: NodeId, addr: str
    ) -> None:
        while True:
            try:
                payload = await read_frame(reader, decoder)
                msg = decode_message(payload)
            except FrameError as exc:
                self._counters.bad_frames += 1
                log.warning(
                    "node=%s closing connection from %s (%s): bad frame: %s", self._s.node_id, peer, addr, exc
                )
                return
            self._counters.bytes_received += HEADER_SIZE + len(payload)
            if msg.to != self._s.node_id or msg.frm != peer:
                self._counters.dropped_misaddressed += 1
                log.debug(
                    "node=%s dropped %s from %s to %s on %s's connection",
                    self._s.node_id,
                    msg.type.name,
                    msg.frm,
                    msg.to,
                    peer,
                )
                continue
            self._counters.received += 1
            self._deliver(msg)

    def _deliver(self, msg: Message) -> None:
        try:
            self._on_message(msg)
        except Exception:  # a bug in the receiver is local: log it, keep the connection
            log.exception("node=%s on_message failed for %s from %s", self._s.node_id, msg.type.name, msg.frm)

    def abort_all(self) -> None:
        """Cut every accepted connection (the transport is stopping)."""
        for writer in self._open:
            writer.transport.abort()
        self._open.clear()
        self._by_node.clear()
