"""Majority arithmetic, kept apart so it can be checked against an oracle."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping

from .types import NodeId


class VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def majority(n: int) -> int:
    """Smallest number of voters that forms a quorum of ``n``."""
    return n // 2 + 1


def committed_index(voters: Collection[NodeId], match: Mapping[NodeId, int]) -> int:
    """Largest index stored on a majority of ``voters`` (missing ones count 0).

    An empty voter set commits nothing: there is no quorum to speak for it.
    """
    if not voters:
        return 0
    acked = sorted((match.get(v, 0) for v in voters), reverse=True)
    return acked[majority(len(voters)) - 1]


def vote_result(voters: Collection[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    """WON once a majority granted, LOST once a majority can no longer grant."""
    if not voters:
        return VoteResult.LOST
    need = majority(len(voters))
    granted = sum(1 for v in voters if votes.get(v) is True)
    rejected = sum(1 for v in voters if votes.get(v) is False)
    if granted >= need:
        return VoteResult.WON
    if len(voters) - rejected < need:
        return VoteResult.LOST
    return VoteResult.PENDING


def has_quorum(voters: Collection[NodeId], present: Collection[NodeId]) -> bool:
    """True when the ``present`` members include a majority of ``voters``."""
    if not voters:
        return False
    return sum(1 for v in voters if v in present) >= majority(len(voters))
