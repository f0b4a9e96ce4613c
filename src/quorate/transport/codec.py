"""Raft messages to and from msgpack bytes.

Theory of operation: a :class:`~quorate.raft.types.Message` travels as one
msgpack array with its fields in declaration order (enums as their integer
values, byte strings as msgpack bin, node ids as msgpack str)::

    [type, frm, to, term, log_term, index, entries, commit, reject,
     reject_hint, context, snapshot]
    entry    = [term, index, kind, data]
    snapshot = nil | [meta, offset, data, done]
    meta     = [index, term, voters, learners]      # voters/learners: sorted str lists

Decoding is the trust boundary: whatever the bytes, :func:`decode_message`
either returns a well-formed message or raises :class:`FrameError`. Types are
checked exactly (a msgpack ``true`` is not an int), integers must be
non-negative, enum values known, and entries must form a log segment the core
can append without further checks (only on APPEND, consecutive from
``index + 1``, terms non-decreasing and not above the message term).
"""

from __future__ import annotations

from typing import Any, NoReturn

import msgpack

from ..raft.types import (
    ConfState,
    Entry,
    EntryKind,
    Message,
    MessageType,
    SnapshotChunk,
    SnapshotMeta,
)
from .errors import FrameError, LocalProtocolError

__all__ = ["decode_message", "encode_message", "message_from_obj", "message_to_obj"]

_MESSAGE_FIELDS = 12
_ENTRY_FIELDS = 4
_CHUNK_FIELDS = 4
_META_FIELDS = 4


# -- encoding (local direction) ----------------------------------------------


def message_to_obj(msg: Message) -> list[Any]:
    """The msgpack-ready array for ``msg`` (see the module docstring)."""
    return [
        msg.type.value,
        msg.frm,
        msg.to,
        msg.term,
        msg.log_term,
        msg.index,
        [[e.term, e.index, e.kind.value, e.data] for e in msg.entries],
        msg.commit,
        msg.reject,
        msg.reject_hint,
        msg.context,
        None if msg.snapshot is None else _chunk_to_obj(msg.snapshot),
    ]


def _chunk_to_obj(chunk: SnapshotChunk) -> list[Any]:
    meta = chunk.meta
    conf = [meta.index, meta.term, sorted(meta.conf.voters), sorted(meta.conf.learners)]
    return [conf, chunk.offset, chunk.data, chunk.done]


def encode_message(msg: Message) -> bytes:
    """msgpack bytes for ``msg``; a message that cannot be encoded (wrong field
    types, integers beyond 64 bits) is a local bug: LocalProtocolError."""
    try:
        return msgpack.packb(message_to_obj(msg), use_bin_type=True)
    except (TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise LocalProtocolError(f"cannot encode {msg.type}: {exc}") from exc


# -- decoding (remote direction) ----------------------------------------------


def decode_message(payload: bytes) -> Message:
    """The message in ``payload``; FrameError for anything malformed."""
    try:
        obj = msgpack.unpackb(payload, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # the trust boundary: msgpack's failures are many and varied
        raise FrameError(f"payload is not msgpack: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
    return message_from_obj(obj)


def message_from_obj(obj: object) -> Message:
    """The message described by an already unpacked msgpack object."""
    fields = _array(obj, _MESSAGE_FIELDS, "message")
    mtype = _enum(MessageType, fields[0], "type")
    term = _uint(fields[3], "term")
    index = _uint(fields[5], "index")
    entries = _entries(fields[6], mtype, index, term)
    return Message(
        type=mtype,
        frm=_node_id(fields[1], "frm"),
        to=_node_id(fields[2], "to"),
        term=term,
        log_term=_uint(fields[4], "log_term"),
        index=index,
        entries=entries,
        commit=_uint(fields[7], "commit"),
        reject=_bool(fields[8], "reject"),
        reject_hint=_uint(fields[9], "reject_hint"),
        context=_bytes(fields[10], "context"),
        snapshot=None if fields[11] is None else _chunk(fields[11]),
    )


def _entries(obj: object, mtype: MessageType, index: int, term: int) -> tuple[Entry, ...]:
    if not isinstance(obj, list):
        _fail("entries", "is not an array")
    if obj and mtype is not MessageType.APPEND:
        _fail("entries", f"on a {mtype.name} message (only APPEND carries entries)")
    entries = tuple(_entry(e) for e in obj)
    prev_term = 0
    for i, e in enumerate(entries):
        if e.index != index + 1 + i:
            _fail("entries", f"do not follow index {index}: entry {i} has index {e.index}")
        if e.term < prev_term or e.term > term:
            _fail(
                "entries", f"have terms out of order: entry {e.index} has term {e.term} (message term {term})"
            )
        prev_term = e.term
    return entries


def _entry(obj: object) -> Entry:
    f = _array(obj, _ENTRY_FIELDS, "entry")
    return Entry(
        term=_uint(f[0], "entry.term"),
        index=_uint(f[1], "entry.index"),
        kind=_enum(EntryKind, f[2], "entry.kind"),
        data=_bytes(f[3], "entry.data"),
    )


def _chunk(obj: object) -> SnapshotChunk:
    f = _array(obj, _CHUNK_FIELDS, "snapshot")
    m = _array(f[0], _META_FIELDS, "snapshot.meta")
    voters = _id_set(m[2], "snapshot.voters")
    learners = _id_set(m[3], "snapshot.learners")
    if voters & learners:
        _fail("snapshot.meta", "a node is both voter and learner")
    meta = SnapshotMeta(
        index=_uint(m[0], "snapshot.index"),
        term=_uint(m[1], "snapshot.term"),
        conf=ConfState(voters, learners),
    )
    return SnapshotChunk(
        meta=meta,
        offset=_uint(f[1], "snapshot.offset"),
        data=_bytes(f[2], "snapshot.data"),
        done=_bool(f[3], "snapshot.done"),
    )


# -- exact-type field checks ----------------------------------------------------


def _fail(name: str, problem: str) -> NoReturn:
    raise FrameError(f"malformed message: {name} {problem}")


def _array(obj: object, n: int, name: str) -> list[Any]:
    if not isinstance(obj, list) or len(obj) != n:
        _fail(name, f"is not an array of {n} fields")
    return obj


def _uint(obj: object, name: str) -> int:
    if type(obj) is not int or obj < 0:  # bool is an int subclass: refuse it too
        _fail(name, f"is not a non-negative integer: {obj!r:.40}")
    return obj


def _bool(obj: object, name: str) -> bool:
    if type(obj) is not bool:
        _fail(name, "is not a boolean")
    return obj


def _bytes(obj: object, name: str) -> bytes:
    if type(obj) is not bytes:
        _fail(name, "is not a byte string")
    return obj


def _node_id(obj: object, name: str) -> str:
    if type(obj) is not str or not obj:
        _fail(name, "is not a non-empty node id")
    return obj


def _id_set(obj: object, name: str) -> frozenset[str]:
    if not isinstance(obj, list):
        _fail(name, "is not an array")
    ids = frozenset(_node_id(x, name) for x in obj)
    if len(ids) != len(obj):
        _fail(name, "has duplicates")
    return ids


def _enum(cls: Any, obj: object, name: str) -> Any:
    if type(obj) is not int:
        _fail(name, "is not an integer")
    try:
        return cls(obj)
    except ValueError:
        _fail(name, f"has unknown value {obj}")
