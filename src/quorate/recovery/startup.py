"""The start-up decision (DESIGN.md S5, seed 002): pure, so every case is a
one-line unit test and the reason a node gives is the one tested.

Inputs: the counter of this node's newest valid local backup, and what the
replicated store says once this node is part of the cluster and caught up
(a linearizable read): its backup counter and whether a recovery is under
way. The five cases of the seed::

    local   store                      decision
    -       -                          1 normal   (a new node on a new store)
    -       C                          2 normal   (a new node joins a living store)
    L       -                          3 RECOVERY (the store lost its data)
    L <= C  C                          4 normal   (a node returns to its cluster)
    L > C   C                          5 REFUSE   (the store was rolled back),
                                          or normal with --accept-rollback: the
                                          newer local backups become orphans

Plus the seed's edge case 1: while a recovery is under way (offers or a
choice in the store, no completion yet) every starting node joins it in
recovery mode, with or without a backup of its own (seed: "any node that
starts before recovery is completed ... will go into recovery"). The
counter is restored last, just before completion, so a store with a
counter and no recovery under way is a living one (edge case 2).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Action", "Decision", "StoreFacts", "decide"]


class Action(enum.Enum):
    NORMAL = "normal"
    RECOVERY = "recovery"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """What a linearizable read of the store said at start."""

    counter: int | None
    recovery_in_progress: bool = False
    #: (node, counter) of the last completed recovery, for the messages.
    recovered_from: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    case: int  # 1..5 as in the seed; 0: joining a recovery under way
    reason: str
    #: Local backups above this counter are to be kept as orphans (case 5
    #: accepted): the store is older than they are.
    orphan_above: int | None = None


def decide(local: int | None, store: StoreFacts, *, accept_rollback: bool = False) -> Decision:
    stored = store.counter
    if store.recovery_in_progress:
        have = f"offering its backup {local}" if local is not None else "with no backup of its own to offer"
        return Decision(Action.RECOVERY, 0, f"a recovery is under way in the store: joining it in recovery "
                                            f"mode, {have}")
    if local is None and stored is None:
        return Decision(Action.NORMAL, 1, "no local backup and no backup counter in the store: a new node "
                                          "on a new store")
    if local is None:
        return Decision(Action.NORMAL, 2, f"no local backup; the store's backup counter is {stored}: a new "
                                          "node joining a living store")
    if stored is None:
        return Decision(Action.RECOVERY, 3, f"local backup {local} but no backup counter in the store: the "
                                            "store lost its data; entering recovery mode")
    if local <= stored:
        return Decision(Action.NORMAL, 4, f"local backup {local} is not newer than the store's counter "
                                          f"{stored}: a node returning to its cluster")
    rolled = _rollback_text(local, stored, store.recovered_from)
    if accept_rollback:
        return Decision(Action.NORMAL, 5, f"{rolled}; --accept-rollback given: running on the older store, "
                                          f"local backups above {stored} are kept as orphans",
                        orphan_above=stored)
    return Decision(Action.REFUSE, 5, f"{rolled}. Refusing to start. Either restart with --accept-rollback "
                                      "to run on the store as it is (the newer local backups are kept as "
                                      "orphan files), or recover from the newer backup: stop every manager, "
                                      "remove their data directories (keep the backup directories) and start "
                                      "them again, which enters recovery mode (quorate recovery status)")


def _rollback_text(local: int, stored: int, recovered_from: tuple[str, int] | None) -> str:
    text = (f"local backup {local} is newer than the store's backup counter {stored}: the store was "
            "rolled back (or restored from an older backup)")
    if recovered_from is not None:
        node, counter = recovered_from
        text += f"; its last recovery restored backup {counter} of {node}"
    return text
