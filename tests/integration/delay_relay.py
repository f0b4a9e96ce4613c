"""A TCP relay that delays every byte it carries, with jitter.

The kernel here has no ``sch_netem``, so delay cannot be put on a link with
``tc``. Instead, in a host's namespace an nftables NAT rule redirects the
host's outgoing peer connections to this relay (run inside the same
namespace), which reads the original destination (``SO_ORIGINAL_DST``),
connects there itself with a firewall mark the rule skips, and forwards
both directions, each chunk held back ``delay ± jitter`` ms. Order within a
stream is kept (a chunk is never delivered before the one read before it),
as TCP over a jittery link would.

Run: ``python delay_relay.py PORT DELAY_MS JITTER_MS MARK SEED``.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import sys

SO_ORIGINAL_DST = 80


def original_dst(sock: socket.socket) -> tuple[str, int]:
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, ip = struct.unpack("!2xH4s8x", raw)
    return socket.inet_ntoa(ip), port


class Relay:
    def __init__(self, delay_s: float, jitter_s: float, mark: int, seed: int) -> None:
        self.delay_s = delay_s
        self.jitter_s = jitter_s
        self.mark = mark
        self.rng = random.Random(seed)

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                at, chunk = await queue.get()
                if not chunk:
                    break
                await asyncio.sleep(max(0.0, at - loop.time()))
                writer.write(chunk)
                await writer.drain()
            writer.close()

        sender = asyncio.create_task(deliver())
        last = 0.0
        try:
            while True:
                chunk = await reader.read(65536)
                last = max(last, loop.time() + self.delay_s + self.rng.uniform(-self.jitter_s, self.jitter_s))
                await queue.put((last, chunk))
                if not chunk:
                    break
            await sender
        except (ConnectionError, OSError):
            sender.cancel()
            writer.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            host, port = original_dst(sock)
            out = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            out.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self.mark)
            out.setblocking(False)
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(out, (host, port)), 10)
            up_reader, up_writer = await asyncio.open_connection(sock=out)
        except (OSError, asyncio.TimeoutError):
            writer.close()
            return
        await asyncio.gather(self.pipe(reader, up_writer), self.pipe(up_reader, writer), return_exceptions=True)


async def main(port: int, delay_ms: float, jitter_ms: float, mark: int, seed: int) -> None:
    relay = Relay(delay_ms / 1000, jitter_ms / 1000, mark, seed)
    server = await asyncio.start_server(relay.handle, "0.0.0.0", port, reuse_address=True)
    print("relay ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    p, d, j, m, s = sys.argv[1:6]
    asyncio.run(main(int(p), float(d), float(j), int(m, 0), int(s)))
