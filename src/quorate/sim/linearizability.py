"""Linearizability checking for client histories of the replicated KV store.

Theory of operation
-------------------
A history is linearizable when every operation can be given one point in
time, between its invocation and its response, such that the operations
taken in that order are a legal sequential run of the store (Herlihy & Wing).
The verdict must be sound above all: a false alarm would make the simulator
report bugs that do not exist. Writers outside the history (quorate's own
controllers) may also advance the global revision counter, so nothing here
assumes revisions are consecutive. The check has two parts.

1. Cheap global checks on revisions. Each revision is given to exactly one
   write on one key, so no two acknowledged writes share a revision, and no
   revision is seen on two keys (as a write's revision, a read's
   mod_revision, a mismatch's current revision or a matched prev_revision).
   The counter only grows, so a write returns a revision above every
   revision reported by a response that came before the write's invocation.

2. Per-key search (P-compositionality: keys do not interact except through
   the counter, which part 1 and the floors below cover). Each key's
   sub-history is checked with the Wing & Gong search as refined by Lowe:
   operations are call and return entries in a doubly linked list ordered by
   time; the search linearizes a call (applies it to the model), lifts its
   entries out of the list and starts again from the head; meeting a return
   entry means the operation it closes was not linearized in time, so the
   search backtracks. Visited configurations (linearized set, model state)
   are cached. The loop keeps an explicit stack: keys have hundreds of ops.

The per-key model cannot predict exact revisions, so it keeps a lower bound:
a write is legal when its revision is above the revision of the key's
previous write, and above every revision reported before the invocation of
any op ordered before it (its point follows those invocations; this is the
"frontier floor"). Reads, CAS comparisons and mismatch reports must match the
key's mod_revision exactly.

Unknown outcomes (a client timed out: ``result`` is None) are handled so the
checker never rejects a history the store could have produced:

* an unknown GET constrains nothing and is dropped;
* an unknown write has no return entry (its response is at infinity), so it
  may be linearized at any point after its invocation, and the search
  succeeds once every *completed* operation is linearized: an unknown write
  left over simply never took effect. "Took effect as a CAS mismatch" has the
  same effect as "never happened", so only the effectful branch is explored;
* when an unknown write takes effect its revision is not known, so the key's
  mod_revision becomes *symbolic*: "some integer >= lo", where lo is one more
  than both the key's previous write revision and the frontier floor (both
  bounds hold in every real run). A later read or mismatch that reports
  revision r pins it to r if r >= lo; a later CAS with prev_revision p pins
  it to p likewise; a later write with revision R is legal if R > lo (some
  mod_revision in [lo, R) exists). Every rule accepts a superset of what
  real runs can do, hence soundness; the price is that some anomalies hidden
  behind timeouts (or spread over several keys) go unreported.

Pruning, none of which can lose a linearization: ``lo`` never decreases, so
a configuration whose ``lo`` already exceeds what some pending completed op
needs is dead; a configuration that linearized a superset of the unknown
writes of another with the same completed ops and state is dominated (an
unknown write may always be left out); and unknown writes that only differ
in invocation time are tried earliest first, once (see ``_redundant``).

Model state is a plain tuple ``(value, lo, exact)`` (hashed millions of
times, so no dataclass): ``value`` is None for a missing key. For a present
key, ``lo`` is its mod_revision when ``exact``, else a lower bound on it. For
a missing key the mod_revision is 0 and ``lo`` is a lower bound on the
revision of the key's last write (0 if never written), which later writes
must exceed.

Equal timestamps count as concurrent: an operation invoked at the very time
another completed may be ordered either way (the sound choice for coarse
virtual clocks).
"""

from __future__ import annotations

import bisect
import enum
import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

__all__ = ["BUDGET_EXCEEDED", "CheckResult", "OpKind", "Operation", "check_history"]

BUDGET_EXCEEDED = "search budget exceeded"  # how an inconclusive message starts
_TRIES_PER_STATE = 50  # candidate tries allowed per state of the budget
_MAX_LISTED = 8


