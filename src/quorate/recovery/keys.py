"""The reserved keys backups and recovery mode live under (seed 002).

The backup counter is kept *outside* the recovery prefix so that it is part
of what a backup restores: its presence in the store is the marker a
starting node reads to tell a living store from a lost one, which is why a
restore writes it last. The recovery prefix only holds the running state
of one recovery (offers, the operator's choice, completion) and is never
backed up or restored. Member addresses are never restored either: each
node registers its own when it starts, and an old address could point at
somebody else's port.
"""

from __future__ import annotations

from quorate.runtime.state_machine import MEMBER_PREFIX

RESERVED_PREFIX = "_quorate/"
COUNTER_KEY = "_quorate/backup/counter"
RECOVERY_PREFIX = "_quorate/recovery/"
OFFERS_PREFIX = RECOVERY_PREFIX + "offers/"
PROCEED_KEY = RECOVERY_PREFIX + "proceed"
COMPLETE_KEY = RECOVERY_PREFIX + "complete"

__all__ = [
    "COMPLETE_KEY",
    "COUNTER_KEY",
    "MEMBER_PREFIX",
    "OFFERS_PREFIX",
    "PROCEED_KEY",
    "RECOVERY_PREFIX",
    "RESERVED_PREFIX",
    "in_backup",
    "parse_counter",
]


def in_backup(key: str) -> bool:
    """Whether ``key`` belongs in a backup's body (and so in a restore).
    Changes to the other keys are bookkeeping: they never make a node's
    backup dirty, or the nodes would back each other's counters up forever."""
    return not (key == COUNTER_KEY or key.startswith(RECOVERY_PREFIX) or key.startswith(MEMBER_PREFIX))


def parse_counter(value: str | None) -> int | None:
    """The backup counter stored as a decimal string; None when absent or
    not a positive integer (nobody but quorate should write that key)."""
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit():
        return None
    n = int(text)
    return n if n > 0 else None
