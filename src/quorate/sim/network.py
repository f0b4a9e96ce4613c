"""The simulated network between nodes: delay, loss, duplication, partitions.

Every message gets its own random delay, so reordering comes for free. A
partition is a set of blocked directed links, which covers the symmetric
split, the one-way cut (A cannot reach B while B still reaches A) and the
bridge (one node talks to two halves that cannot talk to each other). Links
are checked when a message is sent; a message already in flight when a
partition starts still arrives, as on a real network.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from quorate.raft.types import Message

from .events import EventLoop


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    min_delay_ms: int = 1
    max_delay_ms: int = 10
    drop_rate: float = 0.0  # the nemesis raises it for a while
    duplicate_rate: float = 0.01  # always on: Raft must shrug off duplicates

    def __post_init__(self) -> None:
        if not 0 <= self.min_delay_ms <= self.max_delay_ms:
            raise ValueError("need 0 <= min_delay_ms <= max_delay_ms")
        for rate in (self.drop_rate, self.duplicate_rate):
            if not 0.0 <= rate <= 1.0:
                raise ValueError("rates are probabilities in [0, 1]")


@dataclass(slots=True)
class NetworkStats:
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    blocked: int = 0
    duplicated: int = 0


class Network:
    """Carries messages from ``send`` to ``deliver`` after a random delay."""

    __slots__ = ("_loop", "_rng", "config", "drop_rate", "_deliver", "_blocked", "stats")

    def __init__(
        self,
        loop: EventLoop,
        rng: random.Random,
        config: NetworkConfig,
        deliver: Callable[[Message], None],
    ) -> None:
        self._loop = loop
        self._rng = rng
        self.config = config
        # The nemesis raises this during a run; config keeps the baseline.
        self.drop_rate = config.drop_rate
        self._deliver = deliver
        self._blocked: set[tuple[str, str]] = set()
        self.stats = NetworkStats()

    def send(self, msg: Message) -> None:
        self.stats.sent += 1
        if (msg.frm, msg.to) in self._blocked:
            self.stats.blocked += 1
            return
        rng = self._rng
        if self.drop_rate and rng.random() < self.drop_rate:
            self.stats.dropped += 1
            return
        self._loop.call_later(self._delay(), self._arrive, msg)
        if self.config.duplicate_rate and rng.random() < self.config.duplicate_rate:
            self.stats.duplicated += 1
            self._loop.call_later(self._delay(), self._arrive, msg)

    def _delay(self) -> int:
        return self._rng.randint(self.config.min_delay_ms, self.config.max_delay_ms)

    def _arrive(self, msg: Message) -> None:
        self.stats.delivered += 1
        self._deliver(msg)

    # -- partitions ------------------------------------------------------------

    def can_reach(self, frm: str, to: str) -> bool:
        return (frm, to) not in self._blocked

    @property
    def partitioned(self) -> bool:
        return bool(self._blocked)

    def split(self, groups: Sequence[Iterable[str]]) -> None:
        """Symmetric partition: nodes talk only within their own group."""
        sets = [sorted(g) for g in groups]
        for i, a in enumerate(sets):
            for b in sets[i + 1 :]:
                self._block_both(a, b)

    def cut_one_way(self, frm: Iterable[str], to: Iterable[str]) -> None:
        """Asymmetric partition: ``frm`` can no longer reach ``to``; the
        reverse direction still works."""
        targets = sorted(to)
        for a in sorted(frm):
            for b in targets:
                if a != b:
                    self._blocked.add((a, b))

    def bridge(self, left: Iterable[str], right: Iterable[str]) -> None:
        """The two halves cannot talk; any node in neither half (the bridge)
        still reaches both."""
        self._block_both(sorted(left), sorted(right))

    def heal(self) -> None:
        self._blocked.clear()

    def _block_both(self, a: Sequence[str], b: Sequence[str]) -> None:
        for x in a:
            for y in b:
                if x != y:
                    self._blocked.add((x, y))
                    self._blocked.add((y, x))