class OpKind(enum.Enum):
    """What a client asked the store to do; CAS is PUT/DELETE with prev_revision."""

    PUT = "put"
    GET = "get"
    DELETE = "delete"


# Result shapes each kind may report: tag -> types of the remaining fields.
_RESULT_SHAPES: dict[OpKind, dict[str, tuple[type, ...]]] = {
    OpKind.PUT: {"ok": (int,), "mismatch": (int,)},
    OpKind.GET: {"ok": (str, int), "not_found": ()},
    OpKind.DELETE: {"ok": (int,), "not_found": (), "mismatch": (int,)},
}


@dataclass(frozen=True, slots=True)
class Operation:
    """One client call as the client saw it; ``result=None`` means unknown outcome.

    An operation with a known result must have a completion time. One with
    ``result=None`` is treated as possibly taking effect at any time after
    ``invoke`` (a timed-out request can still commit later), whatever
    ``complete`` says.
    """

    client: int
    kind: OpKind
    key: str
    value: str | None = None
    prev_revision: int | None = None
    invoke: int = 0
    complete: int | None = None
    result: tuple | None = None

    def __post_init__(self) -> None:
        problem = _validation_problem(self)
        if problem is not None:
            raise ValueError(f"invalid operation {self!r}: {problem}")

    @property
    def unknown(self) -> bool:
        """True when the client never learned the outcome."""
        return self.result is None

    def describe(self) -> str:
        """A one-line rendering for failure messages."""
        if self.kind is OpKind.PUT:
            call = f"put {self.key!r}={self.value!r}"
        else:
            call = f"{self.kind.value} {self.key!r}"
        if self.prev_revision is not None:
            call += f" prev={self.prev_revision}"
        end = "?" if self.complete is None else str(self.complete)
        return f"c{self.client} {call} [{self.invoke},{end}] -> {_describe_result(self.result)}"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Verdict of :func:`check_history`.

    ``ok`` is True only when a linearization was found. ``ok`` is False both
    for a proven violation and when the search budget ran out (the message
    then starts with "search budget exceeded"). ``key`` names the key whose
    sub-history failed; for a cross-key revision violation it is the key of
    the later of the two operations involved.
    """

    ok: bool
    key: str | None
    message: str
    explored: int


def _validation_problem(op: Operation) -> str | None:
    """Why ``op`` is malformed, or None; malformed input is a simulator bug."""
    if not isinstance(op.kind, OpKind):
        return "kind must be an OpKind"
    if (op.kind is OpKind.PUT) != isinstance(op.value, str):
        return "a put needs a str value; get and delete take none"
    if op.prev_revision is not None:
        if op.kind is OpKind.GET:
            return "a get takes no prev_revision"
        if op.prev_revision < 0:
            return "prev_revision must be >= 0"
    if op.complete is not None and op.complete < op.invoke:
        return "completes before it is invoked"
    if op.result is None:
        return None
    if op.complete is None:
        return "a known result needs a completion time"
    if not isinstance(op.result, tuple) or not op.result:
        return "result must be a non-empty tuple"
    shape = _RESULT_SHAPES[op.kind].get(op.result[0])
    fields = op.result[1:]
    if shape is None or len(fields) != len(shape):
        return f"result {op.result!r} is not a valid {op.kind.value} result"
    if not all(isinstance(f, t) for f, t in zip(fields, shape)):
        return f"result {op.result!r} has fields of the wrong type"
    if op.result[0] == "mismatch" and op.prev_revision is None:
        return "only a conditional write can report a mismatch"
    return None


def _describe_result(result: tuple | None) -> str:
    if result is None:
        return "unknown"
    tag = result[0]
    if tag == "ok" and len(result) == 3:
        return f"ok {result[1]!r} rev={result[2]}"
    if tag == "ok":
        return f"ok rev={result[1]}"
    if tag == "mismatch":
        return f"mismatch current={result[1]}"
    return str(tag)


# --------------------------------------------------------------------------
# Public entry point


def check_history(ops: Sequence[Operation], *, max_states: int = 2_000_000) -> CheckResult:
    """Decide whether ``ops`` is a linearizable history of the KV store.

    ``max_states`` bounds the number of search configurations over all keys;
    running out gives ``ok=False`` with a "search budget exceeded" message,
    never a claim either way.
    """
    floors = _RevisionFloors(ops)
    failure = _check_revisions(ops, floors)
    if failure is not None:
        return failure
    by_key: dict[str, list[Operation]] = defaultdict(list)
    for op in ops:
        if not (op.unknown and op.kind is OpKind.GET):
            by_key[op.key].append(op)
    explored = 0
    for key in sorted(by_key):
        search = _KeySearch(by_key[key], floors, max_states - explored)
        verdict = search.run()
        explored += search.explored
        if verdict is not None:
            return CheckResult(ok=False, key=key, message=verdict, explored=explored)
    return CheckResult(ok=True, key=None, message="linearizable", explored=explored)


# --------------------------------------------------------------------------
# Global revision checks


def _observed_revision(op: Operation) -> int | None:
    """The revision an operation's response proves was already assigned."""
    result = op.result
    if result is None or result[0] == "not_found":
        return None
    return result[-1]


