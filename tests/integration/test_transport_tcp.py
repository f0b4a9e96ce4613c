"""The peer transport over real TCP on 127.0.0.1 (ports chosen by the kernel).

Every wait is for a condition with a deadline; nothing sleeps and hopes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
import struct
import tracemalloc
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest

from quorate.raft.types import Entry, Message, MessageType
from quorate.testing.pki import Pki, write_pki
from quorate.transport import PeerTransport, encode_frame, make_ssl_contexts
from quorate.transport.handshake import Hello

DEADLINE = 10.0
LOOPBACK = "127.0.0.1"
LOGGER = "quorate.transport"


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30.0))


async def wait_until(cond: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll ``cond`` until true; fail with ``what`` after ``timeout``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, msg: Message) -> None:
        self.messages.append(msg)

    def frm(self, node: str) -> list[Message]:
        return [m for m in self.messages if m.frm == node]


@dataclass
class Node:
    transport: PeerTransport
    inbox: Inbox

    @property
    def addr(self) -> tuple[str, int]:
        return self.transport.listen_addr


def make_node(
    node_id: str, *, port: int = 0, cluster: str = "c1", token: str | None = "tok", **kw: Any
) -> Node:
    inbox = Inbox()
    transport = PeerTransport(
        node_id, cluster, (LOOPBACK, port), token=token, on_message=inbox, handshake_timeout=5.0, **kw
    )
    return Node(transport, inbox)


def no_tasks_left() -> bool:
    """Only the test's own task (and run()'s wait_for around it) remain."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    return all("wait_for" in repr(t.get_coro()) for t in others)


@contextlib.asynccontextmanager
async def running(*nodes: Node, mesh: bool = True) -> AsyncIterator[None]:
    """Start ``nodes`` (each knowing all the others when ``mesh``), stop them after."""
    try:
        for n in nodes:
            await n.transport.start()
        if mesh:
            table = {n.transport.node_id: n.addr for n in nodes}
            for n in nodes:
                n.transport.set_peers(table)
        yield
    finally:
        for n in nodes:
            await n.transport.stop()


def append(frm: str, to: str, i: int) -> Message:
    """A message numbered ``i`` (its index) carrying one entry."""
    return Message(MessageType.APPEND, frm, to, 1, index=i, entries=(Entry(1, i + 1, data=b"x" * (i % 50)),))


def indices(msgs: list[Message]) -> list[int]:
    return [m.index for m in msgs]


async def send_until_received(sender: Node, receiver: Node, what: str) -> None:
    """Keep sending (Raft would) until one message arrives."""
    frm, to = sender.transport.node_id, receiver.transport.node_id
    i = 0

    def arrived() -> bool:
        nonlocal i
        i += 1
        if i % 10 == 1:
            sender.transport.send(append(frm, to, 1_000_000 + i))
        return bool(receiver.inbox.frm(frm))

    await wait_until(arrived, what)


