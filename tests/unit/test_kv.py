"""Unit tests of the KV state machine: commands, results, revisions, CAS,
prefix listing, snapshots and the decoder's error boundary."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import msgpack
import pytest

import quorate.kv as kv_pkg
from quorate.kv import (
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    Applied,
    CommandError,
    Delete,
    KeyValue,
    KVStore,
    NotFound,
    Put,
    Rejected,
    RevisionMismatch,
    SnapshotError,
    decode_command,
    encode_command,
)


class Driver:
    """A store plus the next log index, so tests read as a list of commands."""

    def __init__(self) -> None:
        self.store = KVStore()
        self.index = 0

    def put(self, key: str, value: str, prev: int | None = None, rid: str = "r"):
        return self.raw(encode_command(Put(key, value, prev, rid)))

    def delete(self, key: str, prev: int | None = None, rid: str = "r"):
        return self.raw(encode_command(Delete(key, prev, rid)))

    def raw(self, data: bytes):
        self.index += 1
        return self.store.apply(self.index, data)


@pytest.fixture
def d() -> Driver:
    return Driver()


# -- results and revisions ----------------------------------------------------


def test_fresh_store_is_empty(d: Driver) -> None:
    assert d.store.revision == 0
    assert d.store.applied_index == 0
    assert d.store.get("a") is None
    assert d.store.list_prefix("") == []
    assert len(d.store) == 0


def test_put_creates_key_with_new_revision(d: Driver) -> None:
    assert d.put("a/b", "x", rid="c1-7") == Applied(revision=1, request_id="c1-7")
    assert d.store.get("a/b") == KeyValue("a/b", "x", 1, 1, 1)
    assert d.store.revision == 1
    assert d.store.applied_index == 1


def test_put_on_present_key_keeps_create_and_bumps_mod_and_version(d: Driver) -> None:
    d.put("a", "1")
    d.put("other", "z")
    assert d.put("a", "2") == Applied(3, "r")
    assert d.put("a", "3") == Applied(4, "r")
    assert d.store.get("a") == KeyValue("a", "3", 1, 4, 3)
    assert d.store.get("other") == KeyValue("other", "z", 2, 2, 1)


def test_empty_value_is_a_value(d: Driver) -> None:
    d.put("a", "")
    assert d.store.get("a") == KeyValue("a", "", 1, 1, 1)


def test_cas_zero_creates_only_when_absent(d: Driver) -> None:
    assert d.put("a", "x", prev=0, rid="p1") == Applied(1, "p1")
    assert d.put("a", "y", prev=0, rid="p2") == RevisionMismatch(current_revision=1, request_id="p2")
    assert d.store.get("a") == KeyValue("a", "x", 1, 1, 1)
    assert d.store.revision == 1


def test_cas_on_current_mod_revision_succeeds(d: Driver) -> None:
    d.put("a", "x")
    d.put("b", "x")
    assert d.put("a", "y", prev=1) == Applied(3, "r")
    assert d.store.get("a") == KeyValue("a", "y", 1, 3, 2)


def test_cas_with_stale_revision_fails_and_reports_current(d: Driver) -> None:
    d.put("a", "x")
    d.put("a", "y")
    assert d.put("a", "z", prev=1, rid="s") == RevisionMismatch(2, "s")
    assert d.store.get("a") == KeyValue("a", "y", 1, 2, 2)
    assert d.store.revision == 2
    assert d.store.applied_index == 3


def test_cas_on_absent_key_reports_zero(d: Driver) -> None:
    assert d.put("a", "x", prev=5, rid="q") == RevisionMismatch(0, "q")
    assert d.store.get("a") is None
    assert d.store.revision == 0


def test_delete_removes_key_and_bumps_revision(d: Driver) -> None:
    d.put("a", "x")
    assert d.delete("a", rid="d1") == Applied(2, "d1")
    assert d.store.get("a") is None
    assert d.store.revision == 2
    assert d.store.list_prefix("") == []


def test_delete_of_absent_key_is_not_found(d: Driver) -> None:
    assert d.delete("nope", rid="d") == NotFound(request_id="d")
    assert d.delete("nope", prev=3, rid="e") == NotFound(request_id="e")
    assert d.store.revision == 0
    assert d.store.applied_index == 2


def test_delete_with_cas(d: Driver) -> None:
    d.put("a", "x")
    d.put("a", "y")
    assert d.delete("a", prev=1) == RevisionMismatch(2, "r")
    assert d.delete("a", prev=0) == RevisionMismatch(2, "r")
    assert d.store.get("a") is not None
    assert d.delete("a", prev=2) == Applied(3, "r")


def test_put_after_delete_recreates_key(d: Driver) -> None:
    d.put("a", "x")
    d.put("a", "y")
    d.delete("a")
    assert d.put("a", "z", prev=0) == Applied(4, "r")
    assert d.store.get("a") == KeyValue("a", "z", 4, 4, 1)


def test_rejected_entry_changes_nothing_but_applied_index(d: Driver) -> None:
    d.put("a", "x")
    before_digest = d.store.digest()
    result = d.raw(b"\xc1 not msgpack")
    assert isinstance(result, Rejected)
    assert result.request_id == ""
    assert "msgpack" in result.reason
    assert d.store.revision == 1
    assert d.store.applied_index == 2
    assert d.store.get("a") == KeyValue("a", "x", 1, 1, 1)
    assert d.store.digest() == before_digest
    assert d.put("b", "y") == Applied(2, "r")


def test_rejected_for_oversize_value_in_log(d: Driver) -> None:
    data = msgpack.packb([1, 1, "k", "v" * (MAX_VALUE_BYTES + 1), None, "rid"])
    result = d.raw(data)
    assert isinstance(result, Rejected)
    assert d.store.get("k") is None


# -- apply index discipline ----------------------------------------------------


def test_applying_same_index_twice_is_refused(d: Driver) -> None:
    data = encode_command(Put("a", "x"))
    d.store.apply(3, data)
    with pytest.raises(ValueError, match="not after"):
        d.store.apply(3, data)
    with pytest.raises(ValueError):
        d.store.apply(2, data)
    assert d.store.revision == 1
    assert d.store.applied_index == 3
    assert d.store.get("a") == KeyValue("a", "x", 1, 1, 1)


def test_apply_accepts_index_gaps(d: Driver) -> None:
    d.store.apply(5, encode_command(Put("a", "x")))
    d.store.apply(9, encode_command(Put("a", "y")))
    assert d.store.applied_index == 9
    assert d.store.revision == 2


@pytest.mark.parametrize("index", [0, -1, True, 1.0, "1"])
def test_apply_refuses_bad_index(d: Driver, index: object) -> None:
    with pytest.raises(ValueError):
        d.store.apply(index, encode_command(Put("a", "x")))  # type: ignore[arg-type]
    assert d.store.applied_index == 0


# -- list_prefix -----------------------------------------------------------------


def test_list_prefix_is_sorted_and_bounded_by_prefix(d: Driver) -> None:
    for key in ["a/c", "a/a", "b/a", "a", "a0", "a/b/c", "a/b", "a."]:
        d.put(key, key.upper())
    assert [kv.key for kv in d.store.list_prefix("a/")] == ["a/a", "a/b", "a/b/c", "a/c"]
    assert [kv.key for kv in d.store.list_prefix("a")] == [
        "a", "a.", "a/a", "a/b", "a/b/c", "a/c", "a0",
    ]
    assert [kv.key for kv in d.store.list_prefix("")] == sorted(
        ["a/c", "a/a", "b/a", "a", "a0", "a/b/c", "a/b", "a."]
    )
    assert d.store.list_prefix("c") == []
    assert d.store.list_prefix("a/b/c/") == []
    assert d.store.list_prefix("a/b/")[0] == KeyValue("a/b/c", "A/B/C", 6, 6, 1)


def test_list_prefix_limit(d: Driver) -> None:
    for key in ["p/3", "p/1", "p/2", "q"]:
        d.put(key, "v")
    assert [kv.key for kv in d.store.list_prefix("p/", limit=2)] == ["p/1", "p/2"]
    assert [kv.key for kv in d.store.list_prefix("p/", limit=10)] == ["p/1", "p/2", "p/3"]
    assert d.store.list_prefix("p/", limit=0) == []
    assert len(d.store.list_prefix("p/", limit=None)) == 3
    with pytest.raises(ValueError):
        d.store.list_prefix("p/", limit=-1)


def test_list_prefix_follows_deletes(d: Driver) -> None:
    for key in ["p/1", "p/2", "p/3"]:
        d.put(key, "v")
    d.delete("p/2")
    assert [kv.key for kv in d.store.list_prefix("p/")] == ["p/1", "p/3"]
    d.put("p/2", "w")
    assert [kv.key for kv in d.store.list_prefix("p/")] == ["p/1", "p/2", "p/3"]


def test_list_prefix_order_is_utf8_byte_order(d: Driver) -> None:
    keys = ["z", "é", "\uffff", "\U0001f600", "A", "~", "\u00ff"]
    for key in keys:
        d.put(key, "v")
    listed = [kv.key for kv in d.store.list_prefix("")]
    assert listed == sorted(keys, key=lambda k: k.encode("utf-8"))


# -- command validation and encoding ----------------------------------------------


def test_limits() -> None:
    assert MAX_KEY_BYTES == 1024
    assert MAX_VALUE_BYTES == 1024 * 1024


def test_max_size_key_and_value_are_accepted() -> None:
    Put("k" * MAX_KEY_BYTES, "v" * MAX_VALUE_BYTES)
    Put("é" * (MAX_KEY_BYTES // 2), "")
    Delete("k" * MAX_KEY_BYTES)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"key": "", "value": "v"}, "empty"),
        ({"key": "k" * (MAX_KEY_BYTES + 1), "value": "v"}, "MAX_KEY_BYTES"),
        ({"key": "é" * (MAX_KEY_BYTES // 2 + 1), "value": "v"}, "1026 bytes"),
        ({"key": b"k", "value": "v"}, "key must be a str"),
        ({"key": 1, "value": "v"}, "key must be a str"),
        ({"key": "\ud800", "value": "v"}, "UTF-8"),
        ({"key": "k", "value": "v" * (MAX_VALUE_BYTES + 1)}, "MAX_VALUE_BYTES"),
        ({"key": "k", "value": None}, "value must be a str"),
        ({"key": "k", "value": b"v"}, "value must be a str"),
        ({"key": "k", "value": "v", "prev_revision": -1}, ">= 0"),
        ({"key": "k", "value": "v", "prev_revision": True}, "int or None"),
        ({"key": "k", "value": "v", "prev_revision": 1.0}, "int or None"),
        ({"key": "k", "value": "v", "request_id": None}, "request_id"),
        ({"key": "k", "value": "v", "request_id": "r" * 2000}, "request_id"),
    ],
)
def test_put_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(CommandError, match=match):
        Put(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"key": ""},
        {"key": "k" * (MAX_KEY_BYTES + 1)},
        {"key": None},
        {"key": "k", "prev_revision": -3},
        {"key": "k", "prev_revision": "1"},
        {"key": "k", "request_id": 7},
    ],
)
def test_delete_validation(kwargs: dict) -> None:
    with pytest.raises(CommandError):
        Delete(**kwargs)


def test_commands_are_frozen() -> None:
    cmd = Put("a", "b")
    with pytest.raises(AttributeError):
        cmd.key = "c"  # type: ignore[misc]


@pytest.mark.parametrize(
    "cmd",
    [
        Put("a/b", "x", None, "c1-7"),
        Put("a/b", "", 0, ""),
        Put("ключ/🔑", "välue\x00", 2**63, "id"),
        Delete("a/b", None, "c1-8"),
        Delete("a", 0),
        Delete("a", 12, "x"),
    ],
)
def test_encode_decode_round_trip(cmd: Put | Delete) -> None:
    data = encode_command(cmd)
    assert isinstance(data, bytes)
    assert decode_command(data) == cmd
    assert decode_command(bytearray(data)) == cmd
    assert decode_command(memoryview(data)) == cmd


def test_encoding_is_versioned_array() -> None:
    raw = msgpack.unpackb(encode_command(Put("a", "b", 3, "r")))
    assert raw == [1, 1, "a", "b", 3, "r"]
    raw = msgpack.unpackb(encode_command(Delete("a", None, "r")))
    assert raw == [1, 2, "a", None, "r"]


def test_encode_refuses_non_commands() -> None:
    with pytest.raises(CommandError):
        encode_command("put a b")  # type: ignore[arg-type]


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "msgpack"),
        (b"\xc1", "msgpack"),
        (b"\x92\x01", "msgpack"),  # truncated array
        (b"\xa1\xff", "msgpack"),  # invalid UTF-8 in str
        (b"\xd4\xff\x00", "msgpack"),  # bad timestamp ext
        (b"\x91" * 100_000, "msgpack"),  # nesting deeper than the unpacker allows
        (_pack([1, 1, "a", "b", None, "r"]) + b"\x00", "msgpack"),  # trailing data
        (_pack({"op": "put"}), "array"),
        (_pack(7), "array"),
        (_pack("put"), "array"),
        (_pack([]), "array"),
        (_pack([1]), "array"),
        (_pack([2, 1, "a", "b", None, "r"]), "unsupported command format 2"),
        (_pack([0, 1, "a", "b", None, "r"]), "unsupported command format 0"),
        (_pack(["1", 1, "a", "b", None, "r"]), "format tag"),
        (_pack([True, 1, "a", "b", None, "r"]), "format tag"),
        (_pack([1, 3, "a", "b", None, "r"]), "unknown command op"),
        (_pack([1, "put", "a", "b", None, "r"]), "unknown command op"),
        (_pack([1, True, "a", "b", None, "r"]), "unknown command op"),
        (_pack([1, 1.0, "a", "b", None, "r"]), "unknown command op"),
        (_pack([1, "x" * 10_000]), "unknown command op"),
        (_pack([1, 1, "a", "b", None]), "4 fields"),
        (_pack([1, 1, "a", "b", None, "r", "extra"]), "4 fields"),
        (_pack([1, 2, "a", None]), "3 fields"),
        (_pack([1, 1, b"a", "b", None, "r"]), "key must be a str"),
        (_pack([1, 1, "", "b", None, "r"]), "empty"),
        (_pack([1, 1, "a", 5, None, "r"]), "value must be a str"),
        (_pack([1, 1, "a", "b", -1, "r"]), ">= 0"),
        (_pack([1, 1, "a", "b", "1", "r"]), "int or None"),
        (_pack([1, 1, "a", "b", False, "r"]), "int or None"),
        (_pack([1, 1, "a", "b", None, ["r"]]), "request_id"),
        (_pack([1, 2, "k" * (MAX_KEY_BYTES + 1), None, "r"]), "MAX_KEY_BYTES"),
        (_pack([1, 1, "a", "b" * (MAX_VALUE_BYTES + 1), None, "r"]), "MAX_VALUE_BYTES"),
        (_pack([1, 1, "a", "b" * (MAX_VALUE_BYTES + 5000), None, "r"]), "no valid command"),
        (_pack([1, 1, {"k": 1}, "b", None, "r"]), "key must be a str"),
        (_pack([1, 1, "a", msgpack.ExtType(5, b"x"), None, "r"]), "value must be a str"),
        (b"\x96\x01\x01\x81\x01\x02", "msgpack"),  # int map key
    ],
)
def test_decode_garbage_raises_command_error(data: bytes, match: str) -> None:
    with pytest.raises(CommandError, match=match):
        decode_command(data)


@pytest.mark.parametrize("data", [None, "text", 12, [1, 1, "a", "b", None, "r"]])
def test_decode_non_bytes_raises_command_error(data: object) -> None:
    with pytest.raises(CommandError, match="bytes"):
        decode_command(data)  # type: ignore[arg-type]


def test_decode_random_bytes_only_raises_command_error() -> None:
    rng = random.Random(1234)
    valid = encode_command(Put("a/b", "xyz", 4, "rid"))
    for _ in range(3000):
        if rng.random() < 0.5:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        else:  # flip bytes of a valid command: near-misses reach deeper checks
            buf = bytearray(valid)
            for _ in range(rng.randrange(1, 4)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            data = bytes(buf)
        try:
            cmd = decode_command(data)
        except CommandError:
            continue
        assert isinstance(cmd, (Put, Delete))


def test_error_message_does_not_echo_huge_input() -> None:
    with pytest.raises(CommandError) as info:
        decode_command(_pack([1, "y" * 100_000]))
    assert len(str(info.value)) < 200


# -- snapshots and digests ---------------------------------------------------


def _populated() -> Driver:
    d = Driver()
    for i in range(50):
        d.put(f"k/{i % 17}", f"v{i}")
        if i % 5 == 0:
            d.delete(f"k/{(i * 3) % 17}")
    d.raw(b"garbage")
    return d


def test_snapshot_restore_round_trip() -> None:
    d = _populated()
    data = d.store.snapshot()
    restored = KVStore.restore(data)
    assert restored.digest() == d.store.digest()
    assert restored.snapshot() == data
    assert restored.revision == d.store.revision
    assert restored.applied_index == d.store.applied_index
    assert restored.list_prefix("") == d.store.list_prefix("")
    assert len(restored) == len(d.store)


def test_restored_store_keeps_applying_like_the_original() -> None:
    d = _populated()
    restored = KVStore.restore(d.store.snapshot())
    later = [Put("k/3", "new", None, "a"), Delete("k/4"), Put("fresh", "x", 0), Put("k/1", "y", 1)]
    for cmd in later:
        d.index += 1
        data = encode_command(cmd)
        assert restored.apply(d.index, data) == d.store.apply(d.index, data)
    assert restored.snapshot() == d.store.snapshot()


def test_restore_of_empty_snapshot() -> None:
    restored = KVStore.restore(KVStore().snapshot())
    assert restored.revision == 0
    assert restored.applied_index == 0
    assert restored.digest() == KVStore().digest()


def test_snapshot_is_deterministic_across_insertion_order() -> None:
    a, b = Driver(), Driver()
    a.put("x", "1")
    a.put("y", "2")
    a.delete("x")
    b.put("y", "0")
    b.delete("y")
    b.put("y", "2")
    # Same keys and revision but different history -> different create revisions.
    assert a.store.digest() != b.store.digest()
    c = Driver()
    c.put("x", "1")
    c.put("y", "2")
    c.delete("x")
    assert c.store.snapshot() == a.store.snapshot()
    assert c.store.digest() == a.store.digest()


def test_digest_is_short_and_ignores_applied_index() -> None:
    a, b = Driver(), Driver()
    a.put("x", "1")
    b.raw(b"junk")
    b.put("x", "1")
    assert a.store.applied_index != b.store.applied_index
    assert a.store.digest() == b.store.digest()
    assert a.store.snapshot() != b.store.snapshot()
    assert len(a.store.digest()) == 16
    assert int(a.store.digest(), 16) >= 0
    b.put("x", "2")
    assert a.store.digest() != b.store.digest()


def _snap(applied: int, revision: int, rows: list, fmt: object = 1) -> bytes:
    return _pack([fmt, applied, revision, rows])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        b"not a snapshot",
        _pack({"keys": []}),
        _pack([1, 0, 0]),
        _snap(0, 0, [], fmt=2),
        _snap(0, 0, [], fmt="1"),
        _snap(-1, 0, []),
        _snap(0, True, []),
        _snap(0, 0, {}),
        _snap(1, 1, [["a", "v", 1, 1]]),
        _snap(1, 1, ["a"]),
        _snap(1, 1, [["", "v", 1, 1, 1]]),
        _snap(1, 1, [[b"a", "v", 1, 1, 1]]),
        _snap(1, 1, [["a", 1, 1, 1, 1]]),
        _snap(1, 1, [["a", "v", 0, 1, 1]]),  # create 0
        _snap(1, 1, [["a", "v", 1, 2, 1]]),  # mod beyond revision
        _snap(1, 3, [["a", "v", 2, 1, 1]]),  # create after mod
        _snap(1, 3, [["a", "v", 1, 2, 3]]),  # version too high
        _snap(1, 3, [["a", "v", 1, 2, 0]]),  # version 0
        _snap(1, 3, [["a", "v", 1, 1, 1.0]]),
        _snap(1, 3, [["b", "v", 1, 1, 1], ["a", "v", 2, 2, 1]]),  # unsorted
        _snap(1, 3, [["a", "v", 1, 1, 1], ["a", "w", 2, 2, 1]]),  # duplicate key
        _snap(1, 3, [["a", "v", 1, 2, 1], ["b", "w", 2, 2, 1]]),  # shared mod rev
        _snap(1, 1, [["a", "v" * (MAX_VALUE_BYTES + 1), 1, 1, 1]]),
    ],
)
def test_corrupt_snapshot_raises_snapshot_error(data: bytes) -> None:
    with pytest.raises(SnapshotError):
        KVStore.restore(data)


def test_truncated_snapshot_raises_snapshot_error() -> None:
    data = _populated().store.snapshot()
    for cut in range(0, len(data), max(1, len(data) // 50)):
        with pytest.raises(SnapshotError):
            KVStore.restore(data[:cut])


def test_snapshot_errors_and_command_errors_share_a_base() -> None:
    assert issubclass(SnapshotError, kv_pkg.KVError)
    assert issubclass(CommandError, kv_pkg.KVError)
    assert not issubclass(CommandError, ValueError)


# -- package surface and the sans-IO rule ----------------------------------------


def test_public_api_is_exported() -> None:
    for name in [
        "KVStore", "Put", "Delete", "KeyValue", "Applied", "RevisionMismatch", "NotFound",
        "Rejected", "encode_command", "decode_command", "CommandError", "SnapshotError",
        "MAX_KEY_BYTES", "MAX_VALUE_BYTES",
    ]:
        assert name in kv_pkg.__all__
        assert hasattr(kv_pkg, name)


FORBIDDEN = {"asyncio", "socket", "time", "random", "os", "threading"}


def test_kv_imports_no_io_modules() -> None:
    package_dir = Path(kv_pkg.__file__).parent
    for path in sorted(package_dir.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
