"""Peer transport over asyncio TCP: what the runtime uses to move Raft messages.

Theory of operation: each node listens on one address and accepts
connections from peers (``_inbound``), and keeps exactly one outgoing
connection to each peer, owned by that peer's writer task (``_outbound``).
Messages flow one way on a connection: from the connecting side to the
accepting side. ``send`` never blocks and never raises for network reasons:
Raft tolerates loss, so a full queue, an unknown peer or an unreachable one
drops the message and bumps a counter. See docs/transport.md for the wire
format.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Callable, Mapping

from ..raft.types import Message, NodeId
from ._inbound import Inbound, InboundSettings
from ._outbound import LinkSettings, PeerLink
from .backoff import BACKOFF_BASE, BACKOFF_CAP
from .framing import DEFAULT_MAX_FRAME
from .stats import Counters, TransportStats
from .tls import TlsAcceptor

__all__ = ["PeerTransport"]

log = logging.getLogger("quorate.transport")

Address = tuple[str, int]


class PeerTransport:
    """Raft messages between peers over TCP, optionally with mutual TLS.

    ``on_message`` is called on the event loop, in arrival order per
    connection, for each message addressed to this node; it must not block.
    """

    def __init__(
        self,
        node_id: NodeId,
        cluster_id: str,
        listen_addr: Address,
        *,
        token: str | None = None,
        ssl_server: ssl.SSLContext | None = None,
        ssl_client: ssl.SSLContext | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        queue_size: int = 1024,
        on_message: Callable[[Message], None],
        connect_timeout: float = 2.0,
        handshake_timeout: float = 5.0,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        rng: random.Random | None = None,
        epoch: Callable[[], int] = lambda: 0,
        admit: Callable[[NodeId, int], str | None] = lambda node, epoch: None,
        on_peer_lost: Callable[[NodeId], None] = lambda node: None,
    ) -> None:
        """``epoch`` is this node's cluster epoch, sent in every hello;
        ``admit`` says why a caller of that id and epoch is refused (or
        None): the runtime refuses members left behind by a forced
        configuration. ``on_peer_lost(node)``: a connection with ``node``
        was closed or reset by the other end, or refused (a crashed
        process); a hint, never a proof (a partition gives none)."""
        if (ssl_server is None) != (ssl_client is None):
            raise ValueError("mutual TLS needs both ssl_server and ssl_client (or neither)")
        if queue_size < 1 or not 0 < max_frame <= 0xFFFFFFFF:
            raise ValueError("queue_size must be >= 1 and max_frame within 1..2**32-1")
        self.node_id = node_id
        self._listen = listen_addr
        self._counters = Counters()
        self._rng = rng if rng is not None else random.Random()
        self._links_settings = LinkSettings(
            node_id=node_id,
            cluster_id=cluster_id,
            token=token,
            ssl_client=ssl_client,
            max_frame=max_frame,
            queue_size=queue_size,
            connect_timeout=connect_timeout,
            handshake_timeout=handshake_timeout,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            epoch=epoch,
            on_lost=on_peer_lost,
        )
        inbound = InboundSettings(node_id, cluster_id, token, ssl_server, max_frame, handshake_timeout, admit)
        self._inbound = Inbound(inbound, self._counters, on_message, self._peer_is_back, on_peer_lost)
        self._links: dict[NodeId, PeerLink] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # inbound connections and retiring links
        self._server: asyncio.Server | TlsAcceptor | None = None
        self._ssl_server = ssl_server
        self._handshake_timeout = handshake_timeout

    # -- lifecycle -----------------------------------------------------------

    @property
    def listen_addr(self) -> Address:
        """The address listened on; after the first start, with the bound port
        (so stop + start binds the same port again)."""
        return self._listen

    @property
    def port(self) -> int:
        return self._listen[1]

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen and start a writer task per known peer."""
        if self._server is not None:
            return
        host, port = self._listen
        if self._ssl_server is None:
            self._server = await asyncio.start_server(self._on_accept, host, port)
        else:
            acceptor = TlsAcceptor(
                self._ssl_server, self._handshake_timeout,
                lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader(), self._on_accept),
                self._inbound.refuse_tls)
            await acceptor.listen(host, port)
            self._server = acceptor
        self._listen = (host, self._server.sockets[0].getsockname()[1])
        for link in self._links.values():
            link.start()
        log.info("node=%s peer transport listening on %s:%d", self.node_id, *self._listen)

    async def stop(self) -> None:
        """Stop listening, close every connection and wait for every task."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            # Accepts already under way reach _on_accept within two loop
            # iterations; it cuts them now that the server is gone.
            for _ in range(2):
                await asyncio.sleep(0)
        for link in self._links.values():
            self._retire(link)
        self._inbound.abort_all()
        for task in list(self._tasks):
            task.cancel()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        await asyncio.sleep(0)  # aborted sockets are released on the next iteration

    def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback (not a coroutine) so that the task is ours to track
        # and cancel. With TLS the handshake is already done (TlsAcceptor).
        if self._server is None:  # accepted just before stop(): cut it
            writer.transport.abort()
            return
        self._track(self._inbound.accept(reader, writer))

    def _peer_is_back(self, node: NodeId) -> None:
        link = self._links.get(node)
        if link is not None:
            link.peer_is_back()

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("node=%s transport task failed", self.node_id, exc_info=task.exception())

    def _retire(self, link: PeerLink) -> None:
        task = link.cancel()
        if task is not None:
            self._track(task)

    # -- peers and sending ---------------------------------------------------

    def set_peers(self, peers: Mapping[NodeId, Address]) -> None:
        """Replace the peer table (membership changed); a peer whose address
        changed gets a fresh link. This node's own entry is ignored."""
        wanted = {nid: (str(a[0]), int(a[1])) for nid, a in peers.items() if nid != self.node_id}
        for nid, link in list(self._links.items()):
            if wanted.get(nid) != link.addr:
                del self._links[nid]
                self._retire(link)
        for nid, addr in wanted.items():
            if nid not in self._links:
                link = PeerLink(nid, addr, self._links_settings, self._counters, self._rng)
                self._links[nid] = link
                if self._server is not None:
                    link.start()

    def peers(self) -> dict[NodeId, Address]:
        return {nid: link.addr for nid, link in self._links.items()}

    def send(self, msg: Message) -> bool:
        """Queue ``msg`` for ``msg.to``; False (and a counter) when it is dropped."""
        link = self._links.get(msg.to)
        if link is None:
            self._counters.dropped_no_peer += 1
            log.debug("node=%s dropped %s for unknown peer %s", self.node_id, msg.type.name, msg.to)
            return False
        if not link.offer(msg):
            self._counters.dropped_queue_full += 1
            return False
        return True

    def stats(self) -> TransportStats:
        return self._counters.snapshot()
