"""Safety invariants of Raft, checked after every simulated event.

Each checker is fed observations (an entry appended, an entry applied, a
node seen as leader, a restart) and keeps just enough global memory to
notice a violation the moment it happens: Raft §5.2 election safety, §5.3
log matching, §5.4 leader completeness and state machine safety, and
durability (nothing a node acknowledged or voted for is forgotten across a
crash). They take plain values, not RaftNode objects, so each one can be
shown to fail on hand-made data.

Quorum-loss recovery (a forced configuration in a new epoch, see
``recovery.py``) legitimately loses the committed entries that only the dead
held. ``RecoveryAudit`` decides at each force which entries those are (and
fails if a survivor held one), then the committed log and the snapshot images
*fork*: the survivors and every later node go on with the surviving prefix,
while nodes left behind in the old epoch keep being checked against the old
history. Election safety and log matching stay global and strict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from quorate.raft.types import Entry, EntryKind, PersistentState

TermAt = Callable[[int], "int | None"]


class InvariantViolation(AssertionError):
    """A safety property of the cluster was broken (a bug, never a fault)."""


class LivenessViolation(InvariantViolation):
    """The cluster did not recover in the allotted simulated time."""


@dataclass(frozen=True, slots=True)
class EntryId:
    """What makes two entries the same entry."""

    term: int
    kind: EntryKind
    data: bytes

    @classmethod
    def of(cls, entry: Entry) -> EntryId:
        return cls(entry.term, entry.kind, entry.data)

    def short(self) -> str:
        data = self.data if len(self.data) <= 40 else self.data[:37] + b"..."
        return f"term={self.term} {self.kind.name} {data!r}"


class ElectionSafety:
    """Raft §5.2: at most one leader per term, over the whole run."""

    __slots__ = ("leaders",)

    def __init__(self) -> None:
        self.leaders: dict[int, str] = {}

    def observe_leader(self, node: str, term: int) -> None:
        known = self.leaders.setdefault(term, node)
        if known != node:
            raise InvariantViolation(
                f"election safety: {known} and {node} were both leader in term {term}"
            )


class LogMatching:
    """Raft §5.3: an (index, term) pair names one entry, and (by induction
    on the recorded previous term) one whole log prefix."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[tuple[int, int], tuple[EntryId, int | None, str]] = {}

    def observe_append(self, node: str, entry: Entry, prev_term: int | None) -> None:
        key = (entry.index, entry.term)
        ident = EntryId.of(entry)
        known = self._seen.get(key)
        if known is None:
            self._seen[key] = (ident, prev_term, node)
            return
        k_ident, k_prev, k_node = known
        if k_ident != ident:
            raise InvariantViolation(
                f"log matching: index {entry.index} term {entry.term} holds "
                f"{k_ident.short()} on {k_node} but {ident.short()} on {node}"
            )
        if prev_term is not None and k_prev is not None and prev_term != k_prev:
            raise InvariantViolation(
                f"log matching: entry {entry.index} term {entry.term} follows term "
                f"{k_prev} on {k_node} but term {prev_term} on {node}"
            )
        if k_prev is None and prev_term is not None:
            self._seen[key] = (ident, prev_term, k_node)


class _Chain:
    """One history of committed entries: index -> entry, and who applied it first."""

    __slots__ = ("entries", "first_node", "max_index")

    def __init__(self) -> None:
        self.entries: dict[int, EntryId] = {}
        self.first_node: dict[int, str] = {}
        self.max_index = 0

    def observe(self, node: str, entry: Entry) -> None:
        ident = EntryId.of(entry)
        known = self.entries.get(entry.index)
        if known is None:
            self.entries[entry.index] = ident
            self.first_node[entry.index] = node
            if entry.index > self.max_index:
                self.max_index = entry.index
        elif known != ident:
            raise InvariantViolation(
                f"state machine safety: {self.first_node[entry.index]} applied "
                f"{known.short()} at index {entry.index} but {node} applied {ident.short()}"
            )

    def in_range(self, lo: int, hi: int) -> Iterable[tuple[int, EntryId]]:
        entries = self.entries
        for index in range(max(lo, 1), hi + 1):
            ident = entries.get(index)
            if ident is not None:
                yield index, ident

    def prefix(self, cut: int) -> _Chain:
        """A copy holding only the indexes below ``cut``."""
        chain = _Chain()
        chain.entries = {i: e for i, e in self.entries.items() if i < cut}
        chain.first_node = {i: n for i, n in self.first_node.items() if i < cut}
        chain.max_index = max(chain.entries, default=0)
        return chain


