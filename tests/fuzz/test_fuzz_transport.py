"""Fuzzing the peer transport's receive path: frames, messages, handshake.

tests/unit/test_transport_{framing,codec}.py already check round trips,
arbitrary bytes and one replaced field. Here the inputs are hostile
streams: whole frame streams mutated and re-split at random, headers
claiming huge lengths (memory measured), every field of a message drawn
from a type-confusion mix, and the handshake decoders, which the unit tests
only see with hand-picked inputs.
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from fuzz_support import (
    U64,
    MemoryMeter,
    guarded,
    memory_bound,
    msgpack_scalars,
    msgpack_values,
    mutated,
    nested,
    pack,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from quorate.raft.types import ConfState, Entry, EntryKind, Message, MessageType, SnapshotChunk, SnapshotMeta
from quorate.transport import (
    ConnectionClosed,
    FrameDecoder,
    FrameError,
    OversizeFrame,
    decode_message,
    encode_frame,
    encode_message,
    read_frame,
)
from quorate.transport.framing import DEFAULT_MAX_FRAME, HEADER_SIZE
from quorate.transport.handshake import (
    HELLO_MAX_FRAME,
    Accept,
    Hello,
    Refusal,
    RefusalReason,
    check_hello,
    decode_answer,
    decode_hello,
)

pytestmark = pytest.mark.fuzz

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MT = MessageType
META = SnapshotMeta(9, 2, ConfState(frozenset({"n1", "n2"}), frozenset({"n3"})))
SEEDS = [
    Message(MT.APPEND, "n1", "n2", 5, log_term=4, index=17, commit=16,
            entries=(Entry(4, 18, EntryKind.NORMAL, b"put k v"), Entry(5, 19, EntryKind.CONF_CHANGE, b"{}"))),
    Message(MT.VOTE, "n1", "n2", 5, log_term=4, index=17, context=b"transfer"),
    Message(MT.SNAPSHOT, "n1", "n3", 5, snapshot=SnapshotChunk(META, 0, b"\x00" * 40, True)),
    Message(MT.APPEND_RESP, "n2", "n1", U64, index=U64, reject=True, reject_hint=3),
]
SEED_STREAM = b"".join(encode_frame(encode_message(m)) for m in SEEDS)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, any repeats)."""
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in zip(points, points[1:])]


def _reference_frames(stream: bytes, max_frame: int) -> tuple[list[bytes], bool]:
    """The frames of ``stream`` read in one go, and whether an oversize
    header stopped the reading (the model the chunked decoder must match)."""
    frames, pos = [], 0
    while len(stream) - pos >= HEADER_SIZE:
        (size,) = struct.unpack_from(">I", stream, pos)
        if size > max_frame:
            return frames, True
        if len(stream) - pos - HEADER_SIZE < size:
            break
        frames.append(stream[pos + HEADER_SIZE : pos + HEADER_SIZE + size])
        pos += HEADER_SIZE + size
    return frames, False


def _drain(decoder: FrameDecoder, chunks: list[bytes]) -> tuple[list[bytes], bool]:
    """Feed ``chunks`` one by one, taking every whole frame after each, as
    ``read_frame`` does; the buffer must then hold less than one frame."""
    frames: list[bytes] = []
    for chunk in chunks:
        decoder.feed(chunk)
        try:
            while (frame := decoder.next_frame()) is not None:
                frames.append(frame)
        except OversizeFrame as exc:
            assert exc.size > exc.limit == decoder.max_frame
            return frames, True
        assert decoder.buffered < HEADER_SIZE + decoder.max_frame, "buffered past one frame"
    return frames, False


# -- FrameDecoder -----------------------------------------------------------------


@FAST
@given(
    st.one_of(mutated(SEED_STREAM), st.binary(max_size=600)),
    st.lists(st.integers(min_value=0, max_value=1000), max_size=12),
    st.sampled_from([0, 3, 64, 300, DEFAULT_MAX_FRAME]),
)
def test_decoder_matches_one_shot_reading_under_any_split(stream: bytes, cuts: list[int], max_frame: int) -> None:
    """Mutated frame streams and plain garbage, fed in arbitrary pieces,
    give exactly the frames (and the oversize refusal) of reading the
    whole stream at once."""
    got = guarded(lambda: _drain(FrameDecoder(max_frame), _split(stream, cuts)))
    assert got == _reference_frames(stream, max_frame)


