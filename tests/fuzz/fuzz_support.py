"""Shared pieces of the fuzz suite: a hang guard, a memory meter, and the
strategies that make hostile inputs (byte mutations, structured msgpack
garbage, deeply nested values).

A fuzz target's contract is "accepted, or refused with the module's own
error". The guard runs each example in a worker thread so that a hang fails
the example (after a generous limit) instead of stalling the suite, and
re-raises whatever the target raised so the caller can check its type.
"""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgpack
from hypothesis import strategies as st

T = TypeVar("T")

HANG_LIMIT_S = 10.0
"""Generous: every input here is small, so only a real hang comes near it."""

U64 = 2**64 - 1


class Hang(AssertionError):
    """The target did not return within :data:`HANG_LIMIT_S`."""


def guarded(fn: Callable[[], T], limit: float = HANG_LIMIT_S) -> T:
    """``fn()`` run in a daemon thread; its result or its exception, or
    :class:`Hang` when it is still running after ``limit`` seconds."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller as is
            box["error"] = exc

    worker = threading.Thread(target=run, name="fuzz-target", daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        raise Hang(f"no answer within {limit} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one measured call did: its peak allocation, and its value or
    the exception it raised (for the caller to judge)."""

    peak: int
    value: object = None
    error: BaseException | None = None


class MemoryMeter:
    """Peak bytes allocated by one call, traced with tracemalloc (started
    once per test, because starting it per example is slow)."""

    def __enter__(self) -> MemoryMeter:
        self._was_tracing = tracemalloc.is_tracing()
        if not self._was_tracing:
            tracemalloc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._was_tracing:
            tracemalloc.stop()

    def run(self, fn: Callable[[], object]) -> Outcome:
        """``fn()`` under the hang guard, with the bytes allocated at its
        peak above what was live before it."""
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        value: object = None
        error: BaseException | None = None
        try:
            value = guarded(fn)
        except Hang:
            raise
        except Exception as exc:  # noqa: BLE001 - returned for the caller to judge
            error = exc
        _, peak = tracemalloc.get_traced_memory()
        return Outcome(max(0, peak - before), value, error)


def memory_bound(input_size: int, per_byte: int = 200, constant: int = 1 << 20) -> int:
    """The most a decoder may allocate for ``input_size`` bytes of input.

    200 bytes per input byte covers the worst honest case (msgpack turns one
    byte ``0x90`` into an empty list, ~70 bytes with its GC header); a
    decoder that believed a length prefix would blow far past it."""
    return per_byte * input_size + constant


# -- byte mutations -------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` after a few random edits: bit flips, byte overwrites,
    insertions, deletions, duplicated slices, and a final truncation."""
    buf = bytearray(seed)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "dup", "u32"]))
        pos = draw(st.integers(min_value=0, max_value=max(0, len(buf) - 1)))
        if op == "flip" and buf:
            buf[pos] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif op == "set" and buf:
            buf[pos] = draw(st.integers(min_value=0, max_value=255))
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del buf[pos : pos + draw(st.integers(min_value=1, max_value=8))]
        elif op == "dup":
            end = pos + draw(st.integers(min_value=1, max_value=32))
            buf[pos:pos] = buf[pos:end]
        elif op == "u32" and len(buf) >= 4:
            # Lengths are 32-bit fields: overwrite one with an extreme value.
            value = draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]))
            at = min(pos, len(buf) - 4)
            buf[at : at + 4] = value.to_bytes(4, draw(st.sampled_from(["big", "little"])))
    if draw(st.booleans()):
        del buf[draw(st.integers(min_value=0, max_value=len(buf))) :]
    return bytes(buf)


# -- structured msgpack garbage ---------------------------------------------------

msgpack_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=U64)
    | st.sampled_from([0, 1, -1, 2**31, 2**32, 2**63 - 1, U64, -(2**63)])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.binary(max_size=12)
    | st.builds(msgpack.ExtType, st.integers(min_value=0, max_value=127), st.binary(max_size=8))
)
"""Every msgpack scalar kind, with the integer edges that break range checks."""

msgpack_keys = (
    st.text(max_size=8)
    | st.binary(max_size=8)
    | st.integers(min_value=-3, max_value=3)  # packs, but strict decoders refuse non-str keys
    | st.sampled_from(["proto", "ok", "node", "cluster", "version", "token", "epoch", "reason"])
)

msgpack_values = st.recursive(
    msgpack_scalars,
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(msgpack_keys, inner, max_size=5),
    max_leaves=30,
)
"""Nested maps and arrays of scalars: valid msgpack of the wrong shape."""


def nested(depth: int, leaf: bytes = b"\xc0", header: bytes = b"\x91") -> bytes:
    """``depth`` one-element arrays (or maps, with ``header=b"\\x81\\xa0"``)
    around ``leaf``: deep enough to break recursive decoders."""
    return header * depth + leaf


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)
