"""The client side of the linearizability tests on real processes.

Clients do put / get / compare-and-set / delete on a few keys through
random nodes. Outcomes are recorded honestly: a write that timed out or whose
connection broke is "unknown" (it may have happened), one refused with
no_leader / not_committed did not happen and is dropped.
"""

from __future__ import annotations

import random
import threading
import time

from quorate.sim.linearizability import Operation, OpKind

from .harness import ProcCluster, http

KEYS = ["x", "y", "z"]
DEFINITELY_NOT_APPLIED = {"no_leader", "not_committed", "recovery_mode", "shutting_down"}


def now_us() -> int:
    return time.monotonic_ns() // 1000


def client(c: ProcCluster, cid: int, stop: threading.Event, out: list[Operation], seed: int) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        node = rng.choice(list(c.agents))
        key = rng.choice(KEYS)
        roll = rng.random()
        invoke = now_us()
        if roll < 0.4:
            op = Operation(cid, OpKind.GET, key, invoke=invoke)
            method, path, body = "GET", f"/v1/kv/{key}", None
        elif roll < 0.7:
            value = f"c{cid}-{rng.randrange(10**6)}"
            op = Operation(cid, OpKind.PUT, key, value=value, invoke=invoke)
            method, path, body = "PUT", f"/v1/kv/{key}", {"value": value}
        elif roll < 0.9:
            value = f"c{cid}-{rng.randrange(10**6)}"
            prev = rng.choice([0, 1, 2, 3, 5, 8, 13])
            op = Operation(cid, OpKind.PUT, key, value=value, prev_revision=prev, invoke=invoke)
            method, path, body = "PUT", f"/v1/kv/{key}", {"value": value, "prev_revision": prev}
        else:
            op = Operation(cid, OpKind.DELETE, key, invoke=invoke)
            method, path, body = "DELETE", f"/v1/kv/{key}", None
        try:
            r = http(method, c.agents[node].url + path, body, timeout=8.0)
        except OSError as exc:
            if not _never_sent(exc) and op.kind is not OpKind.GET:
                out.append(op)  # unknown outcome: may have happened
            stop.wait(0.05)  # the node is down or paused: do not spin on it
            continue
        done = now_us()
        result = _result(op, r.status, r.body)
        if result == "unknown":
            if op.kind is not OpKind.GET:
                out.append(op)
        elif result is not None:
            out.append(Operation(op.client, op.kind, op.key, op.value, op.prev_revision, invoke, done, result))


def _never_sent(exc: OSError) -> bool:
    """A refused connection means the request never reached any node."""
    reason = getattr(exc, "reason", exc)
    return isinstance(reason, ConnectionRefusedError)


def _result(op: Operation, status: int, body: object) -> tuple | str | None:  # type: ignore[type-arg]
    if not isinstance(body, dict):
        return "unknown"
    if status == 200:
        if op.kind is OpKind.GET:
            return ("ok", body["value"], body["mod_revision"])
        return ("ok", body["revision"])
    if status == 404 and body.get("error") == "not_found":
        return ("not_found",)
    if status == 409 and body.get("error") == "revision_mismatch":
        return ("mismatch", body["current_revision"])
    if body.get("error") in DEFINITELY_NOT_APPLIED:
        return None
    return "unknown"
