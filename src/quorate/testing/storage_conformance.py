"""A conformance suite every ``Storage`` must pass (trio's idea: one set of
checks, many implementations).

Give it a ``StorageFactory``: ``make()`` returns a fresh, empty storage and
``reopen(storage)`` returns what a restarted process would see of the same
data (FileStorage closes and reopens the directory; MemoryStorage copies its
``load()`` into a new object). Each check is a plain function of the factory
that raises ``AssertionError`` on a difference, so any test runner can use
it::

    for name, check in CHECKS.items():
        check(factory)

The last check drives random operations against a deliberately simple model
(a dict of index -> entry) with a seeded ``random.Random``, reopening now and
then, so a failure replays from its seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from quorate.raft.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    PersistentState,
    Snapshot,
    SnapshotMeta,
)
from quorate.storage.base import Storage
from quorate.storage.errors import StorageError


@dataclass(frozen=True, slots=True)
class StorageFactory:
    make: Callable[[], Storage]
    reopen: Callable[[Storage], Storage]


def entries(lo: int, hi: int, term: int = 1, tag: str = "e") -> list[Entry]:
    """Entries ``lo..hi`` inclusive, each with distinct data."""
    return [Entry(term, i, data=f"{tag}{i}t{term}".encode()) for i in range(lo, hi + 1)]


def snap(index: int, term: int = 1, data: bytes = b"image") -> Snapshot:
    conf = ConfState(frozenset({"n1", "n2", "n3"}), frozenset({"n4"}))
    return Snapshot(SnapshotMeta(index, term, conf), data + str(index).encode())


def _same_after_reopen(factory: StorageFactory, storage: Storage) -> Storage:
    before = storage.load()
    reopened = factory.reopen(storage)
    assert reopened.load() == before, "reopen changed what load() returns"
    return reopened


def _indices(state: PersistentState) -> list[int]:
    return [e.index for e in state.entries]


# -- the checks ----------------------------------------------------------------


def check_protocol_and_empty_load(factory: StorageFactory) -> None:
    storage = factory.make()
    assert isinstance(storage, Storage)
    assert storage.load() == PersistentState()
    storage.save(None, (), None)  # nothing to do is not an error
    storage = _same_after_reopen(factory, storage)
    assert storage.load() == PersistentState()
    storage.close()


def check_round_trip(factory: StorageFactory) -> None:
    storage = factory.make()
    conf = Entry(1, 1, EntryKind.CONF_CHANGE, b'{"node": "n1"}')
    batch = [conf, *entries(2, 5), Entry(1, 6, data=b"")]  # a no-op entry too
    storage.save(HardState(1, "n1", 2), batch, None)
    state = storage.load()
    assert state == PersistentState(HardState(1, "n1", 2), None, tuple(batch))
    storage.save(HardState(2, None, 4), (), None)
    storage.save(None, entries(7, 8, term=2), None)
    assert storage.load().hard_state == HardState(2, None, 4)
    assert _indices(storage.load()) == list(range(1, 9))
    _same_after_reopen(factory, storage).close()


def check_overwrite_conflicting_suffix(factory: StorageFactory) -> None:
    storage = factory.make()
    storage.save(HardState(1, "n1", 2), entries(1, 6), None)
    storage.save(HardState(2, "n2", 2), entries(4, 5, term=2), None)
    state = storage.load()
    assert [(e.index, e.term) for e in state.entries] == [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)]
    # A batch that overwrites part of itself: the last write at each index wins.
    storage.save(None, [*entries(6, 8, term=2), *entries(7, 7, term=3)], None)
    assert [(e.index, e.term) for e in storage.load().entries][-3:] == [(5, 2), (6, 2), (7, 3)]
    storage = _same_after_reopen(factory, storage)
    storage.save(None, entries(3, 3, term=4), None)
    assert _indices(storage.load()) == [1, 2, 3]
    _same_after_reopen(factory, storage).close()


def check_compaction(factory: StorageFactory) -> None:
    storage = factory.make()
    storage.save(HardState(1, "n1", 8), entries(1, 10), None)
    storage.compact(snap(6))
    state = storage.load()
    assert state.snapshot == snap(6)
    assert _indices(state) == [7, 8, 9, 10]
    storage.compact(snap(4))  # older than the stored one: nothing to do
    storage.compact(snap(6))
    assert storage.load() == state
    for bad in (snap(11), snap(8, term=5)):  # beyond the log; contradicts the log
        try:
            storage.compact(bad)
        except StorageError:
            pass
        else:
            raise AssertionError(f"compact({bad.meta}) was accepted")
    assert storage.load() == state
    storage = _same_after_reopen(factory, storage)
    storage.compact(snap(10))
    assert storage.load().entries == ()
    storage.save(None, entries(11, 12), None)
    assert _indices(storage.load()) == [11, 12]
    _same_after_reopen(factory, storage).close()


def check_leader_snapshot_replaces_log(factory: StorageFactory) -> None:
    storage = factory.make()
    storage.save(HardState(1, "n1", 3), entries(1, 10), None)
    storage.save(HardState(2, "n2", 5), (), snap(5, term=2))
    state = storage.load()
    assert state == PersistentState(HardState(2, "n2", 5), snap(5, term=2), ())
    storage = _same_after_reopen(factory, storage)
    # Beyond the log, with entries after it in the same save.
    storage.save(HardState(3, "n3", 20), entries(21, 23, term=3), snap(20, term=3))
    state = storage.load()
    assert state.snapshot == snap(20, term=3)
    assert _indices(state) == [21, 22, 23]
    storage.save(None, (), snap(20, term=3, data=b"again"))  # same index again
    assert storage.load().entries == ()
    _same_after_reopen(factory, storage).close()


def _refused(
    storage: Storage, hard_state: HardState | None, batch: Sequence[Entry], snapshot: Snapshot | None
) -> None:
    before = storage.load()
    try:
        storage.save(hard_state, batch, snapshot)
    except StorageError:
        pass
    else:
        raise AssertionError(f"save({hard_state}, {[e.index for e in batch]}, {snapshot}) was accepted")
    assert storage.load() == before, "a refused save changed the state"


def check_refused_writes(factory: StorageFactory) -> None:
    storage = factory.make()
    _refused(storage, None, entries(2, 3), None)  # gap after an empty log
    storage.save(HardState(1, "n1", 4), entries(1, 8), None)
    storage.compact(snap(4))
    _refused(storage, None, entries(10, 11), None)  # gap
    _refused(storage, None, entries(4, 6, term=2), None)  # at the snapshot index
    _refused(storage, None, entries(2, 2, term=2), None)  # below it
    _refused(storage, None, [*entries(9, 9), *entries(11, 11)], None)  # gap inside a batch
    _refused(storage, None, (), snap(3))  # an older snapshot
    _refused(storage, HardState(1, "n1", 9), (), None)  # commit beyond the log
    _refused(storage, HardState(1, "n1", 9), entries(9, 9), snap(2))  # valid entry, bad snapshot
    storage = _same_after_reopen(factory, storage)
    storage.save(HardState(1, "n1", 9), entries(9, 9), None)  # still usable
    assert _indices(storage.load()) == [5, 6, 7, 8, 9]
    storage.close()


def check_reopen_sees_exactly_what_was_saved(factory: StorageFactory) -> None:
    storage = factory.make()
    expected: list[Entry] = []
    for round_ in range(1, 6):
        lo = len(expected) + 1
        batch = entries(lo, lo + 2 * round_, term=round_)
        storage.save(HardState(round_, f"n{round_}", lo - 1), batch, None)
        expected.extend(batch)
        storage = factory.reopen(storage)
        state = storage.load()
        assert state.entries == tuple(expected)
        assert state.hard_state == HardState(round_, f"n{round_}", lo - 1)
    storage.close()


def check_random_operations(factory: StorageFactory, seeds: range = range(3), steps: int = 120) -> None:
    for seed in seeds:
        _random_run(factory, random.Random(seed), steps, seed)


CHECKS: dict[str, Callable[[StorageFactory], None]] = {
    "empty_load": check_protocol_and_empty_load,
    "round_trip": check_round_trip,
    "overwrite_conflicting_suffix": check_overwrite_conflicting_suffix,
    "compaction": check_compaction,
    "leader_snapshot_replaces_log": check_leader_snapshot_replaces_log,
    "refused_writes": check_refused_writes,
    "reopen": check_reopen_sees_exactly_what_was_saved,
    "random_operations": check_random_operations,
}


def run_all(factory: StorageFactory) -> None:
    for check in CHECKS.values():
        check(factory)


# -- the model and the random driver --------------------------------------------


class _Model:
    """What any storage must return: the obvious, slow way."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot: Snapshot | None = None
        self.log: dict[int, Entry] = {}

    @property
    def base(self) -> int:
        return self.snapshot.meta.index if self.snapshot else 0

    @property
    def last(self) -> int:
        return max(self.log, default=self.base)

    def term_at(self, index: int) -> int:
        if index == self.base:
            return self.snapshot.meta.term if self.snapshot else 0
        return self.log[index].term

    def save(self, hard_state: HardState | None, batch: list[Entry], snapshot: Snapshot | None) -> None:
        if snapshot is not None:
            self.snapshot, self.log = snapshot, {}
        for entry in batch:
            self.log = {i: e for i, e in self.log.items() if i < entry.index}
            self.log[entry.index] = entry
        if hard_state is not None:
            self.hard_state = hard_state

    def compact(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.log = {i: e for i, e in self.log.items() if i > snapshot.meta.index}

    def state(self) -> PersistentState:
        return PersistentState(self.hard_state, self.snapshot, tuple(self.log[i] for i in sorted(self.log)))


def _random_run(factory: StorageFactory, rng: random.Random, steps: int, seed: int) -> None:
    storage, model = factory.make(), _Model()
    for step in range(steps):
        roll = rng.random()
        if roll < 0.6:
            _random_append(storage, model, rng)
        elif roll < 0.7 and model.hard_state.commit > model.base:
            index = rng.randint(model.base + 1, model.hard_state.commit)
            snapshot = snap(index, model.term_at(index), f"s{seed}.{step}".encode())
            storage.compact(snapshot)
            model.compact(snapshot)
        elif roll < 0.76:
            _random_leader_snapshot(storage, model, rng, f"l{seed}.{step}")
        elif roll < 0.86:
            storage = factory.reopen(storage)
        else:
            _random_refused(storage, model, rng)
        actual = storage.load()
        assert actual == model.state(), f"seed {seed} step {step}: storage and model differ"
    storage.close()


def _random_append(storage: Storage, model: _Model, rng: random.Random) -> None:
    hs = model.hard_state
    lo = model.last + 1
    term = max(hs.term, model.term_at(model.last), 1)
    if rng.random() < 0.25 and model.last > max(hs.commit, model.base):
        lo = rng.randint(max(hs.commit, model.base) + 1, model.last)  # a new leader's log wins
        term += 1
    batch = entries(lo, lo + rng.randint(0, 7), term, tag=f"r{rng.randrange(1 << 30)}.")
    new_hs = None
    if rng.random() < 0.7:
        commit = rng.randint(hs.commit, batch[-1].index)
        new_hs = HardState(term, rng.choice([None, "n1", "n2"]), commit)
    storage.save(new_hs, batch, None)
    model.save(new_hs, batch, None)


def _random_leader_snapshot(storage: Storage, model: _Model, rng: random.Random, tag: str) -> None:
    index = max(model.hard_state.commit, model.base) + rng.randint(1, 12)
    term = max(model.hard_state.term, model.term_at(model.last), 1) + rng.randint(0, 1)
    snapshot = snap(index, term, tag.encode())
    batch = entries(index + 1, index + rng.randint(0, 3), term) if rng.random() < 0.5 else []
    hard_state = HardState(term, "n1", index)
    storage.save(hard_state, batch, snapshot)
    model.save(hard_state, batch, snapshot)


def _random_refused(storage: Storage, model: _Model, rng: random.Random) -> None:
    kind = rng.randrange(3)
    if kind == 0:
        batch = entries(model.last + 2, model.last + 3)
    elif kind == 1 and model.base > 0:
        batch = entries(rng.randint(1, model.base), model.base + 1, term=99)
    else:
        batch = [Entry(1, model.last + 1), *entries(model.last + 3, model.last + 3)]
    _refused(storage, None, batch, None)