@dataclass(frozen=True, slots=True)
class _Observation:
    time: int
    revision: int
    op: Operation


class _RevisionFloors:
    """Answers "what is the highest revision observed before time t?".

    Any revision a response reported was assigned before that response, so
    a write invoked later gets a strictly higher one.
    """

    __slots__ = ("_times", "_best")

    def __init__(self, ops: Sequence[Operation]) -> None:
        seen = [
            _Observation(op.complete, rev, op)
            for op in ops
            if op.complete is not None and (rev := _observed_revision(op)) is not None
        ]
        seen.sort(key=lambda o: o.time)
        self._times = [o.time for o in seen]
        self._best: list[_Observation] = []
        for obs in seen:
            if not self._best or obs.revision > self._best[-1].revision:
                self._best.append(obs)
            else:
                self._best.append(self._best[-1])

    def before(self, time: int) -> _Observation | None:
        """The highest observation from a response strictly before ``time``."""
        index = bisect.bisect_left(self._times, time)
        return self._best[index - 1] if index else None

    def floor(self, time: int) -> int:
        obs = self.before(time)
        return 0 if obs is None else obs.revision


def _is_acked_write(op: Operation) -> bool:
    return op.kind is not OpKind.GET and op.result is not None and op.result[0] == "ok"


def _key_revisions(op: Operation) -> list[int]:
    """Revisions the response proves were given to a write on the op's key."""
    result = op.result
    if result is None:
        return []
    seen = []
    if result[0] == "ok":
        seen.append(result[-1])  # the write's own revision or the read's mod_revision
    if result[0] == "mismatch" and result[1] > 0:
        seen.append(result[1])
    if result[0] == "ok" and op.prev_revision:  # a successful CAS
        seen.append(op.prev_revision)
    return seen


def _check_revisions(ops: Sequence[Operation], floors: _RevisionFloors) -> CheckResult | None:
    """Cross-key revision rules; on failure ``key`` is that of the later-invoked op.

    Every write gets its own revision, so two acknowledged writes may not
    share one, and no revision may be seen on two keys (as a write's
    revision, a mod_revision or a matched prev_revision). Revisions grow in
    real time: a write invoked after a response reported revision r gets one
    above r.
    """
    writes = sorted((op for op in ops if _is_acked_write(op)), key=lambda o: o.invoke)
    owner: dict[int, Operation] = {}
    for op in writes:
        owner.setdefault(op.result[1], op)
    problems = itertools.chain(
        _duplicate_revisions(writes, owner),
        _revisions_on_two_keys(ops),
        _backward_revisions(writes, floors),
    )
    problem = next(problems, None)
    if problem is None:
        return None
    culprit, message = problem
    return CheckResult(ok=False, key=culprit.key, message=message, explored=0)


_Problem = tuple[Operation, str]  # (the later-invoked op involved, explanation)


def _later(a: Operation, b: Operation) -> Operation:
    return b if b.invoke >= a.invoke else a


