"""Reconnect delays: exponential, capped, jittered.

Jitter keeps a cluster whose peers all lost the same node from reconnecting
in lock-step; the cap (about a second) keeps a restarted peer from waiting
long, since Raft needs it back within an election timeout or two. The random
source is injected so tests and the simulator can fix it.
"""

from __future__ import annotations

import random

__all__ = ["BACKOFF_BASE", "BACKOFF_CAP", "backoff_delay"]

BACKOFF_BASE = 0.05
BACKOFF_CAP = 1.0
_MAX_DOUBLINGS = 30  # beyond this the cap wins anyway; keeps 2**n small


def backoff_delay(
    attempt: int, rng: random.Random, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first):
    uniform in [d/2, d] with d = min(cap, base * 2**attempt)."""
    ceiling = min(cap, base * 2 ** min(attempt, _MAX_DOUBLINGS))
    return rng.uniform(ceiling / 2, ceiling)