class CommittedLog:
    """State machine safety (§5.4.3): one entry per index, whoever applies
    it. Applied entries are committed, so this is also the run's knowledge
    of the committed log.

    A forced configuration (quorum-loss recovery) forks it: the current
    history keeps only the prefix the survivors had (``fork``), and the
    nodes left in the old epoch are checked against the old history, which
    is kept whole for them."""

    __slots__ = ("_current", "_stale", "commit_term", "_leader_commit")

    def __init__(self) -> None:
        self._current = _Chain()
        # A node left behind by a forced configuration -> the history it belongs to.
        self._stale: dict[str, _Chain] = {}
        # index -> term of the first leader seen committing it (an upper
        # bound on the term in which it was really committed).
        self.commit_term: dict[int, int] = {}
        self._leader_commit = 0

    @property
    def entries(self) -> dict[int, EntryId]:
        return self._current.entries

    @property
    def first_node(self) -> dict[int, str]:
        return self._current.first_node

    @property
    def max_index(self) -> int:
        return self._current.max_index

    def observe_leader_commit(self, commit: int, term: int) -> None:
        """A leader of ``term`` holds ``commit`` as its commit index."""
        if commit > self._leader_commit:
            for index in range(self._leader_commit + 1, commit + 1):
                self.commit_term.setdefault(index, term)
            self._leader_commit = commit

    def observe_applied(self, node: str, entry: Entry) -> None:
        if self._stale:
            stale = self._stale.get(node)
            if stale is not None:
                stale.observe(node, entry)
                return
        self._current.observe(node, entry)

    def in_range(self, lo: int, hi: int) -> Iterable[tuple[int, EntryId]]:
        """Known committed entries with lo <= index <= hi, in index order."""
        return self._current.in_range(lo, hi)

    def view(self, node: str) -> dict[int, EntryId]:
        """The committed entries ``node`` is held to (its epoch's history)."""
        stale = self._stale.get(node) if self._stale else None
        return (stale or self._current).entries

    def fork(self, cut: int | None, left_behind: Iterable[str]) -> object:
        """A configuration was forced: entries at ``cut`` and above (None:
        none) were committed only on the dead and are gone from the current
        history; ``left_behind`` (every node not among the survivors) keeps
        being checked against the old one. Returns what ``unfork`` needs."""
        old = self._current
        saved = (old, dict(self.commit_term), self._leader_commit,
                 [n for n in left_behind if n not in self._stale])
        for node in saved[3]:
            self._stale[node] = old
        if cut is None:
            self._current = old.prefix(old.max_index + 1)
            return saved
        self._current = old.prefix(cut)
        for index in [i for i in self.commit_term if i >= cut]:
            del self.commit_term[index]
        self._leader_commit = min(self._leader_commit, cut - 1)
        return saved

    def unfork(self, saved: object) -> None:
        """The force did not take effect after all (its node crashed before
        it was durable)."""
        old, commit_term, leader_commit, added = saved  # type: ignore[misc]
        self._current, self.commit_term, self._leader_commit = old, commit_term, leader_commit
        for node in added:
            del self._stale[node]


def check_digests(states: Iterable[tuple[str, int, str]]) -> None:
    """Nodes that applied the same prefix must hold the same state machine."""
    by_index: dict[int, tuple[str, str]] = {}
    for node, applied, digest in states:
        known = by_index.setdefault(applied, (node, digest))
        if known[1] != digest:
            raise InvariantViolation(
                f"state machine safety: {known[0]} and {node} both applied up to "
                f"{applied} but their stores differ"
            )


class LeaderCompleteness:
    """Raft §5.4.1: a new leader's log holds every entry committed in an
    earlier term. (A leader of an old term may still be elected after a
    later term committed something; §5.4.3's argument does not cover it.)"""

    __slots__ = ("_committed",)

    def __init__(self, committed: CommittedLog) -> None:
        self._committed = committed

    def check_new_leader(self, node: str, term: int, snapshot_index: int, term_at: TermAt) -> None:
        committed = self._committed
        commit_term = committed.commit_term
        for index, ident in committed.in_range(snapshot_index + 1, committed.max_index):
            when = commit_term.get(index)
            if when is None or when >= term:
                continue
            have = term_at(index)
            if have != ident.term:
                raise InvariantViolation(
                    f"leader completeness: {node} became leader in term {term} but "
                    f"entry {index} (term {ident.term}, committed by term {when}) is "
                    f"{'missing' if have is None else f'term {have}'} in its log"
                )