async def raw_exchange(addr: tuple[str, int], data: bytes) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes."""
    reader, writer = await asyncio.open_connection(*addr)
    try:
        writer.write(data)
        await writer.drain()
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := await asyncio.wait_for(reader.read(65536), DEADLINE):
                chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def refusal_reason(answer: bytes) -> str | None:
    """The reason in a refusal frame, or None if the server closed silently
    (a reset can eat the answer when unread bytes were pending)."""
    if len(answer) < 4:
        return None
    obj = msgpack.unpackb(answer[4 : 4 + struct.unpack(">I", answer[:4])[0]])
    assert obj["ok"] is False
    return str(obj["reason"])


def refused_lines(caplog: pytest.LogCaptureFixture, reason: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING
        and "refused connection from 127.0.0.1:" in r.getMessage()
        and reason in r.getMessage()
    ]


# -- delivery ----------------------------------------------------------------------


def test_two_transports_exchange_in_order() -> None:
    async def body() -> None:
        a, b = make_node("n1"), make_node("n2")
        async with running(a, b):
            # A burst without yielding: the first 1024 (the queue size) wait, the rest are dropped.
            n = 2000
            for i in range(n):
                a.transport.send(append("n1", "n2", i))
                b.transport.send(append("n2", "n1", i))
            assert (
                a.transport.stats().dropped_queue_full == b.transport.stats().dropped_queue_full == n - 1024
            )
            for inbox in (a.inbox, b.inbox):
                await wait_until(lambda inbox=inbox: len(inbox.messages) == 1024, "the queued burst")
                assert indices(inbox.messages) == list(range(1024))  # in order, none lost, no duplicates
            # Sent in paced batches nothing is dropped and everything arrives in order.
            for batch in range(5):
                for i in range(200):
                    a.transport.send(append("n1", "n2", n + batch * 200 + i))
                await wait_until(
                    lambda batch=batch: (
                        len([m for m in b.inbox.messages if m.index >= n]) == (batch + 1) * 200
                    ),
                    "a batch",
                )
            assert indices([m for m in b.inbox.messages if m.index >= n]) == list(range(n, n + 1000))
            stats = a.transport.stats()
            assert stats.sent >= 1000 and stats.bytes_sent > 0 and stats.connections == 1
            assert b.transport.stats().received == len(b.inbox.messages)
            assert all(m.to == "n2" and m.entries[0].index == m.index + 1 for m in b.inbox.messages)

    run(body())


def test_three_transports_all_pairs_in_order() -> None:
    async def body() -> None:
        nodes = [make_node(f"n{i}") for i in (1, 2, 3)]
        ids = [n.transport.node_id for n in nodes]
        async with running(*nodes):
            per_pair = 300
            for i in range(per_pair):
                for src in nodes:
                    for dst in ids:
                        if dst != src.transport.node_id:
                            assert src.transport.send(append(src.transport.node_id, dst, i))
            for dst in nodes:
                await wait_until(lambda dst=dst: len(dst.inbox.messages) == 2 * per_pair, "all messages")
                for src in ids:
                    if src != dst.transport.node_id:
                        assert indices(dst.inbox.frm(src)) == list(range(per_pair))
            assert all(n.transport.stats().dropped_queue_full == 0 for n in nodes)
        assert no_tasks_left()  # stop() cancelled and awaited every link and connection

    run(body())


def test_queue_is_bounded_and_unknown_peers_are_dropped() -> None:
    async def body() -> None:
        a, b = make_node("n1", queue_size=4), make_node("n2")
        await b.transport.start()
        try:
            a.transport.set_peers({"n2": b.addr})  # not started yet: nothing drains the queue
            accepted = [a.transport.send(append("n1", "n2", i)) for i in range(10)]
            assert accepted == [True] * 4 + [False] * 6
            assert a.transport.send(append("n1", "n9", 0)) is False
            stats = a.transport.stats()
            assert stats.dropped_queue_full == 6 and stats.dropped_no_peer == 1
            await a.transport.start()
            await wait_until(lambda: len(b.inbox.messages) == 4, "the queued messages")
            assert indices(b.inbox.messages) == [0, 1, 2, 3]
        finally:
            await a.transport.stop()
            await b.transport.stop()

    run(body())


def test_restarted_peer_is_reconnected() -> None:
    async def body() -> None:
        a, b = make_node("n1"), make_node("n2")
        async with running(a, b):
            await send_until_received(a, b, "the first delivery")
            port = b.transport.port
            await b.transport.stop()
            # A new process on the same port (the old one is gone for good).
            b2 = make_node("n2", port=port)
            async with running(b2, mesh=False):
                b2.transport.set_peers({"n1": a.addr})
                await send_until_received(a, b2, "delivery to the restarted peer")
                await send_until_received(b2, a, "delivery from the restarted peer")
            # The same object restarted binds the same port again.
            await b.transport.start()
            assert b.transport.port == port
            before = len(b.inbox.messages)
            await wait_until(
                lambda: a.transport.send(append("n1", "n2", 7)) and len(b.inbox.messages) > before,
                "delivery after restarting the same object",
            )
            assert a.transport.stats().reconnects >= 2
            assert a.transport.stats().connections >= 3

    run(body())


def test_a_peer_saying_hello_cuts_the_backoff_short(caplog: pytest.LogCaptureFixture) -> None:
    """A link waiting out a long backoff reconnects as soon as that peer
    connects to us: a restarted follower is caught up without waiting for
    the leader's backoff (60 s here, far past the deadline)."""
    async def body() -> None:
        a = make_node("n1", backoff_base=60.0, backoff_cap=60.0)
        b = make_node("n2")
        async with running(a, b):
            await send_until_received(a, b, "the first delivery")
            await b.transport.stop()
            a.transport.send(append("n1", "n2", 1))
            await wait_until(lambda: any("connection to peer n2" in r.getMessage() and "failed" in r.getMessage()
                                         for r in caplog.records), "n1's link to n2 to fail and back off")
            before = len(b.inbox.messages)
            await b.transport.start()  # b's own link says hello to a at once
            await wait_until(lambda: a.transport.send(append("n1", "n2", 9)) and len(b.inbox.messages) > before,
                             "delivery long before the 60 s backoff ends", timeout=15.0)

    with caplog.at_level(logging.WARNING, logger="quorate.transport"):
        run(body())