def _duplicate_revisions(
    writes: list[Operation], owner: dict[int, Operation]
) -> Iterator[_Problem]:
    for op in writes:
        first = owner[op.result[1]]
        if first is not op:
            yield op, (
                f"revision {op.result[1]} was returned by two successful writes: "
                f"{first.describe()}; {op.describe()}"
            )


def _revisions_on_two_keys(ops: Sequence[Operation]) -> Iterator[_Problem]:
    witness: dict[int, Operation] = {}
    for op in sorted(ops, key=lambda o: o.invoke):
        for rev in _key_revisions(op):
            other = witness.setdefault(rev, op)
            if other.key != op.key:
                yield _later(op, other), (
                    f"revision {rev} belongs to writes on two keys: "
                    f"{other.describe()}; {op.describe()}"
                )


def _backward_revisions(writes: list[Operation], floors: _RevisionFloors) -> Iterator[_Problem]:
    for op in writes:
        obs = floors.before(op.invoke)
        if obs is not None and obs.revision >= op.result[1]:
            yield op, (
                f"revision went backwards in real time: {op.describe()} was invoked "
                f"after {obs.op.describe()} had reported revision {obs.revision}"
            )


# --------------------------------------------------------------------------
# The per-key model: pure functions from state to next state (None: illegal)

_State = tuple  # (value: str | None, lo: int, exact: bool); see module docstring
_INITIAL: _State = (None, 0, False)


@dataclass(frozen=True, slots=True)
class _Step:
    """An operation compiled for the search: the model rule plus its arguments."""

    rule: Callable[[_State, _Step, int], _State | None]
    value: str | None
    prev: int | None
    revision: int  # the reported revision (0 if none or unknown)
    known: bool
    writes: bool
    invoke: int
    # The largest ``lo`` from which this op can still be linearized (None: any).
    # ``lo`` never decreases along a run, so a state whose ``lo`` exceeds the
    # ceiling of any op still to be linearized is a dead end.
    ceiling: int | None


def _pin(state: _State, revision: int) -> _State | None:
    """``state`` with mod_revision fixed to ``revision``, or None if it cannot be."""
    value, lo, exact = state
    if value is None:
        return state if revision == 0 else None
    if revision == lo:
        return state if exact else (value, lo, True)
    if exact or revision < lo:
        return None
    return (value, revision, True)


def _compare(state: _State, step: _Step) -> _State | None:
    """Apply a CAS precondition (if any) so the state's revision is exact."""
    return state if step.prev is None else _pin(state, step.prev)


def _put_ok(state: _State, step: _Step, lower: int) -> _State | None:
    state = _compare(state, step)
    if state is None or step.revision <= state[1] or step.revision < lower:
        return None
    return (step.value, step.revision, True)


def _put_unknown(state: _State, step: _Step, lower: int) -> _State | None:
    state = _compare(state, step)
    if state is None:
        return None
    return (step.value, max(state[1] + 1, lower), False)


def _delete_ok(state: _State, step: _Step, lower: int) -> _State | None:
    if state[0] is None:
        return None
    state = _compare(state, step)
    if state is None or step.revision <= state[1] or step.revision < lower:
        return None
    return (None, step.revision, False)


def _delete_unknown(state: _State, step: _Step, lower: int) -> _State | None:
    # Deleting a missing key has no effect: same as never linearizing it.
    if state[0] is None:
        return None
    state = _compare(state, step)
    if state is None:
        return None
    return (None, max(state[1] + 1, lower), False)


def _mismatch(state: _State, step: _Step, lower: int) -> _State | None:
    if step.revision == step.prev:
        return None
    return _pin(state, step.revision)


def _get_ok(state: _State, step: _Step, lower: int) -> _State | None:
    if state[0] != step.value:
        return None
    return _pin(state, step.revision)


def _not_found(state: _State, step: _Step, lower: int) -> _State | None:
    return state if state[0] is None else None


