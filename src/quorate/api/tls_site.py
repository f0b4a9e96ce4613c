"""The HTTPS listener of the API, with every refused TLS handshake logged.

``web.TCPSite(ssl_context=...)`` uses asyncio's server-side TLS, which drops
a failed handshake silently: a plaintext caller, a client without a
certificate or one signed by another CA would leave no trace. This site
listens through ``transport.tls.TlsAcceptor`` instead (the peer port does the
same), so a failure is a log line with the caller's address; a connection
that passes is handed to aiohttp exactly as ``TCPSite`` would hand it.
"""

from __future__ import annotations

import logging
import ssl

from aiohttp import web

from quorate.transport.tls import TlsAcceptor, describe_tls_failure

log = logging.getLogger("quorate.api")

HANDSHAKE_TIMEOUT_S = 10.0


class LoggedTlsSite(web.BaseSite):
    """Like ``web.TCPSite`` with an SSL context, but a failed handshake is a
    WARNING line naming the caller and the cause (a caller that hung up
    mid-handshake, such as a port probe, is an INFO line)."""

    __slots__ = ("_host", "_port", "_node", "_acceptor")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, ssl_context: ssl.SSLContext,
                 node_id: str) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._node = node_id
        self._acceptor: TlsAcceptor | None = None

    @property
    def name(self) -> str:
        return f"https://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None and self._ssl_context is not None
        acceptor = TlsAcceptor(self._ssl_context, HANDSHAKE_TIMEOUT_S, server, self._refused)
        await acceptor.listen(self._host, self._port, self._backlog)
        self._acceptor = acceptor

    async def stop(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None
        await super().stop()

    def _refused(self, addr: str, exc: BaseException) -> None:
        if isinstance(exc, ConnectionResetError):  # closed mid-handshake: a port probe, or a caller giving up
            log.info("node=%s API connection from %s closed during the TLS handshake (%s)", self._node, addr,
                     describe_tls_failure(exc))
        else:
            log.warning("node=%s refused API connection from %s: tls (%s)", self._node, addr,
                        describe_tls_failure(exc))