def test_a_peer_that_goes_away_is_reported_lost_and_a_live_one_is_not() -> None:
    """The hint behind fast failover: when a peer's process ends, its sockets
    close and ``on_peer_lost`` names it; while it lives, nothing is said."""
    async def body() -> None:
        lost: list[str] = []
        a = make_node("n1", on_peer_lost=lost.append)
        b, c = make_node("n2"), make_node("n3")
        async with running(a, b, c):
            await send_until_received(a, b, "n1 -> n2")
            await send_until_received(b, a, "n2 -> n1")
            await send_until_received(a, c, "n1 -> n3")
            await send_until_received(c, a, "n3 -> n1")
            assert lost == []
            await b.transport.stop()
            await wait_until(lambda: "n2" in lost, "n2 reported lost")
            assert "n3" not in lost

    run(body())


def test_membership_change_adds_and_removes_peers() -> None:
    async def body() -> None:
        a, b, c = make_node("n1"), make_node("n2"), make_node("n3")
        async with running(a, b, c, mesh=False):
            a.transport.set_peers({"n2": b.addr})
            await send_until_received(a, b, "n2 reachable")
            assert a.transport.send(append("n1", "n3", 0)) is False
            a.transport.set_peers({"n3": c.addr, "n1": a.addr})  # own entry ignored
            assert a.transport.peers() == {"n3": c.addr}
            assert a.transport.send(append("n1", "n2", 0)) is False
            await send_until_received(a, c, "n3 reachable")

    run(body())


def test_messages_for_another_node_are_dropped() -> None:
    async def body() -> None:
        a, b = make_node("n1"), make_node("n2")
        async with running(a, b):
            # n1's link to "n2" is pointed at n2's port, but the message claims another sender.
            a.transport.send(Message(MessageType.HEARTBEAT, "n7", "n2", 1))
            a.transport.send(append("n1", "n2", 1))
            await wait_until(lambda: len(b.inbox.messages) == 1, "the well-addressed message")
            assert b.transport.stats().dropped_misaddressed == 1

    run(body())


# -- refusals ----------------------------------------------------------------------


def test_wrong_cluster_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        a, b = make_node("n1", cluster="other"), make_node("n2")
        async with running(a, b):
            a.transport.send(append("n1", "n2", 0))
            await wait_until(lambda: b.transport.stats().refused.get("wrong_cluster", 0) >= 1, "a refusal")
            await wait_until(lambda: a.transport.stats().refused_by_peer >= 1, "the refusal to reach n1")
            assert b.inbox.messages == []
            assert a.transport.stats().connections == 0

    caplog.set_level(logging.WARNING, logger=LOGGER)
    run(body())
    assert refused_lines(caplog, "wrong_cluster")


def test_bad_token_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        a, b = make_node("n1", token="guess"), make_node("n2", token="s3cret-token")
        c = make_node("n3", token=None)  # no token at all
        async with running(a, b, c, mesh=False):
            a.transport.set_peers({"n2": b.addr})
            c.transport.set_peers({"n2": b.addr})
            a.transport.send(append("n1", "n2", 0))
            c.transport.send(append("n3", "n2", 0))
            await wait_until(lambda: b.transport.stats().refused.get("bad_token", 0) >= 2, "two refusals")
            assert b.inbox.messages == []

    caplog.set_level(logging.WARNING, logger=LOGGER)
    run(body())
    assert refused_lines(caplog, "bad_token")
    assert "s3cret-token" not in caplog.text and "guess" not in caplog.text