_RULES: dict[tuple[OpKind, str | None], Callable[[_State, _Step, int], _State | None]] = {
    (OpKind.PUT, "ok"): _put_ok,
    (OpKind.PUT, "mismatch"): _mismatch,
    (OpKind.PUT, None): _put_unknown,
    (OpKind.GET, "ok"): _get_ok,
    (OpKind.GET, "not_found"): _not_found,
    (OpKind.DELETE, "ok"): _delete_ok,
    (OpKind.DELETE, "not_found"): _not_found,
    (OpKind.DELETE, "mismatch"): _mismatch,
    (OpKind.DELETE, None): _delete_unknown,
}


def _compile(op: Operation) -> _Step:
    result = op.result
    if result is None:
        rule = _RULES[(op.kind, None)]
        return _Step(rule, op.value, op.prev_revision, 0, False, True, op.invoke, None)
    tag = result[0]
    rule = _RULES[(op.kind, tag)]
    value = result[1] if op.kind is OpKind.GET and tag == "ok" else op.value
    revision = result[-1] if len(result) > 1 else 0
    if tag == "not_found" or revision == 0:
        ceiling = None  # needs a missing key, which any later delete brings back
    elif tag == "ok" and op.kind is not OpKind.GET:
        ceiling = revision - 1  # a write needs revision > lo
    else:
        ceiling = revision  # a read or mismatch needs mod_revision == revision >= lo
    writes = op.kind is not OpKind.GET
    return _Step(rule, value, op.prev_revision, revision, True, writes, op.invoke, ceiling)


def _describe_state(state: _State) -> str:
    value, lo, exact = state
    if value is None:
        return "key absent"
    if exact:
        return f"value={value!r} mod_revision={lo}"
    return f"value={value!r} mod_revision>={lo} (written by an unknown-outcome op)"


# --------------------------------------------------------------------------
# The search (Wing & Gong, Lowe's memoised variant)


class _OutOfBudget(Exception):
    """The search visited ``max_states`` configurations without a verdict."""


class _EntryList:
    """Call/return entries in time order, as a doubly linked list over arrays.

    Index 0 is the head sentinel and the last index the tail sentinel (its
    time is infinite). Lifting removes an operation's entries; unlifting must
    undo lifts in reverse order (the search's stack guarantees it).
    """

    __slots__ = ("next", "prev", "op", "time", "is_call", "ret")

    def __init__(self, events: list[tuple[int, int, int]]) -> None:
        """``events`` are (time, 0 for call / 1 for return, op index)."""
        events = sorted(events)  # calls before returns at equal times: ties are concurrent
        size = len(events) + 2
        self.next = list(range(1, size + 1))
        self.prev = list(range(-1, size - 1))
        self.op = [-1] + [i for _, _, i in events] + [-1]
        self.time: list[float] = [0, *(t for t, _, _ in events), math.inf]
        self.is_call = [False] + [kind == 0 for _, kind, _ in events] + [False]
        self.ret = [-1] * size
        call_of: dict[int, int] = {}
        for entry, (_, kind, i) in enumerate(events, start=1):
            if kind == 0:
                call_of[i] = entry
            else:
                self.ret[call_of[i]] = entry

    def _remove(self, entry: int) -> None:
        self.next[self.prev[entry]] = self.next[entry]
        self.prev[self.next[entry]] = self.prev[entry]

    def _restore(self, entry: int) -> None:
        self.next[self.prev[entry]] = entry
        self.prev[self.next[entry]] = entry

    def lift(self, call: int) -> None:
        self._remove(call)
        if self.ret[call] >= 0:
            self._remove(self.ret[call])

    def unlift(self, call: int) -> None:
        if self.ret[call] >= 0:
            self._restore(self.ret[call])
        self._restore(call)


