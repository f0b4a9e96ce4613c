"""Property tests of the KV state machine.

The rule-based machine drives a KVStore and a deliberately simple oracle (a
dict of tuples plus a revision counter) with the same random commands and
compares every result and read. A second store, the "replica", applies the
same entries but is never snapshotted, so snapshot/restore cycles of the main
store must leave it indistinguishable from a replica that never restarted.

The fuzz tests hold the decoder to one invariant (as h11's fuzzing does):
any input either decodes to a valid command or raises CommandError.
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from quorate.kv import (
    Applied,
    CommandError,
    Delete,
    KeyValue,
    KVStore,
    NotFound,
    Put,
    Rejected,
    RevisionMismatch,
    decode_command,
    encode_command,
)

KEYS = st.one_of(
    st.sampled_from(["a", "a/b", "a/c", "a/b/c", "ab", "b", "é", "a/é"]),
    st.text(min_size=1, max_size=4),
)
PREFIXES = st.one_of(st.sampled_from(["", "a", "a/", "a/b", "b", "z"]), st.text(max_size=2))
VALUES = st.text(max_size=6)
# "current" asks for the key's actual mod_revision, so CAS succeeds often.
PREVS = st.one_of(st.none(), st.just("current"), st.integers(min_value=0, max_value=40))


class KVModel(RuleBasedStateMachine):
    """KVStore against the oracle: key -> (value, create, mod, version)."""

    def __init__(self) -> None:
        super().__init__()
        self.store = KVStore()
        self.replica = KVStore()
        self.oracle: dict[str, tuple[str, int, int, int]] = {}
        self.counter = 0
        self.index = 0

    # -- helpers --------------------------------------------------------------

    def _prev(self, key: str, prev: int | str | None) -> int | None:
        if prev == "current":
            return self.oracle[key][2] if key in self.oracle else 0
        assert prev is None or isinstance(prev, int)
        return prev

    def _apply(self, gap: int, data: bytes):
        self.index += gap
        result = self.store.apply(self.index, data)
        assert self.replica.apply(self.index, data) == result
        return result

    def _oracle_put(self, key: str, value: str, prev: int | None, rid: str):
        current = self.oracle[key][2] if key in self.oracle else 0
        if prev is not None and prev != current:
            return RevisionMismatch(current, rid)
        self.counter += 1
        if key in self.oracle:
            _, create, _, version = self.oracle[key]
            self.oracle[key] = (value, create, self.counter, version + 1)
        else:
            self.oracle[key] = (value, self.counter, self.counter, 1)
        return Applied(self.counter, rid)

    def _oracle_delete(self, key: str, prev: int | None, rid: str):
        if key not in self.oracle:
            return NotFound(rid)
        if prev is not None and prev != self.oracle[key][2]:
            return RevisionMismatch(self.oracle[key][2], rid)
        self.counter += 1
        del self.oracle[key]
        return Applied(self.counter, rid)

    def _oracle_kv(self, key: str) -> KeyValue:
        return KeyValue(key, *self.oracle[key])

    # -- rules ----------------------------------------------------------------

    @rule(key=KEYS, value=VALUES, prev=PREVS, gap=st.integers(1, 3), rid=st.text(max_size=3))
    def put(self, key: str, value: str, prev, gap: int, rid: str) -> None:
        p = self._prev(key, prev)
        expected = self._oracle_put(key, value, p, rid)
        assert self._apply(gap, encode_command(Put(key, value, p, rid))) == expected

    @rule(key=KEYS, prev=PREVS, gap=st.integers(1, 3), rid=st.text(max_size=3))
    def delete(self, key: str, prev, gap: int, rid: str) -> None:
        p = self._prev(key, prev)
        expected = self._oracle_delete(key, p, rid)
        assert self._apply(gap, encode_command(Delete(key, p, rid))) == expected

    @rule(junk=st.binary(max_size=20))
    def garbage(self, junk: bytes) -> None:
        # 0xc1 is never used by msgpack, so this can never decode.
        result = self._apply(1, b"\xc1" + junk)
        assert isinstance(result, Rejected)
        assert result.request_id == ""

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        expected = self._oracle_kv(key) if key in self.oracle else None
        assert self.store.get(key) == expected

    @rule(prefix=PREFIXES, limit=st.one_of(st.none(), st.integers(0, 5)))
    def list_prefix(self, prefix: str, limit: int | None) -> None:
        keys = sorted(k for k in self.oracle if k.startswith(prefix))
        if limit is not None:
            keys = keys[:limit]
        assert self.store.list_prefix(prefix, limit) == [self._oracle_kv(k) for k in keys]

    @rule()
    def snapshot_restore(self) -> None:
        data = self.store.snapshot()
        restored = KVStore.restore(data)
        assert restored.digest() == self.store.digest()
        assert restored.snapshot() == data
        self.store = restored

    @rule(back=st.integers(0, 5))
    def reapply_is_refused(self, back: int) -> None:
        before = self.store.snapshot()
        with pytest.raises(ValueError):
            self.store.apply(max(self.index - back, 0), encode_command(Put("a", "x")))
        assert self.store.snapshot() == before

    # -- invariants -------------------------------------------------------------

    @invariant()
    def counters_match(self) -> None:
        assert self.store.revision == self.counter
        assert self.store.applied_index == self.index
        assert len(self.store) == len(self.oracle)

    @invariant()
    def full_listing_matches(self) -> None:
        listed = self.store.list_prefix("")
        assert listed == [self._oracle_kv(k) for k in sorted(self.oracle)]

    @invariant()
    def replica_agrees(self) -> None:
        assert self.store.digest() == self.replica.digest()
        assert self.store.snapshot() == self.replica.snapshot()


TestKVModel = KVModel.TestCase
TestKVModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


# -- decoder fuzzing ------------------------------------------------------------

ATOMS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=8),
)
MSGPACK_VALUES = st.recursive(
    ATOMS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=7),
        st.dictionaries(st.text(max_size=3), inner, max_size=3),
    ),
    max_leaves=12,
)
# Arrays that start like a command, so decoding gets past the first checks.
NEAR_COMMANDS = st.builds(
    lambda head, rest: head + rest,
    st.lists(st.sampled_from([0, 1, 2, 3, True, 1.0, "1", None]), min_size=0, max_size=2),
    st.lists(st.one_of(ATOMS, st.sampled_from(["", "k", "a/b"])), max_size=6),
)


def _check_decode(data: bytes) -> None:
    try:
        cmd = decode_command(data)
    except CommandError:
        return
    assert isinstance(cmd, (Put, Delete))
    assert decode_command(encode_command(cmd)) == cmd


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_decode_arbitrary_bytes(data: bytes) -> None:
    _check_decode(data)


@settings(max_examples=300, deadline=None)
@given(st.one_of(MSGPACK_VALUES, NEAR_COMMANDS))
def test_decode_arbitrary_msgpack(value: object) -> None:
    _check_decode(msgpack.packb(value, use_bin_type=True))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.integers(1, 10))
def test_apply_never_raises_on_arbitrary_bytes(data: bytes, index: int) -> None:
    store = KVStore()
    result = store.apply(index, data)
    assert isinstance(result, (Applied, RevisionMismatch, NotFound, Rejected))
    assert store.applied_index == index


COMMANDS = st.one_of(
    st.builds(Put, KEYS, VALUES, st.one_of(st.none(), st.integers(0, 2**64 - 1)), st.text(max_size=5)),
    st.builds(Delete, KEYS, st.one_of(st.none(), st.integers(0, 2**64 - 1)), st.text(max_size=5)),
)


@settings(max_examples=200, deadline=None)
@given(COMMANDS)
def test_encode_decode_round_trip(cmd: Put | Delete) -> None:
    assert decode_command(encode_command(cmd)) == cmd