def test_a_member_of_an_older_epoch_is_refused_and_a_current_one_is_not(caplog: pytest.LogCaptureFixture) -> None:
    """After a forced configuration (quorum-loss recovery) the runtime
    refuses left-behind members by epoch; the transport carries the epoch in
    the hello and asks the runtime's admit hook."""
    def admit(node: str, epoch: int) -> str | None:
        return None if epoch >= 1 or node == "n3" else f"{node} is of epoch {epoch}, the cluster of epoch 1"

    async def body() -> None:
        old = make_node("n1", epoch=lambda: 0)
        current = make_node("n3", epoch=lambda: 0)  # a member that has not applied the new epoch yet
        fresh = make_node("n4", epoch=lambda: 1)
        b = make_node("n2", epoch=lambda: 1, admit=admit)
        async with running(old, current, fresh, b, mesh=False):
            for n in (old, current, fresh):
                n.transport.set_peers({"n2": b.addr})
                n.transport.send(append(n.transport.node_id, "n2", 0))
            await wait_until(lambda: b.transport.stats().refused.get("stale_epoch", 0) >= 1, "a refusal")
            await wait_until(lambda: {m.frm for m in b.inbox.messages} == {"n3", "n4"}, "the others' messages")
            assert all(m.frm != "n1" for m in b.inbox.messages)

    caplog.set_level(logging.WARNING, logger=LOGGER)
    run(body())
    assert refused_lines(caplog, "stale_epoch")
    assert "the cluster of epoch 1" in caplog.text