@dataclass(slots=True)
class _NodeMemory:
    """What one node promised before it crashed."""

    commit: int = 0
    acks: dict[int, int] | None = None  # acknowledged index -> term there
    vote: tuple[int, str] | None = None  # latest (term, candidate) granted
    max_term_sent: int = 0


class Durability:
    """Nothing acknowledged is lost: the commit index never goes back on a
    running node, and after a crash the durable state still holds every
    committed entry it acknowledged, the term it spoke in and its vote."""

    __slots__ = ("_nodes", "_committed")

    def __init__(self, committed: CommittedLog) -> None:
        self._nodes: dict[str, _NodeMemory] = {}
        self._committed = committed

    def _mem(self, node: str) -> _NodeMemory:
        mem = self._nodes.get(node)
        if mem is None:
            mem = self._nodes[node] = _NodeMemory(acks={})
        return mem

    def observe_commit(self, node: str, commit: int) -> None:
        mem = self._mem(node)
        if commit < mem.commit:
            raise InvariantViolation(
                f"durability: commit index of {node} went back from {mem.commit} to {commit}"
            )
        mem.commit = commit

    def observe_sent_term(self, node: str, term: int) -> None:
        mem = self._mem(node)
        if term > mem.max_term_sent:
            mem.max_term_sent = term

    def observe_ack(self, node: str, index: int, term: int | None) -> None:
        if term is not None:
            acks = self._mem(node).acks
            assert acks is not None
            acks[index] = term

    def observe_vote(self, node: str, term: int, candidate: str) -> None:
        self._mem(node).vote = (term, candidate)

    def check_restart(self, node: str, state: PersistentState) -> None:
        """Called with what a crashed node loads back from its storage."""
        mem = self._mem(node)
        hs = state.hard_state
        if hs.term < mem.max_term_sent:
            raise InvariantViolation(
                f"durability: {node} sent messages in term {mem.max_term_sent} but "
                f"restarted with term {hs.term}"
            )
        if mem.vote is not None:
            vterm, cand = mem.vote
            if hs.term < vterm or (hs.term == vterm and hs.vote != cand):
                raise InvariantViolation(
                    f"durability: {node} voted for {cand} in term {vterm} but restarted "
                    f"with term {hs.term} vote {hs.vote}"
                )
        self._check_acked_entries(node, mem, state)

    def reset_commit(self, node: str, commit: int) -> None:
        """A restarted node starts counting again from what it recovered."""
        self._mem(node).commit = commit

    def _check_acked_entries(self, node: str, mem: _NodeMemory, state: PersistentState) -> None:
        committed = self._committed.view(node)
        acks = mem.acks or {}
        upto = max(
            (i for i, t in acks.items() if (c := committed.get(i)) is not None and c.term == t),
            default=0,
        )
        snap_index = state.snapshot.meta.index if state.snapshot else 0
        stored = {e.index: e for e in state.entries}
        for index in range(snap_index + 1, upto + 1):
            ident = committed.get(index)
            if ident is None:
                continue
            entry = stored.get(index)
            if entry is None or EntryId.of(entry) != ident:
                raise InvariantViolation(
                    f"durability: {node} acknowledged up to {upto} but after restart "
                    f"committed entry {index} ({ident.short()}) is "
                    f"{'missing' if entry is None else 'different'} in its storage"
                )


class SnapshotImages:
    """A snapshot at index i must hold the same state machine wherever it
    was taken or installed (state machine safety, for compacted prefixes).
    Forks like ``CommittedLog`` at a forced configuration."""

    __slots__ = ("_digests", "_stale")

    def __init__(self) -> None:
        self._digests: dict[int, tuple[str, str]] = {}
        self._stale: dict[str, dict[int, tuple[str, str]]] = {}

    def observe(self, node: str, index: int, digest: str) -> None:
        digests = self._digests
        if self._stale:
            digests = self._stale.get(node, digests)
        known = digests.setdefault(index, (node, digest))
        if known[1] != digest:
            raise InvariantViolation(
                f"state machine safety: snapshots at index {index} from {known[0]} and "
                f"{node} hold different stores"
            )

    def fork(self, cut: int | None, left_behind: Iterable[str]) -> object:
        old = self._digests
        added = [n for n in left_behind if n not in self._stale]
        for node in added:
            self._stale[node] = old
        self._digests = {i: d for i, d in old.items() if cut is None or i < cut}
        return old, added

    def unfork(self, saved: object) -> None:
        old, added = saved  # type: ignore[misc]
        self._digests = old
        for node in added:
            del self._stale[node]