class _KeySearch:
    """The linearizability search over one key's sub-history.

    Completed ops live in one entry list (calls and returns); unknown-outcome
    writes, which have no return, live in a second list of calls. At each
    configuration the completed candidates are tried first, then the unknown
    writes invoked no later than the first pending return; only then does the
    search backtrack. Trying unknown writes last matters for the cache: a
    configuration that linearized a superset of unknown writes, with the same
    completed ops and model state, is dominated (an unknown write may always
    be left out), so visiting the lean configurations first prunes the
    exponential family of "which timed-out writes happened".
    """

    def __init__(self, ops: Sequence[Operation], floors: _RevisionFloors, budget: int) -> None:
        self.ops = list(ops)
        self.steps = [_compile(op) for op in self.ops]
        self.floors = floors
        self.budget = budget
        self.explored = 0
        # Candidates tried, redundant or not: bounds the time of a search
        # whose states are few but whose candidate lists are long.
        self.tries = 0
        self.known_total = sum(step.known for step in self.steps)
        # Ops with a ceiling, lowest ceiling first, for dead-end pruning.
        bounded = [i for i, step in enumerate(self.steps) if step.ceiling is not None]
        self.by_ceiling = sorted(bounded, key=lambda i: self.steps[i].ceiling)
        self.ceilings = [self.steps[i].ceiling for i in self.by_ceiling]
        self.classes = self._interchangeable()
        # (completed-ops mask, state) -> unknown-ops masks visited with it.
        self.seen: set[tuple[int, int, _State]] = set()
        self.lean: dict[tuple[int, _State], int] = {}
        # Deepest point reached (counted in completed ops), for the report.
        self.best: tuple[int, int, _State] = (-1, 0, _INITIAL)
        # The current configuration, and the stack of frames to return to:
        # (from unknown list, call entry, state, low, frontier before, limit).
        self.state, self.kmask, self.umask, self.low = _INITIAL, 0, 0, 0
        self.frontier: float = -math.inf  # latest invocation among linearized ops
        self.pending = self.known_total
        self.stack: list[tuple[bool, int, _State, int, float, float]] = []
        events = [(op.invoke, 0, i) for i, op in enumerate(self.ops)] + [
            (op.complete, 1, i) for i, op in enumerate(self.ops) if not op.unknown
        ]
        self.lists = (
            _EntryList([e for e in events if self.steps[e[2]].known]),
            _EntryList([e for e in events if not self.steps[e[2]].known]),
        )

    def _interchangeable(self) -> dict[int, list[int]]:
        """Unknown op index -> its class (see ``_redundant``), in invocation order."""
        read = {s.value for s in self.steps if s.known and s.rule is _get_ok}
        classes: dict[tuple, list[int]] = defaultdict(list)
        unknown = sorted(
            (i for i, s in enumerate(self.steps) if not s.known),
            key=lambda i: (self.steps[i].invoke, i),
        )
        for i in unknown:
            step = self.steps[i]
            value = step.value if step.value in read else None
            classes[(step.rule, value, step.prev)].append(i)
        return {i: members for members in classes.values() for i in members}

    def run(self) -> str | None:
        """None if a linearization exists, else why not."""
        known, unknown = self.lists
        self.low = self._lowest_open(0, 0)
        entry, in_unknown, limit = known.next[0], False, math.inf
        try:
            while self.pending:
                if not in_unknown and not known.is_call[entry]:
                    # Every completed candidate tried; now the unknown writes.
                    in_unknown, limit, entry = True, known.time[entry], unknown.next[0]
                    if self._writes_are_dead():
                        entry = len(unknown.next) - 1  # the tail: skip them all
                    continue
                if in_unknown and unknown.time[entry] > limit:
                    if not self.stack:  # the first pending return fits nowhere
                        return self._report()
                    in_unknown, entry, limit = self._backtrack()
                    continue
                entries = unknown if in_unknown else known
                if self._try(entries, entry, in_unknown, limit):
                    entry, in_unknown = known.next[0], False
                else:
                    entry = entries.next[entry]
        except _OutOfBudget:
            return f"{BUDGET_EXCEEDED} after {self.explored} states; verdict unknown"
        return None

    def _try(self, entries: _EntryList, entry: int, unknown: bool, limit: float) -> bool:
        """Linearize the op at ``entry`` next if that can lead anywhere new."""
        i = entries.op[entry]
        self.tries += 1
        if self.tries > _TRIES_PER_STATE * self.budget:
            raise _OutOfBudget
        if unknown and self._redundant(i):
            return False
        step = self.steps[i]
        # The op's point follows the invocations of all ops ordered before
        # it, so a write's revision exceeds every revision observed earlier.
        frontier = max(self.frontier, step.invoke)
        lower = self.floors.floor(frontier) + 1 if step.writes else 0
        new = step.rule(self.state, step, lower)
        if new is None:
            return False
        bit = 1 << i
        kmask = self.kmask if unknown else self.kmask | bit
        umask = self.umask | bit if unknown else self.umask
        done = self.known_total - self.pending + (not unknown)
        if done > self.best[0]:
            self.best = (done, kmask | umask, new)
        low = self._lowest_open(self.low, kmask)
        if low < len(self.ceilings) and self.ceilings[low] < new[1]:
            return False  # an op still to come needs an older revision
        if self._visited(kmask, umask, new):
            return False
        if self.explored >= self.budget:
            raise _OutOfBudget
        self.explored += 1
        self.stack.append((unknown, entry, self.state, self.low, self.frontier, limit))
        self.state, self.kmask, self.umask, self.low = new, kmask, umask, low
        self.frontier = frontier
        self.pending -= not unknown
        entries.lift(entry)
        return True

    def _backtrack(self) -> tuple[bool, int, float]:
        """Undo the last linearization; returns where to resume trying."""
        unknown, entry, self.state, self.low, self.frontier, limit = self.stack.pop()
        entries = self.lists[unknown]
        bit = 1 << entries.op[entry]
        if unknown:
            self.umask ^= bit
        else:
            self.kmask ^= bit
            self.pending += 1
        entries.unlift(entry)
        return unknown, entries.next[entry], limit

    def _visited(self, kmask: int, umask: int, state: _State) -> bool:
        """Record the configuration; True if it or a dominating one was seen."""
        key = (kmask, state)
        lean = self.lean.get(key)
        if lean is not None and lean & ~umask == 0:
            return True
        if lean is None or umask & ~lean == 0:
            self.lean[key] = umask
        full = (kmask, umask, state)
        if full in self.seen:
            return True
        self.seen.add(full)
        return False

    def _redundant(self, i: int) -> bool:
        """True if an equivalent unknown write, invoked no later, is still open.

        Unknown writes of one class (same kind, prev_revision and value, where
        values no GET ever returned count as equal: only presence and revision
        can be observed) differ only in invocation time, and the earlier one
        can do all the later one can (its revision bound is never higher). So
        any linearization using a later one now can swap in the earliest open
        one, and trying that one alone is enough.
        """
        umask = self.umask
        for j in self.classes[i]:
            if not umask >> j & 1:
                return j != i
        return False

    def _writes_are_dead(self) -> bool:
        """True if any write linearized now would outgrow an op still to come."""
        ceilings, low = self.ceilings, self.low
        lower = self.floors.floor(self.frontier) + 1
        return low < len(ceilings) and ceilings[low] < lower

    def _lowest_open(self, low: int, kmask: int) -> int:
        """Index in ``by_ceiling`` of the first op not in ``kmask``, from ``low`` on."""
        order = self.by_ceiling
        while low < len(order) and kmask >> order[low] & 1:
            low += 1
        return low

    def _report(self) -> str:
        """Explain the deepest dead end: the state and the ops that could not follow."""
        _, mask, state = self.best
        rest = [i for i in range(len(self.ops)) if not mask >> i & 1]
        deadline = min(
            (self.ops[i].complete for i in rest if self.steps[i].known), default=None
        )
        blocked = [
            self.ops[i]
            for i in rest
            if deadline is not None and self.ops[i].invoke <= deadline
        ]
        # Completed ops first: old unknown writes that never happened are noise.
        blocked.sort(key=lambda op: (op.unknown, op.invoke, op.client))
        done = bin(mask).count("1")
        lines = [
            f"not linearizable: at best {done} of {len(self.ops)} operations on "
            f"key {self.ops[0].key!r} can be ordered, leaving {_describe_state(state)}; "
            "none of these can come next:"
        ]
        lines += [f"  {op.describe()}" for op in blocked[:_MAX_LISTED]]
        if len(blocked) > _MAX_LISTED:
            lines.append(f"  ... and {len(blocked) - _MAX_LISTED} more")
        return "\n".join(lines)