def test_garbage_is_refused_and_the_server_carries_on(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        a, b = make_node("n1"), make_node("n2")
        async with running(a, b):
            # A frame of bytes that are not msgpack.
            assert refusal_reason(await raw_exchange(b.addr, encode_frame(b"\xc1" * 8))) == "garbage"
            # msgpack, but not a hello.
            assert (
                refusal_reason(await raw_exchange(b.addr, encode_frame(msgpack.packb([1, 2])))) == "bad_frame"
            )
            # Someone speaking HTTP to the peer port.
            await raw_exchange(b.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            # A valid hello, then a frame that is not a message: the connection is cut.
            hello = encode_frame(Hello("c1", "n1", "tok").encode())
            answer = await raw_exchange(b.addr, hello + encode_frame(b"\x93\x01\x02\x03"))
            assert msgpack.unpackb(answer[4:])["ok"] is True
            await wait_until(lambda: b.transport.stats().bad_frames == 1, "the bad frame")
            await send_until_received(a, b, "delivery after the garbage")
            assert b.transport.stats().refused["garbage"] == 2

    caplog.set_level(logging.WARNING, logger=LOGGER)
    run(body())
    assert refused_lines(caplog, "garbage")
    assert refused_lines(caplog, "bad_frame")
    assert any("looks like HTTP" in line for line in refused_lines(caplog, "garbage"))
    assert any("bad frame" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_oversize_length_is_refused_without_reading_or_allocating(caplog: pytest.LogCaptureFixture) -> None:
    claimed = 0x7FFF_FFF0  # ~2 GiB, never sent

    async def body() -> None:
        a, b = make_node("n1"), make_node("n2")
        async with running(a, b):
            tracing = tracemalloc.is_tracing()  # PYTHONTRACEMALLOC may have started it
            if not tracing:
                tracemalloc.start()
            try:
                tracemalloc.reset_peak()
                baseline, _ = tracemalloc.get_traced_memory()
                # Only the prefix is sent: the answer (and the close) must come
                # without waiting for a payload that never arrives.
                answer = await raw_exchange(b.addr, struct.pack(">I", claimed))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                if not tracing:
                    tracemalloc.stop()
            assert refusal_reason(answer) in ("oversize_frame", None)
            assert peak - baseline < 16 * 1024 * 1024
            await wait_until(lambda: b.transport.stats().refused.get("oversize_frame", 0) == 1, "the refusal")
            # After the handshake the configured limit applies, and it is enforced too.
            hello = encode_frame(Hello("c1", "n1", "tok").encode())
            await raw_exchange(b.addr, hello + struct.pack(">I", claimed))
            await wait_until(lambda: b.transport.stats().bad_frames == 1, "the oversize frame after hello")
            await send_until_received(a, b, "delivery after the oversize frames")

    caplog.set_level(logging.WARNING, logger=LOGGER)
    run(body())
    assert refused_lines(caplog, "oversize_frame")


def test_silent_client_times_out() -> None:
    async def body() -> None:
        b = make_node("n2")
        b.transport = PeerTransport("n2", "c1", (LOOPBACK, 0), on_message=b.inbox, handshake_timeout=0.2)
        async with running(b):
            assert refusal_reason(await raw_exchange(b.addr, b"\x00\x00")) == "timeout"
            assert b.transport.stats().refused["timeout"] == 1

    run(body())


def test_wrong_node_at_the_address_is_noticed(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        a, b = make_node("n1"), make_node("n2")
        async with running(a, b, mesh=False):
            a.transport.set_peers({"n3": b.addr})  # misconfigured: n2 listens there
            a.transport.send(append("n1", "n3", 0))
            await wait_until(lambda: "is 'n2' of cluster 'c1', not 'n3'" in caplog.text, "the warning")
            assert b.inbox.messages == [] and a.transport.stats().connections == 0

    caplog.set_level(logging.WARNING, logger=LOGGER)
    run(body())


# -- TLS ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pki, Pki]:
    directory = tmp_path_factory.mktemp("pki")
    return write_pki(directory, "cluster-ca", ["n1", "n2", "n3"]), write_pki(directory, "rogue-ca", ["n9"])


def tls_node(node_id: str, pki: Pki, cert_from: Pki | None = None) -> Node:
    cert, key = (cert_from or pki).certs[node_id]
    server_ctx, client_ctx = make_ssl_contexts(cert, key, pki.ca)
    return make_node(node_id, ssl_server=server_ctx, ssl_client=client_ctx)


def test_mutual_tls_carries_messages(pki: tuple[Pki, Pki]) -> None:
    cluster, _ = pki

    async def body() -> None:
        a, b = tls_node("n1", cluster), tls_node("n2", cluster)
        async with running(a, b):
            for i in range(300):
                a.transport.send(append("n1", "n2", i))
                b.transport.send(append("n2", "n1", i))
            await wait_until(
                lambda: len(a.inbox.messages) == len(b.inbox.messages) == 300, "all messages over TLS"
            )
            assert indices(b.inbox.messages) == list(range(300))
            # A stop and restart over TLS reconnects too.
            await b.transport.stop()
            await b.transport.start()
            await send_until_received(a, b, "delivery after a TLS restart")
        assert no_tasks_left()

    run(body())


def test_plaintext_to_a_tls_port_is_refused(pki: tuple[Pki, Pki], caplog: pytest.LogCaptureFixture) -> None:
    cluster, _ = pki

    async def body() -> None:
        a, b = make_node("n1"), tls_node("n2", cluster)
        async with running(a, b):
            a.transport.send(append("n1", "n2", 0))
            await wait_until(lambda: b.transport.stats().refused.get("tls", 0) >= 1, "the TLS refusal")
            assert b.inbox.messages == []

    caplog.set_level(logging.WARNING, logger=LOGGER)
    run(body())
    assert refused_lines(caplog, "tls")


def test_tls_to_a_plaintext_port_is_refused(pki: tuple[Pki, Pki], caplog: pytest.LogCaptureFixture) -> None:
    cluster, _ = pki

    async def body() -> None:
        a, b = tls_node("n1", cluster), make_node("n2")
        async with running(a, b):
            a.transport.send(append("n1", "n2", 0))
            await wait_until(lambda: b.transport.stats().refused.get("garbage", 0) >= 1, "the refusal")
            assert b.inbox.messages == []

    caplog.set_level(logging.WARNING, logger=LOGGER)
    run(body())
    assert any("TLS ClientHello" in line for line in refused_lines(caplog, "garbage"))


def test_client_cert_from_another_ca_is_refused(
    pki: tuple[Pki, Pki], caplog: pytest.LogCaptureFixture
) -> None:
    cluster, rogue = pki

    async def body() -> None:
        # n9 trusts the cluster CA (so it accepts n2's certificate) but holds a rogue certificate.
        cert, key = rogue.certs["n9"]
        server_ctx, client_ctx = make_ssl_contexts(cert, key, cluster.ca)
        intruder = make_node("n9", ssl_server=server_ctx, ssl_client=client_ctx)
        b = tls_node("n2", cluster)
        async with running(intruder, b):
            intruder.transport.send(append("n9", "n2", 0))
            await wait_until(lambda: b.transport.stats().refused.get("tls", 0) >= 1, "the TLS refusal")
            assert b.inbox.messages == [] and intruder.transport.stats().sent == 0

    caplog.set_level(logging.WARNING, logger=LOGGER)
    run(body())
    lines = refused_lines(caplog, "tls")
    assert lines and any("certificate" in line.lower() for line in lines)