@settings(max_examples=60, deadline=None)
@given(
    claimed=st.integers(min_value=0, max_value=0xFFFFFFFF) | st.sampled_from([0xFFFFFFFF, DEFAULT_MAX_FRAME + 1]),
    tail=st.binary(max_size=256),
    max_frame=st.sampled_from([HELLO_MAX_FRAME, DEFAULT_MAX_FRAME, 0xFFFFFFFF]),
)
@example(claimed=0xFFFFFFFF, tail=b"", max_frame=0xFFFFFFFF)
@example(claimed=DEFAULT_MAX_FRAME, tail=b"x", max_frame=DEFAULT_MAX_FRAME)
def test_huge_length_headers_allocate_nothing(claimed: int, tail: bytes, max_frame: int) -> None:
    """A header claiming up to 4 GiB is refused (over the limit) or waited
    on (under it) without allocating the claimed size: the memory used
    stays proportional to the bytes actually received."""
    data = struct.pack(">I", claimed) + tail
    decoder = FrameDecoder(max_frame)

    def feed() -> bytes | None:
        decoder.feed(data)
        return decoder.next_frame()

    with MemoryMeter() as meter:
        out = meter.run(feed)
    assert out.peak <= memory_bound(len(data), per_byte=4, constant=64 << 10), out.peak
    if claimed > max_frame:
        assert isinstance(out.error, OversizeFrame)
    elif claimed <= len(tail):
        assert out.error is None and out.value == tail[:claimed]
    else:
        assert out.error is None and out.value is None
        assert decoder.buffered == len(data)


@FAST
@given(st.one_of(mutated(SEED_STREAM), st.binary(max_size=400)), st.lists(st.integers(0, 1000), max_size=8))
def test_read_frame_ends_every_stream_with_a_transport_error(stream: bytes, cuts: list[int]) -> None:
    """From an asyncio stream, any bytes then EOF give frames and then
    ConnectionClosed (or OversizeFrame): never another error, never a
    read that waits forever on a stream that has ended."""

    async def body() -> tuple[list[bytes], type[Exception]]:
        reader = asyncio.StreamReader()
        for chunk in _split(stream, cuts):
            reader.feed_data(chunk)
        reader.feed_eof()
        decoder, frames = FrameDecoder(1024), []
        while True:
            try:
                frames.append(await read_frame(reader, decoder))
            except (ConnectionClosed, OversizeFrame) as exc:
                return frames, type(exc)

    frames, stop = guarded(lambda: asyncio.run(body()))
    expected, oversize = _reference_frames(stream, 1024)
    assert frames == expected
    assert stop is (OversizeFrame if oversize else ConnectionClosed)


# -- the message codec -----------------------------------------------------------


def _check_decode(payload: bytes, meter: MemoryMeter) -> None:
    """Message or FrameError; memory proportional to the payload; and what
    is accepted is well formed (it encodes back to a message equal to it)."""
    out = meter.run(lambda: decode_message(payload))
    assert out.peak <= memory_bound(len(payload)), (out.peak, len(payload))
    if out.error is not None:
        assert isinstance(out.error, FrameError), repr(out.error)
        return
    msg = out.value
    assert isinstance(msg, Message)
    assert decode_message(encode_message(msg)) == msg


@FAST
@given(mutated(SEED_STREAM), st.lists(st.integers(0, 2000), max_size=6))
def test_mutated_frame_streams_decode_to_messages_or_frame_errors(stream: bytes, cuts: list[int]) -> None:
    """The whole receive path (frames, then messages) over a mutated stream
    of real frames: bit flips in headers shift every later frame, so the
    codec sees shifted, spliced and truncated messages."""
    with MemoryMeter() as meter:
        frames, _ = _drain(FrameDecoder(4096), _split(stream, cuts))  # stops at an oversize header
        for frame in frames:
            _check_decode(frame, meter)


def _field(valid: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """A field value that is usually of the right kind and sometimes not."""
    return st.one_of(valid, msgpack_scalars, msgpack_values)


uint_fields = _field(st.integers(min_value=0, max_value=U64))
entry_objs = st.lists(
    st.one_of(
        st.tuples(uint_fields, uint_fields, _field(st.sampled_from([0, 1, 2, -1])), _field(st.binary(max_size=8)))
        .map(list),
        msgpack_values,
    ),
    max_size=4,
)
chunk_objs = st.one_of(
    st.none(),
    st.tuples(
        st.tuples(uint_fields, uint_fields, _field(st.lists(st.text(max_size=3), max_size=3)),
                  _field(st.lists(st.text(max_size=3), max_size=3))).map(list),
        uint_fields,
        _field(st.binary(max_size=16)),
        _field(st.booleans()),
    ).map(list),
    msgpack_values,
)
message_objs = st.tuples(
    _field(st.integers(min_value=0, max_value=15)),
    _field(st.text(max_size=4)),
    _field(st.text(max_size=4)),
    uint_fields,
    uint_fields,
    uint_fields,
    _field(entry_objs),
    uint_fields,
    _field(st.booleans()),
    uint_fields,
    _field(st.binary(max_size=8)),
    chunk_objs,
).map(list)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message_objs, st.sampled_from([None, 11, 13]))
@example([5, "n1", "n2", 1, 0, 0, [[1, 1, 0, b""]], 2**64 - 1, False, 0, b"", None], None)
@example([5, "n1", "n2", 1, 0, U64, [[1, 0, 0, b""]], 0, False, 0, b"", None], None)  # index + 1 wraps past u64
@example([9, "n1", "n2", 1, 0, 0, [], 0, False, 0, b"", [[1, 1, ["a"], {"a": 1}], 0, b"", True]], None)
def test_every_field_type_confused(obj: list[object], resize: int | None) -> None:
    """All twelve fields at once drawn from right-kind values, scalars of
    every msgpack type (ext types and 64-bit edges included) and nested
    garbage, with the array sometimes one field short or long."""
    if resize is not None:
        obj = (obj + [None])[:resize]
    with MemoryMeter() as meter:
        _check_decode(pack(obj), meter)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=200_000), st.sampled_from([b"\x91", b"\x81\xa0", b"\xdd\x00\x00\x00\x01"]))
