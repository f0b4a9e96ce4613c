"""Safety invariants of Raft, checked after every simulated event.

Each checker is fed observations (an entry appended, an entry applied, a
node seen as leader, a restart) and keeps just enough global memory to
notice a violation the moment it happens: Raft §5.2 election safety, §5.3
log matching, §5.4 leader completeness and state machine safety, and
durability (nothing a node acknowledged or voted for is forgotten across a
crash). They take plain values, not RaftNode objects, so each one can be
shown to fail on hand-made data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from quorate.raft.types import Entry, EntryKind, PersistentState

TermAt = Callable[[int], "int | None"]


class InvariantViolation(AssertionError):
    """A safety property of the cluster was broken (a bug, never a fault)."""


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


class CommittedLog:
    """State machine safety (§5.4.3): one entry per index, whoever applies
    it. Applied entries are committed, so this is also the run's knowledge
    of the committed log."""

    __slots__ = ("entries", "first_node", "max_index", "commit_term", "_leader_commit")

    def __init__(self) -> None:
        self.entries: dict[int, EntryId] = {}
        self.first_node: dict[int, str] = {}
        self.max_index = 0
        # index -> term of the first leader seen committing it (an upper
        # bound on the term in which it was really committed).
        self.commit_term: dict[int, int] = {}
        self._leader_commit = 0

    def observe_leader_commit(self, commit: int, term: int) -> None:
        """A leader of ``term`` holds ``commit`` as its commit index."""
        if commit > self._leader_commit:
            for index in range(self._leader_commit + 1, commit + 1):
                self.commit_term.setdefault(index, term)
            self._leader_commit = commit

    def observe_applied(self, node: str, entry: Entry) -> None:
        ident = EntryId.of(entry)
        known = self.entries.get(entry.index)
        if known is None:
            self.entries[entry.index] = ident
            self.first_node[entry.index] = node
            self.max_index = max(self.max_index, entry.index)
        elif known != ident:
            raise InvariantViolation(
                f"state machine safety: {self.first_node[entry.index]} applied "
                f"{known.short()} at index {entry.index} but {node} applied {ident.short()}"
            )

    def in_range(self, lo: int, hi: int) -> Iterable[tuple[int, EntryId]]:
        """Known committed entries with lo <= index <= hi, in index order."""
        entries = self.entries
        for index in range(max(lo, 1), hi + 1):
            ident = entries.get(index)
            if ident is not None:
                yield index, ident


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
        committed = self._committed.entries
        acks = mem.acks or {}
        upto = max(
            (i for i, t in acks.items() if (c := committed.get(i)) is not None and c.term == t),
            default=0,
        )
        snap_index = state.snapshot.meta.index if state.snapshot else 0
        stored = {e.index: e for e in state.entries}
        for index, ident in self._committed.in_range(snap_index + 1, upto):
            entry = stored.get(index)
            if entry is None or EntryId.of(entry) != ident:
                raise InvariantViolation(
                    f"durability: {node} acknowledged up to {upto} but after restart "
                    f"committed entry {index} ({ident.short()}) is "
                    f"{'missing' if entry is None else 'different'} in its storage"
                )


class SnapshotImages:
    """A snapshot at index i must hold the same state machine wherever it
    was taken or installed (state machine safety, for compacted prefixes)."""

    __slots__ = ("_digests",)

    def __init__(self) -> None:
        self._digests: dict[int, tuple[str, str]] = {}

    def observe(self, node: str, index: int, digest: str) -> None:
        known = self._digests.setdefault(index, (node, digest))
        if known[1] != digest:
            raise InvariantViolation(
                f"state machine safety: snapshots at index {index} from {known[0]} and "
                f"{node} hold different stores"
            )


class Safety:
    """Every checker of one run, sharing one view of the committed log."""

    __slots__ = ("election", "log_matching", "committed", "completeness", "durability", "images")

    def __init__(self) -> None:
        self.election = ElectionSafety()
        self.log_matching = LogMatching()
        self.committed = CommittedLog()
        self.completeness = LeaderCompleteness(self.committed)
        self.durability = Durability(self.committed)
        self.images = SnapshotImages()
