"""TLS for peers and the API: contexts for mutual authentication, and a
listener that reports every refused handshake.

Peers are addressed by IP, so host names are not checked; what authenticates
a peer is a certificate signed by the cluster CA, required on both sides (the
server demands a client certificate). The token and cluster id in the
handshake are checked on top of this.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["TlsAcceptor", "describe_tls_failure", "make_ssl_contexts"]

log = logging.getLogger("quorate.transport")

StrPath = str | os.PathLike[str]


def make_ssl_contexts(cert: StrPath, key: StrPath, ca: StrPath) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """``(server_ctx, client_ctx)`` for a node holding ``cert``/``key``, both
    trusting only ``ca`` and both requiring the other side's certificate."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for ctx in (server, client):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(cafile=ca)
    client.check_hostname = False  # peers are addressed by IP; the cluster CA is the check
    client.verify_mode = ssl.CERT_REQUIRED
    server.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: no client certificate, no connection
    return server, client


def describe_tls_failure(exc: BaseException) -> str:
    """A failed server-side handshake in words, naming the usual causes."""
    if isinstance(exc, TimeoutError):
        return "no TLS handshake within the timeout"
    reason = getattr(exc, "reason", None) or ""
    text = str(exc) or type(exc).__name__
    if reason in ("HTTP_REQUEST", "WRONG_VERSION_NUMBER"):  # uvloop reports plain HTTP as the latter
        return f"plaintext on the TLS port ({text})"
    if reason in ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED"):
        return f"no client certificate ({text})"
    if reason == "CERTIFICATE_VERIFY_FAILED":
        return f"client certificate not signed by the cluster CA ({text})"
    if reason == "TLSV1_ALERT_UNKNOWN_CA":
        return f"the client does not trust this node's certificate ({text})"
    return text


class TlsAcceptor:
    """A TLS listening socket whose every failed handshake is reported.

    asyncio's own TLS server (``start_server(ssl=...)``) drops a failed
    handshake silently, and upgrading an accepted plain stream with
    ``start_tls`` races with uvloop, which starts reading the socket as soon
    as it is accepted (the caller's first TLS bytes then land in the plain
    buffer). So the sockets are accepted here and each is handed, unread, to
    ``connect_accepted_socket`` with the context, in a task of its own; a
    failure goes to ``on_failure(address, exc)``, where the caller's address
    is known. Shaped like ``asyncio.Server`` where the callers use it
    (``sockets``, ``close``, ``wait_closed``)."""

    def __init__(self, ctx: ssl.SSLContext, handshake_timeout: float,
                 protocol_factory: Callable[[], asyncio.BaseProtocol],
                 on_failure: Callable[[str, BaseException], None]) -> None:
        self._ctx = ctx
        self._timeout = handshake_timeout
        self._factory = protocol_factory
        self._on_failure = on_failure
        self._sock: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def sockets(self) -> list[socket.socket]:
        return [self._sock] if self._sock is not None else []

    async def listen(self, host: str, port: int, backlog: int = 128) -> None:
        loop = asyncio.get_running_loop()
        family, _, _, _, addr = (await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                        flags=socket.AI_PASSIVE))[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._spawn(self._accept(sock))

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def wait_closed(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(sock)
            except OSError as exc:  # e.g. out of file descriptors: keep serving
                log.error("accept on %s failed: %s", sock.getsockname(), exc)
                await asyncio.sleep(0.1)
                continue
            self._spawn(self._handshake(conn, peer))

    async def _handshake(self, conn: socket.socket, peer: Any) -> None:
        addr = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                self._factory, conn, ssl=self._ctx, ssl_handshake_timeout=self._timeout)
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            conn.close()
            self._on_failure(addr, exc)
        except BaseException:
            conn.close()
            raise
