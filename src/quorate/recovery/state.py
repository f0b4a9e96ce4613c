"""The recovery records in the store, read into one immutable view (pure).

Under ``_quorate/recovery/``:

- ``offers/<node>``: JSON ``{"counter", "wall_time"}`` of the node's newest
  local backup, or ``{"counter": null}`` from a node that has none (it
  still says it is there, so "every expected member offered" can hold);
- ``proceed``: the id of the node whose backup is restored; written with
  ``prev_revision=0`` so only the first choice counts;
- ``complete``: JSON ``{"node", "counter", "wall_time"}``, written by the
  restoring node after everything else, the backup counter included.

A view only reads; the states a node moves through are in ``mode.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .keys import COMPLETE_KEY, OFFERS_PREFIX, PROCEED_KEY

__all__ = ["Complete", "Offer", "RecoveryView", "complete_value", "offer_value"]


@dataclass(frozen=True, slots=True)
class Offer:
    node: str
    counter: int | None
    wall_time: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "counter": self.counter, "wall_time": self.wall_time}


@dataclass(frozen=True, slots=True)
class Complete:
    node: str
    counter: int
    wall_time: float

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "counter": self.counter, "wall_time": self.wall_time}


def offer_value(counter: int | None, wall_time: float | None) -> str:
    return json.dumps({"counter": counter, "wall_time": wall_time}, sort_keys=True)


def complete_value(node: str, counter: int, wall_time: float) -> str:
    return json.dumps({"node": node, "counter": counter, "wall_time": wall_time}, sort_keys=True)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _counter(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _parse_offer(node: str, text: str) -> Offer:
    try:
        raw = json.loads(text)
    except ValueError:
        raw = {}
    if not isinstance(raw, dict):
        raw = {}
    return Offer(node, _counter(raw.get("counter")), _number(raw.get("wall_time")))


def _parse_complete(text: str) -> Complete | None:
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("node"), str) or _counter(raw.get("counter")) is None:
        return None
    return Complete(raw["node"], raw["counter"], _number(raw.get("wall_time")) or 0.0)


@dataclass(frozen=True, slots=True)
class RecoveryView:
    offers: tuple[Offer, ...] = ()
    proceed: str | None = None
    complete: Complete | None = None

    @classmethod
    def from_items(cls, items: Iterable[tuple[str, str]]) -> RecoveryView:
        """From the (key, value) pairs under the recovery prefix."""
        offers: list[Offer] = []
        proceed = None
        complete = None
        for key, value in items:
            if key.startswith(OFFERS_PREFIX) and len(key) > len(OFFERS_PREFIX):
                offers.append(_parse_offer(key[len(OFFERS_PREFIX):], value))
            elif key == PROCEED_KEY and value:
                proceed = value
            elif key == COMPLETE_KEY:
                complete = _parse_complete(value)
        return cls(tuple(sorted(offers, key=lambda o: o.node)), proceed, complete)

    @property
    def in_progress(self) -> bool:
        """A recovery has started (someone offered or chose) and not ended."""
        return self.complete is None and (bool(self.offers) or self.proceed is not None)

    def state(self, active: bool) -> str:
        """waiting | proceeding | complete, or none when this node is not in
        recovery mode and the store holds no recovery at all."""
        if self.complete is not None:
            return "complete"
        if self.proceed is not None:
            return "proceeding"
        if active or self.offers:
            return "waiting"
        return "none"

    def offer(self, node: str) -> Offer | None:
        return next((o for o in self.offers if o.node == node), None)

    def suggested(self) -> Offer | None:
        """The offer to restore: the highest counter (the most recent
        backup of the store), then the latest wall time, then the node id
        so that every node suggests the same one."""
        usable = [o for o in self.offers if o.counter is not None]
        if not usable:
            return None
        return max(usable, key=lambda o: (o.counter, o.wall_time or 0.0, o.node))

    def all_offered(self, expected: Iterable[str]) -> bool:
        have = {o.node for o in self.offers}
        wanted = set(expected)
        return bool(wanted) and wanted <= have
