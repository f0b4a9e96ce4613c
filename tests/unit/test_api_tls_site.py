"""The API's HTTPS listener in-process: what it serves, and that each
refused TLS handshake leaves a WARNING naming the caller and the cause
(asyncio's own server-side TLS would drop them silently)."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
import ssl
from pathlib import Path

import pytest
from aiohttp import web

from quorate.api.tls_site import LoggedTlsSite
from quorate.runtime.eventloop import loop_factory
from quorate.testing.pki import Pki, write_pki
from quorate.transport import make_ssl_contexts


def _ctx(ca: Path, pki: Pki | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if pki is not None:
        ctx.load_cert_chain(*map(str, pki.certs["op"]))
    return ctx


def _request(port: int, ctx: ssl.SSLContext | None) -> tuple[int, int, object]:
    """(local port, status, body) of a POST with a JSON body; raises when refused."""
    conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx) if ctx is not None
            else http.client.HTTPConnection("127.0.0.1", port, timeout=10))
    try:
        conn.connect()
        assert conn.sock is not None
        local = conn.sock.getsockname()[1]
        try:
            conn.request("POST", "/echo", body=json.dumps({"x": 1}), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return local, resp.status, json.loads(resp.read())
        except (OSError, http.client.HTTPException):
            return local, 0, None
    finally:
        conn.close()


LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(loop_factory("uvloop") is None,
                                                                    reason="uvloop is not installed"))]


@pytest.mark.parametrize("loop", LOOPS)
def test_tls_site_serves_and_logs_refusals(tmp_path: Path, caplog: pytest.LogCaptureFixture, loop: str) -> None:
    pki = write_pki(tmp_path, "ca", ["n1", "op"])
    other = write_pki(tmp_path, "other", ["op"])
    server_ctx, _ = make_ssl_contexts(*pki.certs["n1"], pki.ca)

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"got": await request.json(), "secure": request.secure})

    async def main() -> dict[str, tuple[int, int, object]]:
        app = web.Application()
        app.router.add_post("/echo", echo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        await LoggedTlsSite(runner, "127.0.0.1", port, server_ctx, "n1").start()
        pending: socket.socket | None = None
        try:
            out = {}
            for name, ctx in [("good", _ctx(pki.ca, pki)), ("plain", None), ("no-cert", _ctx(pki.ca, None)),
                              ("other-ca", _ctx(pki.ca, other))]:
                out[name] = await asyncio.to_thread(_request, port, ctx)
            probe = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", port))
            out["probe"] = (probe.getsockname()[1], 0, None)
            probe.close()
            pending = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", port))
            await asyncio.sleep(0.2)  # the probe's close is seen; `pending` stays mid-handshake
            return out
        finally:
            await runner.cleanup()  # cancels the pending handshake without a warning
            if pending is not None:
                pending.close()

    with caplog.at_level(logging.INFO, logger="quorate.api"):
        with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
            out = runner.run(main())
    assert out["good"][1:] == (200, {"got": {"x": 1}, "secure": True})
    lines = {r.getMessage(): r.levelname for r in caplog.records if r.name == "quorate.api"}
    for name, cause in [("plain", "plaintext on the TLS port"), ("no-cert", "no client certificate"),
                        ("other-ca", "client certificate not signed by the cluster CA")]:
        assert out[name][1] == 0, out[name]
        want = f"node=n1 refused API connection from 127.0.0.1:{out[name][0]}: tls ({cause}"
        assert [lvl for msg, lvl in lines.items() if msg.startswith(want)] == ["WARNING"], lines
    want = f"node=n1 API connection from 127.0.0.1:{out['probe'][0]} closed during the TLS handshake"
    assert [lvl for msg, lvl in lines.items() if msg.startswith(want)] == ["INFO"], lines
