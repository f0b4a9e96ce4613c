"""Linearizability checking for client histories of the replicated KV store.

Theory of operation
-------------------
A history is linearizable when every operation can be given one point in
time, between its invocation and its response, such that the operations
taken in that order are a legal sequential run of the store (Herlihy & Wing).
The check has two parts.

1. A cheap global check on revisions. Every successful write returns a fresh
   value of the store's global revision counter, so no two may return the
   same one; and the counter only grows, so a write must return a revision
   above every revision observed by any operation (a write's revision, a
   read's mod_revision, a mismatch's current revision) that *completed*
   before the write was *invoked*.

2. Per-key search. Keys are independent (P-compositionality), so each key's
   sub-history is checked on its own with the Wing & Gong search as refined
   by Lowe: operations are call and return entries in a doubly linked list
   ordered by time; the search linearizes a call (applies it to the model),
   lifts its entries out of the list and starts again from the head; meeting
   a return entry means the operation it closes was not linearized in time,
   so the search backtracks. Visited (linearized set, model state) pairs are
   cached, so no configuration is explored twice. The loop keeps an explicit
   stack: histories have hundreds of operations per key.

The per-key model cannot predict exact revisions (other keys advance the
global counter too), so it keeps a lower bound: a write is legal when its
revision is above the revision of the key's previous write. Reads, CAS
comparisons and mismatch reports must match the key's mod_revision exactly.

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
  than both the key's previous write revision and every revision observed
  before the write was invoked (both bounds hold in every real run). A later
  read or mismatch that reports revision r pins it to r if r >= lo; a later
  CAS with prev_revision p pins it to p likewise; a later write with
  revision R is legal if R > lo (some mod_revision in [lo, R) exists).
  Every rule accepts a superset of what real runs can do, hence soundness;
  the price is that some anomalies hidden behind timeouts go unreported.

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
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["CheckResult", "OpKind", "Operation", "check_history"]

BUDGET_EXCEEDED = "search budget exceeded"
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


def _check_revisions(ops: Sequence[Operation], floors: _RevisionFloors) -> CheckResult | None:
    """Distinct write revisions, increasing in real time across all keys."""
    writes = sorted((op for op in ops if _is_acked_write(op)), key=lambda o: o.invoke)
    owner: dict[int, Operation] = {}
    for op in writes:
        rev = op.result[1]
        if rev in owner:
            first = owner[rev]
            message = (
                f"revision {rev} was returned by two successful writes: "
                f"{first.describe()}; {op.describe()}"
            )
            return CheckResult(ok=False, key=op.key, message=message, explored=0)
        owner[rev] = op
    for op in writes:
        rev = op.result[1]
        obs = floors.before(op.invoke)
        if obs is not None and obs.revision >= rev:
            message = (
                f"revision went backwards in real time: {op.describe()} was invoked "
                f"after {obs.op.describe()} had reported revision {obs.revision}"
            )
            return CheckResult(ok=False, key=op.key, message=message, explored=0)
    return None


# --------------------------------------------------------------------------
# The per-key model: pure functions from state to next state (None: illegal)

_State = tuple  # (value: str | None, lo: int, exact: bool); see module docstring
_INITIAL: _State = (None, 0, False)


@dataclass(frozen=True, slots=True)
class _Step:
    """An operation compiled for the search: the model rule plus its arguments."""

    rule: Callable[[_State, _Step], _State | None]
    value: str | None
    prev: int | None
    revision: int  # the reported revision, or the lower bound for an unknown write
    known: bool
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


def _put_ok(state: _State, step: _Step) -> _State | None:
    state = _compare(state, step)
    if state is None or step.revision <= state[1]:
        return None
    return (step.value, step.revision, True)


def _put_unknown(state: _State, step: _Step) -> _State | None:
    state = _compare(state, step)
    if state is None:
        return None
    return (step.value, max(state[1] + 1, step.revision), False)


def _delete_ok(state: _State, step: _Step) -> _State | None:
    if state[0] is None:
        return None
    state = _compare(state, step)
    if state is None or step.revision <= state[1]:
        return None
    return (None, step.revision, False)


def _delete_unknown(state: _State, step: _Step) -> _State | None:
    # Deleting a missing key has no effect: same as never linearizing it.
    if state[0] is None:
        return None
    state = _compare(state, step)
    if state is None:
        return None
    return (None, max(state[1] + 1, step.revision), False)


def _mismatch(state: _State, step: _Step) -> _State | None:
    if step.revision == step.prev:
        return None
    return _pin(state, step.revision)


def _get_ok(state: _State, step: _Step) -> _State | None:
    if state[0] != step.value:
        return None
    return _pin(state, step.revision)


def _not_found(state: _State, step: _Step) -> _State | None:
    return state if state[0] is None else None


_RULES: dict[tuple[OpKind, str | None], Callable[[_State, _Step], _State | None]] = {
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


def _compile(op: Operation, floors: _RevisionFloors) -> _Step:
    result = op.result
    if result is None:
        rule = _RULES[(op.kind, None)]
        # Any revision observed before the invocation was already assigned.
        lower = floors.floor(op.invoke) + 1
        return _Step(rule, op.value, op.prev_revision, lower, False, None)
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
    return _Step(rule, value, op.prev_revision, revision, True, ceiling)


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
        self.steps = [_compile(op, floors) for op in self.ops]
        self.budget = budget
        self.explored = 0
        self.known_total = sum(step.known for step in self.steps)
        # Ops with a ceiling, lowest ceiling first, for dead-end pruning.
        bounded = [i for i, step in enumerate(self.steps) if step.ceiling is not None]
        self.by_ceiling = sorted(bounded, key=lambda i: self.steps[i].ceiling)
        self.ceilings = [self.steps[i].ceiling for i in self.by_ceiling]
        # (completed-ops mask, state) -> unknown-ops masks visited with it.
        self.seen: dict[tuple[int, _State], list[int]] = {}
        # Deepest point reached (counted in completed ops), for the report.
        self.best: tuple[int, int, _State] = (-1, 0, _INITIAL)
        # The current configuration, and the stack of frames to return to:
        # (from unknown list, call entry, state before, low before, limit).
        self.state, self.kmask, self.umask, self.low = _INITIAL, 0, 0, 0
        self.pending = self.known_total
        self.stack: list[tuple[bool, int, _State, int, float]] = []
        events = [(op.invoke, 0, i) for i, op in enumerate(self.ops)] + [
            (op.complete, 1, i) for i, op in enumerate(self.ops) if not op.unknown
        ]
        self.lists = (
            _EntryList([e for e in events if self.steps[e[2]].known]),
            _EntryList([e for e in events if not self.steps[e[2]].known]),
        )

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
        step = self.steps[i]
        new = step.rule(self.state, step)
        if new is None:
            return False
        bit = 1 << i
        kmask = self.kmask if unknown else self.kmask | bit
        umask = self.umask | bit if unknown else self.umask
        if self._visited(kmask, umask, new):
            return False
        if self.explored >= self.budget:
            raise _OutOfBudget
        self.explored += 1
        done = self.known_total - self.pending + (not unknown)
        if done > self.best[0]:
            self.best = (done, kmask | umask, new)
        low = self._lowest_open(self.low, kmask)
        if low < len(self.ceilings) and self.ceilings[low] < new[1]:
            return False  # an op still to come needs an older revision
        self.stack.append((unknown, entry, self.state, self.low, limit))
        self.state, self.kmask, self.umask, self.low = new, kmask, umask, low
        self.pending -= not unknown
        entries.lift(entry)
        return True

    def _backtrack(self) -> tuple[bool, int, float]:
        """Undo the last linearization; returns where to resume trying."""
        unknown, entry, self.state, self.low, limit = self.stack.pop()
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
        umasks = self.seen.setdefault((kmask, state), [])
        if any(seen & ~umask == 0 for seen in umasks):
            return True
        umasks.append(umask)
        return False

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
        blocked.sort(key=lambda op: (op.invoke, op.client))
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
