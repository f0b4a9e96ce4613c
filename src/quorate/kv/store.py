"""The replicated key-value state machine.

Theory of operation
-------------------
Every replica feeds the same committed log entries, in index order, to
:meth:`KVStore.apply`; because applying is a pure function of the current
state and the entry bytes (no clock, randomness or IO), every replica reaches
the same state and returns the same result for each entry. The proposer
matches results to requests by ``request_id``.

Revisions follow etcd v3: one global counter, bumped by every successful put
or delete. A key remembers the revision that created it (``create_revision``),
the revision of its last put (``mod_revision``) and how many puts it has seen
since creation (``version``). A delete forgets the key entirely, so a later
put creates it afresh. Failed commands (CAS mismatch, delete of an absent key,
undecodable entries) change nothing but ``applied_index``.

Memory layout: a dict of key -> frozen slotted :class:`KeyValue` (replaced,
never mutated, so ``get`` can hand out the stored object), plus a sorted list
of the keys kept with ``bisect``. Creating or deleting a key costs a memmove
of the list (microseconds at 100,000 keys); updating an existing key does not
touch it; ``list_prefix`` costs O(log n + k) and snapshots come out in key
order without sorting. Python orders str by code point, which for valid
UTF-8 text is the same as etcd's byte order.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import msgpack

from .commands import (
    CommandError,
    Delete,
    KVError,
    Put,
    _check_key,
    _check_value,
    decode_command,
)

__all__ = [
    "KeyValue",
    "Applied",
    "RevisionMismatch",
    "NotFound",
    "Rejected",
    "ApplyResult",
    "SnapshotError",
    "KVStore",
]

SNAPSHOT_FORMAT = 1
_DIGEST_BYTES = 8


class SnapshotError(KVError):
    """Snapshot bytes are corrupt or of an unknown format; nothing was restored."""


class KeyValue(NamedTuple):
    """One live key. Invariant: 1 <= create_revision <= mod_revision and
    1 <= version <= mod_revision - create_revision + 1.

    A tuple, in the order of a snapshot row, so that a snapshot packs the
    live entries as they are (msgpack writes a tuple as an array): no
    per-key copy on the event loop, which for a large store was most of
    a snapshot's cost."""

    key: str
    value: str
    create_revision: int
    mod_revision: int
    version: int


@dataclass(frozen=True, slots=True)
class Applied:
    """The command took effect; ``revision`` is the new global revision (for
    a put, also the key's new mod_revision)."""

    revision: int
    request_id: str


@dataclass(frozen=True, slots=True)
class RevisionMismatch:
    """``prev_revision`` did not hold; ``current_revision`` is the key's
    mod_revision, 0 if the key is absent, so the client can retry a CAS."""

    current_revision: int
    request_id: str


@dataclass(frozen=True, slots=True)
class NotFound:
    """A delete of a key that does not exist."""

    request_id: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """The entry did not decode to a command. It is still consumed, because
    every replica rejects the same bytes the same way, and stopping the apply
    loop would wedge the cluster on one bad proposal."""

    reason: str
    request_id: str = ""


ApplyResult: TypeAlias = Applied | RevisionMismatch | NotFound | Rejected


