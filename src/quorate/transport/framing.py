"""Length-prefixed frames: a 4-byte big-endian payload length, then the payload.

The decoder is incremental (bytes in, whole payloads out) so it works on any
byte source; :func:`read_frame` drives it from an asyncio stream. A length
over the limit is refused as soon as its 4 bytes are seen, before a single
payload byte is read, so the buffer never grows past the limit plus one read.
The limit can be changed between frames (the handshake uses a small one, the
message stream the configured one).
"""

from __future__ import annotations

import asyncio
import struct

from .errors import ConnectionClosed, LocalProtocolError, OversizeFrame

__all__ = ["DEFAULT_MAX_FRAME", "HEADER_SIZE", "FrameDecoder", "encode_frame", "read_frame"]

DEFAULT_MAX_FRAME = 64 * 1024 * 1024
HEADER_SIZE = 4
_HEADER = struct.Struct(">I")
_READ_CHUNK = 64 * 1024


def encode_frame(payload: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """The frame for ``payload``; over the limit is a local error (the peer
    would refuse it and close the connection)."""
    if len(payload) > max_frame:
        raise LocalProtocolError(f"frame of {len(payload)} bytes exceeds the limit of {max_frame} bytes")
    return _HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Split a byte stream into payloads.

    ``feed(data)`` appends bytes; ``next_frame()`` returns the next whole
    payload or None when more bytes are needed, and raises OversizeFrame the
    moment a header claims more than ``max_frame``.
    """

    __slots__ = ("_buf", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < 0 or max_frame > 0xFFFFFFFF:
            raise ValueError(f"max_frame must be within 0..2**32-1, not {max_frame}")
        self.max_frame = max_frame
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_frame(self) -> bytes | None:
        if len(self._buf) < HEADER_SIZE:
            return None
        (size,) = _HEADER.unpack_from(self._buf)
        if size > self.max_frame:
            raise OversizeFrame(size, self.max_frame)
        end = HEADER_SIZE + size
        if len(self._buf) < end:
            return None
        payload = bytes(self._buf[HEADER_SIZE:end])
        del self._buf[:end]
        return payload

    def header_bytes(self) -> bytes:
        """The first bytes buffered (for sniffing what a stranger is speaking)."""
        return bytes(self._buf[:HEADER_SIZE])


async def read_frame(reader: asyncio.StreamReader, decoder: FrameDecoder) -> bytes:
    """The next payload from ``reader``: ConnectionClosed at end of stream or
    on a socket error (with a note when it cut a frame short), OversizeFrame
    as above."""
    while True:
        frame = decoder.next_frame()
        if frame is not None:
            return frame
        try:
            data = await reader.read(_READ_CHUNK)
        except OSError as exc:  # reset, TLS alert, ...: the peer's doing
            raise ConnectionClosed(f"connection lost: {exc}") from exc
        if not data:
            partial = f" in the middle of a frame ({decoder.buffered} bytes)" if decoder.buffered else ""
            raise ConnectionClosed(f"connection closed by peer{partial}")
        decoder.feed(data)
