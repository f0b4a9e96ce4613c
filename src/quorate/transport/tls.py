"""TLS contexts for mutual authentication between peers.

Peers are addressed by IP, so host names are not checked; what authenticates
a peer is a certificate signed by the cluster CA, required on both sides (the
server demands a client certificate). The token and cluster id in the
handshake are checked on top of this.
"""

from __future__ import annotations

import os
import ssl

__all__ = ["make_ssl_contexts"]

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