class KVStore:
    """The KV state machine; see the module docstring."""

    __slots__ = ("_data", "_keys", "_revision", "_applied_index")

    def __init__(self) -> None:
        # Invariant: _keys == sorted(_data), and every mod_revision <= _revision.
        self._data: dict[str, KeyValue] = {}
        self._keys: list[str] = []
        self._revision = 0
        self._applied_index = 0

    @property
    def revision(self) -> int:
        """The global revision: the number of successful puts and deletes."""
        return self._revision

    @property
    def applied_index(self) -> int:
        """The Raft index of the last entry applied (0 before any)."""
        return self._applied_index

    def __len__(self) -> int:
        return len(self._data)

    # -- applying log entries -------------------------------------------------

    def apply(self, index: int, data: bytes) -> ApplyResult:
        """Apply the committed entry at Raft ``index``. Indexes must strictly
        increase (gaps are fine: other entry kinds are not given to the KV);
        a repeat is a caller bug, refused with ValueError before any change."""
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValueError(f"index must be an int, got {type(index).__name__}")
        if index <= self._applied_index:
            raise ValueError(
                f"entry {index} is not after the last applied entry {self._applied_index}"
            )
        self._applied_index = index
        try:
            cmd = decode_command(data)
        except CommandError as exc:
            return Rejected(reason=str(exc))
        if isinstance(cmd, Put):
            return self._put(cmd)
        return self._delete(cmd)

    def _put(self, cmd: Put) -> ApplyResult:
        old = self._data.get(cmd.key)
        current = old.mod_revision if old is not None else 0
        if cmd.prev_revision is not None and cmd.prev_revision != current:
            return RevisionMismatch(current_revision=current, request_id=cmd.request_id)
        self._revision += 1
        rev = self._revision
        if old is None:
            new = KeyValue(cmd.key, cmd.value, rev, rev, 1)
            bisect.insort(self._keys, cmd.key)
        else:
            new = KeyValue(cmd.key, cmd.value, old.create_revision, rev, old.version + 1)
        self._data[cmd.key] = new
        return Applied(revision=rev, request_id=cmd.request_id)

    def _delete(self, cmd: Delete) -> ApplyResult:
        old = self._data.get(cmd.key)
        if old is None:
            # Absence answers before the CAS check: there is nothing to compare.
            return NotFound(request_id=cmd.request_id)
        if cmd.prev_revision is not None and cmd.prev_revision != old.mod_revision:
            return RevisionMismatch(current_revision=old.mod_revision, request_id=cmd.request_id)
        self._revision += 1
        del self._data[cmd.key]
        del self._keys[bisect.bisect_left(self._keys, cmd.key)]
        return Applied(revision=self._revision, request_id=cmd.request_id)

    # -- reads ----------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        """The live entry for ``key``, or None."""
        return self._data.get(key)

    def list_prefix(self, prefix: str, limit: int | None = None) -> list[KeyValue]:
        """Live entries whose key starts with ``prefix``, sorted by key; at
        most ``limit`` of them (None: all; 0 gives an empty list)."""
        if limit is not None and (isinstance(limit, bool) or limit < 0):
            raise ValueError(f"limit must be None or >= 0, got {limit!r}")
        keys = self._keys
        lo = bisect.bisect_left(keys, prefix)
        # Keys starting with ``prefix`` are one run in sorted order, and
        # cutting every key to the prefix's length keeps the order: the run
        # ends where the cut keys pass the prefix.
        n = len(prefix)
        hi = bisect.bisect_right(keys, prefix, lo, key=lambda k: k[:n]) if prefix else len(keys)
        if limit is not None:
            hi = min(hi, lo + limit)
        return list(map(self._data.__getitem__, keys[lo:hi]))

    # -- snapshots ------------------------------------------------------------

    def _rows(self) -> list[KeyValue]:
        """Every live entry in key order; each is its own snapshot row."""
        return list(map(self._data.__getitem__, self._keys))

    def snapshot(self) -> bytes:
        """The whole state as msgpack ``[format, applied_index, revision,
        [[key, value, create, mod, version], ...]]`` in key order, so equal
        states give equal bytes."""
        doc = [SNAPSHOT_FORMAT, self._applied_index, self._revision, self._rows()]
        return msgpack.packb(doc, use_bin_type=True)

    def digest(self) -> str:
        """A short stable hash of the keys and the revision, for comparing
        replicas. ``applied_index`` is left out: it is the log position, not
        the data, so equal revisions must mean equal digests."""
        doc = [SNAPSHOT_FORMAT, self._revision, self._rows()]
        packed = msgpack.packb(doc, use_bin_type=True)
        return hashlib.blake2b(packed, digest_size=_DIGEST_BYTES).hexdigest()

    @classmethod
    def restore(cls, data: bytes) -> KVStore:
        """A store with the state of a :meth:`snapshot`; SnapshotError if the
        bytes are corrupt or break an invariant (a half-restored store would
        silently diverge from its peers)."""
        try:
            doc = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
        except Exception as exc:
            # As in decode_command: any unpacker failure means corrupt bytes.
            raise SnapshotError(f"snapshot is not valid msgpack: {type(exc).__name__}") from exc
        if not isinstance(doc, list) or len(doc) != 4:
            raise SnapshotError("snapshot must be an array [format, applied, revision, rows]")
        fmt, applied, revision, rows = doc
        if fmt != SNAPSHOT_FORMAT or not _is_count(fmt):
            raise SnapshotError(f"unsupported snapshot format {fmt!r:.40}")
        if not _is_count(applied) or not _is_count(revision):
            raise SnapshotError("snapshot applied_index and revision must be ints >= 0")
        if not isinstance(rows, list):
            raise SnapshotError("snapshot rows must be an array")
        store = cls()
        store._applied_index = applied
        store._revision = revision
        store._load_rows(rows)
        return store

    def _load_rows(self, rows: list[Any]) -> None:
        seen_mods: set[int] = set()
        keys, data, revision = self._keys, self._data, self._revision
        last = None
        for n, row in enumerate(rows):
            kv = _row_to_kv(n, row, revision)
            key = kv.key
            if last is not None and key <= last:
                raise SnapshotError(f"snapshot row {n}: keys not strictly ascending")
            if kv.mod_revision in seen_mods:
                # Each revision is one change, so no two live keys share one.
                raise SnapshotError(f"snapshot row {n}: mod_revision {kv.mod_revision} repeated")
            seen_mods.add(kv.mod_revision)
            keys.append(key)
            data[key] = kv
            last = key


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _row_to_kv(n: int, row: object, revision: int) -> KeyValue:
    """Validate one snapshot row against the KeyValue invariants (the
    command checks for key and value, called directly: a snapshot install
    runs this once per key)."""
    if type(row) is not list or len(row) != 5:
        raise SnapshotError(f"snapshot row {n}: expected [key, value, create, mod, version]")
    key, value, create, mod, version = row
    try:
        _check_key(key)
        _check_value(value)
    except CommandError as exc:
        raise SnapshotError(f"snapshot row {n}: {exc}") from exc
    # type() is int: no bool, and msgpack gives nothing else; >= 0 follows below.
    if type(create) is not int or type(mod) is not int or type(version) is not int:
        raise SnapshotError(f"snapshot row {n}: revisions and version must be ints >= 0")
    if not 1 <= create <= mod <= revision:
        raise SnapshotError(
            f"snapshot row {n}: need 1 <= create {create} <= mod {mod} <= revision {revision}"
        )
    if not 1 <= version <= mod - create + 1:
        raise SnapshotError(f"snapshot row {n}: version {version} impossible for its revisions")
    return KeyValue(key, value, create, mod, version)
