"""Commands of the replicated KV store and their wire format.

A command is what a client proposes and what every replica applies from the
Raft log, so its encoding is part of the durable format: once an entry is in
a log it must decode the same way on every version that may replay it.

Wire format (msgpack, one array per command)::

    [FORMAT_VERSION, OP_PUT,    key, value, prev_revision, request_id]
    [FORMAT_VERSION, OP_DELETE, key,        prev_revision, request_id]

``prev_revision`` is nil (unconditional), 0 ("must not exist") or a positive
revision (compare-and-swap on the key's mod_revision). The leading format tag
lets later versions add commands or fields without guessing at old entries;
an entry with an unknown tag is rejected, never half-understood.

Validation lives in the constructors, so a ``Put`` or ``Delete`` that exists
is valid, whether it was built by a client or decoded from a log entry.
Decoding converts every failure (garbage bytes, wrong shapes, unknown tags,
oversize fields) to :class:`CommandError` at the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import msgpack

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_VALUE_BYTES",
    "MAX_REQUEST_ID_BYTES",
    "MAX_COMMAND_BYTES",
    "FORMAT_VERSION",
    "KVError",
    "CommandError",
    "Put",
    "Delete",
    "Command",
    "encode_command",
    "decode_command",
]

MAX_KEY_BYTES = 1024
"""Longest key, in UTF-8 bytes (keys are paths, not payloads)."""

MAX_VALUE_BYTES = 1 << 20
"""Longest value, in UTF-8 bytes: one MiB keeps a log entry cheap to replicate."""

MAX_REQUEST_ID_BYTES = 1024
"""Longest request id; it only has to tell a client's requests apart."""

MAX_COMMAND_BYTES = MAX_KEY_BYTES + MAX_VALUE_BYTES + MAX_REQUEST_ID_BYTES + 64
"""No valid encoded command is longer (fields plus msgpack headers); the
decoder refuses longer input before unpacking it."""

FORMAT_VERSION = 1
OP_PUT = 1
OP_DELETE = 2


class KVError(Exception):
    """Base class of the errors this package raises about its input."""


class CommandError(KVError):
    """A command is invalid: bad field values, or bytes that do not decode to
    a command of a known format. Raised by the constructors and the decoder;
    nothing else escapes them."""


def _utf8_len(field: str, text: object) -> int:
    """Length of ``text`` in UTF-8, refusing non-str and unencodable text
    (lone surrogates cannot be stored or sent)."""
    if not isinstance(text, str):
        raise CommandError(f"{field} must be a str, got {type(text).__name__}")
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise CommandError(f"{field} is not valid UTF-8 text: {exc.reason}") from exc


def _check_key(key: object) -> None:
    size = _utf8_len("key", key)
    if size == 0:
        raise CommandError("key must not be empty")
    if size > MAX_KEY_BYTES:
        raise CommandError(
            f"key is {size} bytes in UTF-8; the limit is {MAX_KEY_BYTES} (MAX_KEY_BYTES)"
        )


def _check_value(value: object) -> None:
    size = _utf8_len("value", value)
    if size > MAX_VALUE_BYTES:
        raise CommandError(
            f"value is {size} bytes in UTF-8; the limit is {MAX_VALUE_BYTES} (MAX_VALUE_BYTES)"
        )


def _check_prev_revision(prev: object) -> None:
    # bool is an int subclass; True must not pass for revision 1.
    if prev is None:
        return
    if not isinstance(prev, int) or isinstance(prev, bool):
        raise CommandError(f"prev_revision must be an int or None, got {type(prev).__name__}")
    if prev < 0:
        raise CommandError(f"prev_revision must be >= 0, got {prev}")


def _check_request_id(request_id: object) -> None:
    size = _utf8_len("request_id", request_id)
    if size > MAX_REQUEST_ID_BYTES:
        raise CommandError(
            f"request_id is {size} bytes in UTF-8; the limit is {MAX_REQUEST_ID_BYTES}"
        )


@dataclass(frozen=True, slots=True)
class Put:
    """Set ``key`` to ``value``. ``prev_revision``: None = unconditional,
    0 = only if the key does not exist, r > 0 = only if its mod_revision is r.
    ``request_id`` is echoed in the result so the proposer can match it."""

    key: str
    value: str
    prev_revision: int | None = None
    request_id: str = ""

    def __post_init__(self) -> None:
        _check_key(self.key)
        _check_value(self.value)
        _check_prev_revision(self.prev_revision)
        _check_request_id(self.request_id)


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove ``key``. ``prev_revision`` as for :class:`Put`; 0 is accepted
    but can never succeed (an absent key is NotFound, a present one is a
    mismatch), which keeps the HTTP layer free of a special case."""

    key: str
    prev_revision: int | None = None
    request_id: str = ""

    def __post_init__(self) -> None:
        _check_key(self.key)
        _check_prev_revision(self.prev_revision)
        _check_request_id(self.request_id)


Command: TypeAlias = Put | Delete


def encode_command(cmd: Command) -> bytes:
    """The log-entry bytes of ``cmd`` (see the module docstring)."""
    if isinstance(cmd, Put):
        fields: list[Any] = [
            FORMAT_VERSION, OP_PUT, cmd.key, cmd.value, cmd.prev_revision, cmd.request_id,
        ]
    elif isinstance(cmd, Delete):
        fields = [FORMAT_VERSION, OP_DELETE, cmd.key, cmd.prev_revision, cmd.request_id]
    else:
        raise CommandError(f"not a KV command: {type(cmd).__name__}")
    return msgpack.packb(fields, use_bin_type=True)


def _unpack(data: object) -> Any:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CommandError(f"command data must be bytes, got {type(data).__name__}")
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size > MAX_COMMAND_BYTES:
        raise CommandError(f"command is {size} bytes; no valid command exceeds {MAX_COMMAND_BYTES}")
    try:
        return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:
        # The unpacker's error set differs between its C and pure-Python
        # builds (ValueError and subclasses, TypeError, RecursionError...);
        # whatever it raises, the bytes are not a command.
        raise CommandError(f"command is not valid msgpack: {_short(exc)}") from exc


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def decode_command(data: bytes) -> Command:
    """Decode log-entry bytes into a command; :class:`CommandError` on any
    invalid input, and no other exception."""
    raw = _unpack(data)
    if not isinstance(raw, list) or len(raw) < 2:
        raise CommandError("command must be a msgpack array [format, op, ...]")
    version, op, args = raw[0], raw[1], raw[2:]
    if not _is_int(version):
        raise CommandError(f"command format tag must be an int, got {type(version).__name__}")
    if version != FORMAT_VERSION:
        raise CommandError(
            f"unsupported command format {version}; this version reads format {FORMAT_VERSION}"
        )
    if _is_int(op) and op == OP_PUT:
        if len(args) != 4:
            raise CommandError(f"put takes 4 fields, got {len(args)}")
        return Put(key=args[0], value=args[1], prev_revision=args[2], request_id=args[3])
    if _is_int(op) and op == OP_DELETE:
        if len(args) != 3:
            raise CommandError(f"delete takes 3 fields, got {len(args)}")
        return Delete(key=args[0], prev_revision=args[1], request_id=args[2])
    raise CommandError(f"unknown command op {_short(op)}")


def _short(value: object) -> str:
    """A repr bounded in length: error messages echo untrusted input."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