@dataclass(frozen=True, slots=True)
class LogView:
    """What one node's log held at a forced configuration: its snapshot
    index and the entries after it."""

    snapshot_index: int
    entries: dict[int, EntryId]


# What the simulator knows to be true of a voter that did not answer.
DEAD_AND_GONE = frozenset({"lost", "removed"})


class RecoveryAudit:
    """Quorum-loss recovery happens exactly in the safe cases and loses only
    what it must.

    ``check_force_safe``: a configuration may be forced only when every
    voter left out is truly dead with its state gone (the simulator's truth,
    not what any node believed): never when one is paused, cut off, or
    crashed with its state intact. ``observe_force``: the committed entries
    the forcing node's log lacks are lost by recovery; each must have been
    held by no survivor (else recovery forced from the wrong log). The lost
    ones are returned, and the committed history and snapshot images fork.
    """

    __slots__ = ("committed", "images", "lost")

    def __init__(self, committed: CommittedLog, images: SnapshotImages) -> None:
        self.committed = committed
        self.images = images
        self.lost: list[tuple[int, int, EntryId]] = []  # (epoch, index, entry)

    def check_force_safe(self, node: str, epoch: int, left_out: dict[str, str]) -> None:
        """``left_out``: each voter of ``node``'s configuration that is not
        in the forced one -> what it truly is (lost, removed, crashed,
        paused, cut off, running)."""
        unsafe = {m: t for m, t in sorted(left_out.items()) if t not in DEAD_AND_GONE}
        if unsafe:
            raise InvariantViolation(
                f"recovery safety: {node} forced a configuration in epoch {epoch} leaving out "
                + ", ".join(f"{m} which was {t}" for m, t in unsafe.items())
                + " (only voters dead with their state gone may be left out)"
            )

    def observe_force(
        self, node: str, epoch: int, logs: dict[str, LogView], left_behind: Iterable[str]
    ) -> ForcedFork:
        """``logs``: the forcing node's log and every other survivor's, just
        before the force. Returns the committed entries lost by recovery
        (and what ``undo`` needs)."""
        committed = self.committed
        mine = logs[node]
        cut: int | None = None
        for index, ident in committed.in_range(mine.snapshot_index + 1, committed.max_index):
            if mine.entries.get(index) != ident:
                cut = index
                break
        lost = [] if cut is None else list(committed.in_range(cut, committed.max_index))
        for index, ident in lost:
            for other, view in sorted(logs.items()):
                if other != node and (index <= view.snapshot_index or view.entries.get(index) == ident):
                    raise InvariantViolation(
                        f"recovery durability: {node} forced epoch {epoch} without committed entry "
                        f"{index} ({ident.short()}) that survivor {other} held"
                    )
        left_behind = list(left_behind)
        saved = (committed.fork(cut, left_behind), self.images.fork(cut, left_behind))
        self.lost.extend((epoch, index, ident) for index, ident in lost)
        return ForcedFork(epoch, lost, saved)

    def undo(self, fork: ForcedFork) -> None:
        """The force was not durable: as if it never happened."""
        self.committed.unfork(fork.saved[0])
        self.images.unfork(fork.saved[1])
        self.lost = [x for x in self.lost if x[0] != fork.epoch or (x[1], x[2]) not in fork.lost]


@dataclass(frozen=True, slots=True)
class ForcedFork:
    epoch: int
    lost: list[tuple[int, EntryId]]  # (index, entry) lost by recovery
    saved: tuple[object, object]


class Safety:
    """Every checker of one run, sharing one view of the committed log."""

    __slots__ = ("election", "log_matching", "committed", "completeness", "durability", "images",
                 "recovery")

    def __init__(self) -> None:
        self.election = ElectionSafety()
        self.log_matching = LogMatching()
        self.committed = CommittedLog()
        self.completeness = LeaderCompleteness(self.committed)
        self.durability = Durability(self.committed)
        self.images = SnapshotImages()
        self.recovery = RecoveryAudit(self.committed, self.images)
