"""Errors the core raises to its caller (local direction: "you asked for
something this node cannot do now"). Remote misbehaviour never raises: a bad
or stale message is dropped, as Raft expects of a lossy network."""

from __future__ import annotations

from .types import NodeId


class RaftError(Exception):
    """Base class of every error the consensus core raises."""


class NotLeader(RaftError):
    """Proposals and transfers go to the leader; ``leader`` is the hint."""

    def __init__(self, leader: NodeId | None) -> None:
        self.leader = leader
        hint = f"leader is {leader}" if leader else "no leader is known"
        super().__init__(f"this node is not the leader ({hint})")


class TransferInProgress(RaftError):
    """Proposals are refused while leadership moves to ``target``."""

    def __init__(self, target: NodeId) -> None:
        self.target = target
        super().__init__(f"leadership transfer to {target} in progress; retry on the new leader")


class ConfChangeInProgress(RaftError):
    """Single-server changes go one at a time, and only after the leader has
    committed an entry of its own term (the fix to thesis §4.1's bug)."""


class InvalidRequest(RaftError):
    """The request makes no sense for this cluster (unknown node, bad index)."""