def test_deep_nesting_is_refused_within_memory(depth: int, header: bytes) -> None:
    """Deep arrays and maps (msgpack's own recursion) at the top level."""
    with MemoryMeter() as meter:
        _check_decode(nested(depth, header=header), meter)


# -- the handshake --------------------------------------------------------------

HELLO = Hello("cluster-1", "n1", "s3cret", epoch=4)
hello_like = st.fixed_dictionaries(
    {"proto": _field(st.just("quorate")), "version": _field(st.just(1)), "cluster": _field(st.text(max_size=6)),
     "node": _field(st.text(max_size=6)), "token": _field(st.text(max_size=6))},
    optional={"epoch": _field(st.integers(min_value=0, max_value=U64)), "extra": msgpack_values},
)


def _check_hello(payload: bytes, meter: MemoryMeter) -> None:
    out = meter.run(lambda: decode_hello(payload))
    assert out.error is None, f"decode_hello raised {out.error!r}: it must answer with a Refusal"
    assert out.peak <= memory_bound(len(payload)), (out.peak, len(payload))
    hello = out.value
    assert isinstance(hello, (Hello, Refusal))
    if isinstance(hello, Hello):
        assert all(type(v) is str for v in (hello.cluster_id, hello.node_id, hello.token)) and hello.node_id
        assert type(hello.version) is int and type(hello.epoch) is int and hello.epoch >= 0
        for token in (None, "s3cret", "\u00e9"):
            refusal = check_hello(hello, "cluster-1", token)
            assert refusal is None or refusal.reason in (RefusalReason.WRONG_CLUSTER, RefusalReason.BAD_TOKEN)
    else:
        assert isinstance(hello.reason, RefusalReason) and isinstance(hello.detail, str)


@FAST
@given(st.one_of(mutated(HELLO.encode()), st.binary(max_size=200), hello_like.map(pack), msgpack_values.map(pack)))
@example(nested(100_000, header=b"\x81\xa0"))
@example(pack({"proto": "quorate", "version": 1, "cluster": "c", "node": "n", "token": "", "epoch": -1}))
@example(pack({"proto": "quorate", "version": True, "cluster": "c", "node": "n", "token": ""}))
@example(pack({1: "quorate"}))
def test_hello_decoding_answers_every_payload(payload: bytes) -> None:
    """The accepting side's first frame: any payload of up to the hello
    limit is a Hello of the right types or a Refusal, never an exception."""
    with MemoryMeter() as meter:
        _check_hello(payload, meter)


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=HELLO_MAX_FRAME + 1, max_value=0xFFFFFFFF))
def test_oversize_hello_frames_are_refused_on_their_header(prefix: bytes, claimed: int) -> None:
    decoder = FrameDecoder(HELLO_MAX_FRAME)
    decoder.feed(struct.pack(">I", claimed) + prefix)
    with pytest.raises(OversizeFrame):
        guarded(decoder.next_frame)


answer_like = st.fixed_dictionaries(
    {"ok": _field(st.booleans())},
    optional={"cluster": _field(st.text(max_size=5)), "node": _field(st.text(max_size=5)),
              "reason": _field(st.sampled_from([r.value for r in RefusalReason] + ["newer"])),
              "message": _field(st.text(max_size=5))},
)


@FAST
@given(st.one_of(
    mutated(Accept("c", "n2").encode()),
    mutated(Refusal(RefusalReason.BAD_TOKEN, "no").encode()),
    st.binary(max_size=120),
    answer_like.map(pack),
    msgpack_values.map(pack),
))
def test_answer_decoding_gives_accept_refusal_or_frame_error(payload: bytes) -> None:
    """The connecting side reads the answer: Accept, Refusal or FrameError."""
    with MemoryMeter() as meter:
        out = meter.run(lambda: decode_answer(payload))
    assert out.peak <= memory_bound(len(payload)), out.peak
    if out.error is not None:
        assert isinstance(out.error, FrameError), repr(out.error)
    elif isinstance(out.value, Accept):
        assert type(out.value.cluster_id) is str and type(out.value.node_id) is str
    else:
        assert isinstance(out.value, Refusal) and isinstance(out.value.reason, RefusalReason)
