"""Simulated clients and the history they record for the linearizability check.

Each client is sequential: it picks an operation on a small key set (so
operations conflict), sends it to a random live node and waits. Writes are
proposed at the leader; the client then watches the log index it got: the
entry applied there is either its own command (the result is what the KV
store returned) or another one (the write definitely failed and is not
recorded). Reads go through ReadIndex and are served from the node's local
store once it has applied up to the read index. A write that times out after
being proposed is recorded with an unknown outcome; a read that times out or
a write that never reached any log is simply dropped. NotLeader answers make
the client retry elsewhere within the same operation.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from quorate.kv import (
    Applied,
    ApplyResult,
    Delete,
    KVStore,
    NotFound,
    Put,
    Rejected,
    RevisionMismatch,
    encode_command,
)
from quorate.raft.errors import NotLeader, RaftError
from quorate.raft.types import Entry

from .checkers import InvariantViolation
from .events import EventLoop
from .linearizability import Operation, OpKind
from .node import SimNode
from .trace import Trace


@dataclass(frozen=True, slots=True)
class ClientSettings:
    clients: int = 4
    keys: int = 4
    timeout_ms: int = 1000
    retry_ms: int = 20
    read_retry_ms: int = 200  # a read attempt with no answer is retried elsewhere
    max_think_ms: int = 10
    min_rtt_ms: int = 1  # one-way delay between a client and a node
    max_rtt_ms: int = 4


@dataclass(slots=True)
class ClientStats:
    ok: int = 0
    unknown: int = 0
    failed: int = 0  # definite failures and dropped reads
    retries: int = 0


@dataclass(slots=True)
class _Pending:
    seq: int
    kind: OpKind
    key: str
    value: str | None
    prev: int | None
    invoke: int
    request_id: str
    data: bytes = b""
    proposed: bool = False
    attempts: int = 0


class ClientWorld:
    """The part of the cluster clients see."""

    def __init__(
        self,
        loop: EventLoop,
        trace: Trace,
        nodes: Callable[[], list[SimNode]],
        node: Callable[[str], SimNode | None],
    ) -> None:
        self.loop = loop
        self.trace = trace
        self.nodes = nodes
        self.node = node
        self.history: list[Operation] = []
        self.stats = ClientStats()
        # Operations invoked at or after this time must succeed (liveness).
        self.strict_after: int | None = None
        self.late_problems: list[str] = []


class Client:
    """One sequential client."""

    def __init__(self, cid: int, world: ClientWorld, rng: random.Random, cfg: ClientSettings) -> None:
        self.cid = cid
        self.world = world
        self.rng = rng
        self.cfg = cfg
        self.keys = [f"k{i}" for i in range(cfg.keys)]
        self.known_rev: dict[str, int] = {}
        self.stopped = False
        self.op: _Pending | None = None
        self.completed_strict = 0
        self._seq = 0

    @property
    def idle(self) -> bool:
        return self.op is None

    def start(self) -> None:
        self._schedule_next()

    # -- issuing -------------------------------------------------------------

    def _schedule_next(self) -> None:
        if not self.stopped:
            self.world.loop.call_later(self.rng.randint(1, self.cfg.max_think_ms), self._begin)

    def _begin(self) -> None:
        if self.stopped or self.op is not None:
            return
        self._seq += 1
        op = self._choose(self._seq)
        self.op = op
        self.world.loop.call_later(self.cfg.timeout_ms, self._timeout, op.seq)
        self._send_to(self._random_node(), op)

    def _choose(self, seq: int) -> _Pending:
        rng = self.rng
        key = rng.choice(self.keys)
        now = self.world.loop.now
        rid = f"c{self.cid}-{seq}"
        roll = rng.random()
        if roll < 0.3:
            return _Pending(seq, OpKind.GET, key, None, None, now, rid)
        if roll < 0.6:
            value = f"v{self.cid}.{seq}"
            op = _Pending(seq, OpKind.PUT, key, value, None, now, rid)
        elif roll < 0.8:  # compare-and-swap on what this client last saw
            value = f"v{self.cid}.{seq}"
            prev = self.known_rev.get(key, 0) if rng.random() < 0.8 else rng.randint(0, 5)
            op = _Pending(seq, OpKind.PUT, key, value, prev, now, rid)
        else:
            prev = self.known_rev.get(key) if rng.random() < 0.3 else None
            op = _Pending(seq, OpKind.DELETE, key, None, prev, now, rid)
        cmd = (
            Put(key, op.value or "", op.prev, rid)
            if op.kind is OpKind.PUT
            else Delete(key, op.prev, rid)
        )
        op.data = encode_command(cmd)
        return op

    def _random_node(self) -> str | None:
        live = self.world.nodes()
        return self.rng.choice(live).id if live else None

    def _hop(self) -> int:
        return self.rng.randint(self.cfg.min_rtt_ms, self.cfg.max_rtt_ms)

    def _send_to(self, target: str | None, op: _Pending) -> None:
        node = self.world.node(target) if target is not None else None
        if node is None or not node.alive:
            self._retry(op, None)
            return
        op.attempts += 1
        self.world.trace.log(self.world.loop.now, f"c{self.cid}", f"{_describe(op)} to {node.id}")
        self.world.loop.call_later(self._hop(), self._arrive, node, op.seq)

    def _arrive(self, node: SimNode, seq: int) -> None:
        """The request reaches the node, or the connection is refused."""
        op = self.op
        if op is None or op.seq != seq:
            return
        if not node.alive:
            self._retry(op, None)
            return
        node.call(self._at_node, node, seq)

    def _retry(self, op: _Pending, hint: str | None) -> None:
        self.world.stats.retries += 1
        target = hint if hint is not None else self._random_node()
        self.world.loop.call_later(self.cfg.retry_ms, self._resend, op.seq, target)

    def _resend(self, seq: int, target: str | None) -> None:
        op = self.op
        if op is not None and op.seq == seq and not op.proposed:
            self._send_to(target, op)

    # -- at the node -----------------------------------------------------------

    def _at_node(self, node: SimNode, seq: int) -> None:
        op = self.op
        if op is None or op.seq != seq or op.proposed or node.raft is None:
            return
        if op.kind is OpKind.GET:
            self._read_at(node, op)
        else:
            self._propose_at(node, op)

    def _propose_at(self, node: SimNode, op: _Pending) -> None:
        raft = node.raft
        assert raft is not None
        try:
            index = raft.propose(op.data)
        except NotLeader as exc:
            self._retry(op, exc.leader)
            return
        except RaftError:
            self._retry(op, None)
            return
        op.proposed = True
        seq = op.seq
        node.watch(index, lambda entry, result: self._applied(node, seq, entry, result))
        node.run(lambda: None)

    def _read_at(self, node: SimNode, op: _Pending) -> None:
        ctx = f"{op.request_id}/{op.attempts}".encode()
        seq = op.seq
        try:
            node.read(ctx, lambda kv: self._served(seq, op.key, kv))
        except NotLeader as exc:
            self._retry(op, exc.leader)
            return
        except RaftError:
            self._retry(op, None)
            return
        self.world.loop.call_later(self.cfg.read_retry_ms, self._read_stalled, node, seq, ctx)

    def _read_stalled(self, node: SimNode, seq: int, ctx: bytes) -> None:
        """Reads are idempotent: one whose request or answer was lost (say,
        forwarded to a leader that is no more) is simply sent again."""
        op = self.op
        if op is None or op.seq != seq:
            return
        node.forget_read(ctx)
        self._retry(op, None)

    def _applied(self, node: SimNode, seq: int, entry: Entry, result: ApplyResult | None) -> None:
        if entry.data != self._data_of(seq):
            self.world.loop.call_later(self._hop(), self._finish, seq, None, False)
            return
        self.world.loop.call_later(self._hop(), self._finish, seq, _write_result(result), True)

    def _data_of(self, seq: int) -> bytes | None:
        op = self.op
        return op.data if op is not None and op.seq == seq else None

    def _served(self, seq: int, key: str, kv: KVStore) -> None:
        item = kv.get(key)
        result = ("not_found",) if item is None else ("ok", item.value, item.mod_revision)
        self.world.loop.call_later(self._hop(), self._finish, seq, result, True)

    # -- completion ------------------------------------------------------------

    def _finish(self, seq: int, result: tuple | None, known: bool) -> None:
        op = self.op
        if op is None or op.seq != seq:
            return
        now = self.world.loop.now
        if known and result is not None:
            self._record(op, now, result)
            self.world.stats.ok += 1
            self._learn(op, result)
            if self._strict(op):
                self.completed_strict += 1
        else:
            self.world.stats.failed += 1
            self._late(op, "failed: another entry took its log index")
        self.world.trace.log(now, f"c{self.cid}", f"{_describe(op)} -> {result}")
        self.op = None
        self._schedule_next()

    def _timeout(self, seq: int) -> None:
        op = self.op
        if op is None or op.seq != seq:
            return
        now = self.world.loop.now
        if op.kind is not OpKind.GET and op.proposed:
            self.world.history.append(
                Operation(self.cid, op.kind, op.key, op.value, op.prev, op.invoke, None, None)
            )
            self.world.stats.unknown += 1
            outcome = "timeout (unknown)"
        else:
            self.world.stats.failed += 1
            outcome = "timeout (dropped)"
        self._late(op, outcome)
        self.world.trace.log(now, f"c{self.cid}", f"{_describe(op)} -> {outcome}")
        self.op = None
        self._schedule_next()

    def _record(self, op: _Pending, now: int, result: tuple) -> None:
        self.world.history.append(
            Operation(self.cid, op.kind, op.key, op.value, op.prev, op.invoke, now, result)
        )

    def _learn(self, op: _Pending, result: tuple) -> None:
        if result[0] == "ok":
            if op.kind is OpKind.GET:
                self.known_rev[op.key] = result[2]
            elif op.kind is OpKind.PUT:
                self.known_rev[op.key] = result[1]
            else:
                self.known_rev[op.key] = 0
        elif result[0] == "mismatch":
            self.known_rev[op.key] = result[1]
        elif result[0] == "not_found":
            self.known_rev[op.key] = 0

    def _strict(self, op: _Pending) -> bool:
        after = self.world.strict_after
        return after is not None and op.invoke >= after

    def _late(self, op: _Pending, outcome: str) -> None:
        if self._strict(op):
            self.world.late_problems.append(
                f"c{self.cid} {_describe(op)} invoked at {op.invoke}: {outcome}"
            )


def _write_result(result: ApplyResult | None) -> tuple:
    if isinstance(result, Applied):
        return ("ok", result.revision)
    if isinstance(result, RevisionMismatch):
        return ("mismatch", result.current_revision)
    if isinstance(result, NotFound):
        return ("not_found",)
    if isinstance(result, Rejected):
        raise InvariantViolation(f"the KV store rejected a client command: {result.reason}")
    raise InvariantViolation(f"a client command was applied without a KV result: {result!r}")


def _describe(op: _Pending) -> str:
    prev = "" if op.prev is None else f" prev={op.prev}"
    value = "" if op.value is None else f"={op.value}"
    return f"{op.kind.value} {op.key}{value}{prev}"
