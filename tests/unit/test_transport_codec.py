"""The message codec: every message round-trips, and decoding any input either
gives a well-formed message or raises FrameError (never anything else)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorate.raft.types import (
    ConfState,
    Entry,
    EntryKind,
    Message,
    MessageType,
    SnapshotChunk,
    SnapshotMeta,
)
from quorate.transport import FrameError, LocalProtocolError, decode_message, encode_message
from quorate.transport.codec import message_to_obj

U64 = 2**64 - 1
MT = MessageType

# -- examples of every message type -------------------------------------------

META = SnapshotMeta(index=40, term=3, conf=ConfState(frozenset({"n1", "n2", "n3"}), frozenset({"n4"})))
EXAMPLES = [
    Message(MT.PRE_VOTE, "n1", "n2", 5, log_term=4, index=17),
    Message(MT.PRE_VOTE_RESP, "n2", "n1", 5, reject=True),
    Message(MT.VOTE, "n1", "n2", 5, log_term=4, index=17, context=b"transfer"),
    Message(MT.VOTE_RESP, "n2", "n1", 5),
    Message(
        MT.APPEND,
        "n1",
        "n2",
        5,
        log_term=4,
        index=17,
        commit=16,
        entries=(
            Entry(4, 18, EntryKind.NORMAL, b"put k v"),
            Entry(5, 19, EntryKind.CONF_CHANGE, b'{"type": "add_learner"}'),
            Entry(5, 20),
        ),
    ),
    Message(MT.APPEND, "n1", "n2", 5, log_term=4, index=17, commit=16),
    Message(MT.APPEND_RESP, "n2", "n1", 5, index=12, reject=True, reject_hint=9, log_term=3),
    Message(MT.HEARTBEAT, "n1", "n2", 5, commit=16, context=b"read-7"),
    Message(MT.HEARTBEAT_RESP, "n2", "n1", 5, context=b"read-7"),
    Message(MT.SNAPSHOT, "n1", "n4", 5, snapshot=SnapshotChunk(META, 0, b"\x00\x01" * 100, False)),
    Message(MT.SNAPSHOT, "n1", "n4", 5, snapshot=SnapshotChunk(META, 200, b"", True)),
    Message(MT.SNAPSHOT_RESP, "n4", "n1", 5, index=200, reject=False),
    Message(MT.TIMEOUT_NOW, "n1", "n2", 5),
    Message(MT.READ_INDEX, "n3", "n1", 5, context=b"ctx"),
    Message(MT.READ_INDEX_RESP, "n1", "n3", 5, index=16, context=b"ctx"),
    Message(MT.HEARTBEAT, "n\u00e9\U0001f600", "n2", U64, commit=U64),
]


def test_examples_cover_every_message_type() -> None:
    assert {m.type for m in EXAMPLES} == set(MessageType)


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: m.type.name)
def test_round_trip(msg: Message) -> None:
    data = encode_message(msg)
    assert isinstance(data, bytes)
    assert decode_message(data) == msg


def test_enums_travel_as_ints() -> None:
    obj = msgpack.unpackb(encode_message(EXAMPLES[4]))
    assert obj[0] == MT.APPEND.value
    assert [e[2] for e in obj[6]] == [0, 1, 0]


# -- hypothesis: valid messages round-trip -------------------------------------

uints = st.integers(min_value=0, max_value=U64)
small = st.integers(min_value=0, max_value=1000)
node_ids = st.text(min_size=1, max_size=8)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    mtype = draw(st.sampled_from(MessageType))
    term = draw(uints)
    index = draw(st.integers(min_value=0, max_value=U64 - 100))
    entries: tuple[Entry, ...] = ()
    if mtype is MT.APPEND:
        terms = sorted(draw(st.lists(st.integers(min_value=0, max_value=term), max_size=5)))
        kinds = draw(st.lists(st.sampled_from(EntryKind), min_size=len(terms), max_size=len(terms)))
        datas = draw(st.lists(st.binary(max_size=20), min_size=len(terms), max_size=len(terms)))
        rows = enumerate(zip(terms, kinds, datas, strict=True))
        entries = tuple(Entry(t, index + 1 + i, k, d) for i, (t, k, d) in rows)
    snapshot = None
    if draw(st.booleans()):
        ids = draw(st.lists(node_ids, unique=True, max_size=6))
        split = draw(st.integers(min_value=0, max_value=len(ids)))
        conf = ConfState(frozenset(ids[:split]), frozenset(ids[split:]))
        meta = SnapshotMeta(draw(uints), draw(uints), conf)
        snapshot = SnapshotChunk(meta, draw(uints), draw(st.binary(max_size=50)), draw(st.booleans()))
    return Message(
        type=mtype,
        frm=draw(node_ids),
        to=draw(node_ids),
        term=term,
        log_term=draw(uints),
        index=index,
        entries=entries,
        commit=draw(uints),
        reject=draw(st.booleans()),
        reject_hint=draw(uints),
        context=draw(st.binary(max_size=20)),
        snapshot=snapshot,
    )


@given(messages())
def test_any_valid_message_round_trips(msg: Message) -> None:
    assert decode_message(encode_message(msg)) == msg


# -- hypothesis: nothing but a Message or FrameError ----------------------------


def _decode_or_frame_error(data: bytes) -> None:
    try:
        msg = decode_message(data)
    except FrameError:
        return
    assert isinstance(msg, Message)
    assert decode_message(encode_message(msg)) == msg  # what we accept, we can say back


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    _decode_or_frame_error(data)


msgpack_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=U64)
    | st.floats(allow_nan=True)
    | st.text(max_size=10)
    | st.binary(max_size=10)
)
msgpack_objects = st.recursive(
    msgpack_scalars,
    lambda inner: st.lists(inner, max_size=12) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=40,
)


@settings(max_examples=500)
@given(msgpack_objects)
def test_arbitrary_msgpack_objects(obj: object) -> None:
    _decode_or_frame_error(msgpack.packb(obj, use_bin_type=True))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(messages(), st.data())
def test_valid_message_with_one_field_replaced(msg: Message, data: st.DataObject) -> None:
    """Random objects rarely get past the outer shape check; mutating one
    field (or one nested field) of a real message reaches every check."""
    obj = message_to_obj(msg)
    path = [data.draw(st.integers(min_value=0, max_value=len(obj) - 1))]
    target = obj
    while isinstance(target[path[-1]], list) and target[path[-1]] and data.draw(st.booleans()):
        target = target[path[-1]]
        path.append(data.draw(st.integers(min_value=0, max_value=len(target) - 1)))
    target[path[-1]] = data.draw(msgpack_objects)
    _decode_or_frame_error(msgpack.packb(obj, use_bin_type=True))


@settings(max_examples=300)
@given(messages(), st.data())
def test_valid_message_with_bytes_cut_or_flipped(msg: Message, data: st.DataObject) -> None:
    raw = bytearray(encode_message(msg))
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), max_size=3))
    for pos, value in flips:
        raw[pos] = value
    _decode_or_frame_error(bytes(raw[:cut]))


# -- specific malformed inputs --------------------------------------------------


def _with(index: int, value: object, base: Message = EXAMPLES[4]) -> bytes:
    obj = message_to_obj(base)
    obj[index] = value
    return msgpack.packb(obj, use_bin_type=True)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\xc1", "never-used msgpack byte"),
        (encode_message(EXAMPLES[0]) + b"\x00", "trailing bytes"),
        (msgpack.packb({"type": 1}), "a map"),
        (msgpack.packb(message_to_obj(EXAMPLES[0])[:11]), "too few fields"),
        (_with(0, 99), "unknown message type"),
        (_with(0, True), "bool as type"),
        (_with(3, -1), "negative term"),
        (_with(5, -5), "negative index"),
        (_with(7, 1.5), "float commit"),
        (_with(4, True), "bool as log_term"),
        (_with(8, 1), "int as reject"),
        (_with(1, ""), "empty sender"),
        (_with(2, b"n2"), "bytes as node id"),
        (_with(10, "ctx"), "str as context"),
        (_with(6, [[4, 18, 7, b""]]), "unknown entry kind"),
        (_with(6, [[4, 19, 0, b""]]), "entries not starting at index + 1"),
        (_with(6, [[4, 18, 0, b""], [4, 20, 0, b""]]), "entries with a gap"),
        (_with(6, [[5, 18, 0, b""], [4, 19, 0, b""]]), "entry terms going down"),
        (_with(6, [[6, 18, 0, b""]]), "entry term above the message term"),
        (_with(6, [[1, 1, 0, b""]], EXAMPLES[0]), "entries on a non-APPEND message"),
        (_with(11, [[1, 1, ["n1"], ["n1"]], 0, b"", True]), "voter and learner at once"),
        (_with(11, [[1, 1, ["n1", "n1"], []], 0, b"", True]), "duplicate voters"),
        (_with(11, [[1, 1, ["n1"], []], -1, b"", True]), "negative snapshot offset"),
        (_with(11, "snapshot"), "snapshot not an array"),
        (b"\x9c\xa1\xff" + b"\x00" * 11, "invalid utf-8 in a str"),
        (b"\xc7\x05\xff\x00\x00\x00\x00\x00", "bad timestamp extension"),
        (b"\x91" * 5000 + b"\xc0", "deeply nested"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_malformed_is_a_frame_error(data: bytes, why: str) -> None:
    with pytest.raises(FrameError):
        decode_message(data)


def test_unencodable_message_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        encode_message(Message(MT.HEARTBEAT, "n1", "n2", 2**70))
    with pytest.raises(LocalProtocolError):
        encode_message(Message(MT.HEARTBEAT, "n1", "n2", 1, context=object()))  # type: ignore[arg-type]
