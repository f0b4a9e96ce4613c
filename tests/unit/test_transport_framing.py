"""Frames and the handshake, without sockets."""

from __future__ import annotations

import asyncio
import struct

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from quorate.transport import (
    ConnectionClosed,
    FrameDecoder,
    LocalProtocolError,
    OversizeFrame,
    encode_frame,
    read_frame,
)
from quorate.transport.backoff import backoff_delay
from quorate.transport.handshake import (
    Accept,
    Hello,
    Refusal,
    RefusalReason,
    check_hello,
    decode_answer,
    decode_hello,
    sniff,
)

# -- framing ---------------------------------------------------------------------


@given(st.lists(st.binary(max_size=300), max_size=10), st.integers(min_value=1, max_value=50))
def test_frames_survive_any_split(payloads: list[bytes], step: int) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder()
    out: list[bytes] = []
    for i in range(0, len(stream), step):
        decoder.feed(stream[i : i + step])
        while (frame := decoder.next_frame()) is not None:
            out.append(frame)
    assert out == payloads
    assert decoder.buffered == 0


def test_header_is_four_bytes_big_endian() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"


def test_oversize_refused_on_the_header_alone() -> None:
    decoder = FrameDecoder(max_frame=1024)
    decoder.feed(struct.pack(">I", 1025))  # no payload byte at all
    with pytest.raises(OversizeFrame) as info:
        decoder.next_frame()
    assert (info.value.size, info.value.limit) == (1025, 1024)


def test_frame_at_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(max_frame=8)
    decoder.feed(encode_frame(b"12345678", max_frame=8))
    assert decoder.next_frame() == b"12345678"


def test_limit_can_change_between_frames() -> None:
    decoder = FrameDecoder(max_frame=4)
    decoder.feed(encode_frame(b"hi") + encode_frame(b"a longer frame"))
    assert decoder.next_frame() == b"hi"
    with pytest.raises(OversizeFrame):
        decoder.next_frame()
    decoder.max_frame = 100
    assert decoder.next_frame() == b"a longer frame"


def test_sending_an_oversize_frame_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame(b"x" * 11, max_frame=10)


def test_read_frame_from_a_stream() -> None:
    async def body() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(encode_frame(b"one") + encode_frame(b"two")[:5])
        decoder = FrameDecoder()
        assert await read_frame(reader, decoder) == b"one"
        reader.feed_data(encode_frame(b"two")[5:])
        assert await read_frame(reader, decoder) == b"two"
        reader.feed_data(b"\x00\x00")
        reader.feed_eof()
        with pytest.raises(ConnectionClosed, match="middle of a frame"):
            await read_frame(reader, decoder)

    asyncio.run(body())


# -- handshake -------------------------------------------------------------------


def test_hello_round_trip_and_checks() -> None:
    hello = decode_hello(Hello("c1", "n1", "s3cret").encode())
    assert hello == Hello("c1", "n1", "s3cret")
    assert isinstance(hello, Hello)
    assert check_hello(hello, "c1", "s3cret") is None
    assert check_hello(hello, "c1", None) is None  # no token configured: any token
    wrong_cluster = check_hello(hello, "c2", "s3cret")
    assert wrong_cluster is not None and wrong_cluster.reason is RefusalReason.WRONG_CLUSTER
    bad_token = check_hello(hello, "c1", "other")
    assert bad_token is not None and bad_token.reason is RefusalReason.BAD_TOKEN
    assert "s3cret" not in bad_token.detail and "other" not in bad_token.detail


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xc1\xc1", RefusalReason.GARBAGE),
        (msgpack.packb([1, 2, 3]), RefusalReason.BAD_FRAME),
        (msgpack.packb({"proto": "other"}), RefusalReason.BAD_FRAME),
        (
            msgpack.packb({"proto": "quorate", "version": 1, "cluster": "c", "node": 7, "token": ""}),
            RefusalReason.BAD_FRAME,
        ),
        (
            msgpack.packb({"proto": "quorate", "version": 1, "cluster": "c", "node": "", "token": ""}),
            RefusalReason.BAD_FRAME,
        ),
        (Hello("c1", "n1", version=99).encode(), RefusalReason.UNSUPPORTED_VERSION),
    ],
)
def test_bad_hellos(payload: bytes, reason: RefusalReason) -> None:
    outcome = decode_hello(payload)
    assert isinstance(outcome, Refusal) and outcome.reason is reason


def test_answers_round_trip() -> None:
    assert decode_answer(Accept("c1", "n2").encode()) == Accept("c1", "n2")
    refusal = Refusal(RefusalReason.BAD_TOKEN, "no")
    assert decode_answer(refusal.encode()) == refusal


def test_sniff_names_foreign_protocols() -> None:
    assert "TLS" in sniff(b"\x16\x03\x01\x02")
    assert "HTTP" in sniff(b"GET ")
    assert sniff(b"\x00\x00\x00\x05") == ""


def test_backoff_grows_to_the_cap_with_jitter() -> None:
    import random

    rng = random.Random(7)
    delays = [backoff_delay(n, rng, base=0.05, cap=1.0) for n in range(100)]
    assert 0.025 <= delays[0] <= 0.05
    assert all(0.5 <= d <= 1.0 for d in delays[5:])
    assert len(set(delays[5:])) > 50  # jittered, not lock-step
