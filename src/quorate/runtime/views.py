"""The status and member views the API serves, computed from one runtime.

``problems`` says in words what is wrong and what to do about it: an
operator at three in the morning reads this first.
"""

from __future__ import annotations

import time
from typing import Any

from quorate.raft import Role

from .raft_loop import RaftRuntime


def _role_name(rt: RaftRuntime) -> str:
    node = rt.node
    if rt.id in node.conf.learners:
        return "learner"
    if node.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
        return "candidate"
    return node.role.value


def has_quorum(rt: RaftRuntime) -> bool:
    """True when this node knows a leader that heard from a majority within
    an election timeout (the leader checks itself; a follower trusts a
    leader it heard from within the timeout, since that leader would have
    stepped down without a majority: check-quorum)."""
    node = rt.node
    if node.role is Role.LEADER:
        return node.quorum_active
    if node.leader is None:
        return False
    seen = rt.last_contact.get(node.leader)
    return seen is not None and time.monotonic() - seen < rt.election_timeout_s


def problems(rt: RaftRuntime) -> list[str]:
    node = rt.node
    out: list[str] = []
    voters = sorted(node.conf.voters)
    if not voters:
        out.append("this node is not a member of any configuration yet (waiting to be added by a leader)")
    elif node.leader is None:
        out.append(
            f"no leader is known in term {node.term}: writes and linearizable reads are refused. "
            f"A leader needs {len(voters) // 2 + 1} of the {len(voters)} voters ({', '.join(voters)}) "
            "to reach each other; check which of them are down or cut off")
    elif not has_quorum(rt):
        out.append(f"the leader {node.leader} has not been heard from within an election timeout")
    if len(voters) % 2 == 0 and voters:
        out.append(
            f"{len(voters)} voters is an even number: it tolerates no more failures than "
            f"{len(voters) - 1} would; add or remove one voter")
    return out


def status(rt: RaftRuntime) -> dict[str, Any]:
    node = rt.node
    return {
        "id": rt.id,
        "role": _role_name(rt),
        "term": node.term,
        "leader": node.leader,
        "commit_index": node.commit_index,
        "applied_index": rt.sm.applied_index,
        "voters": sorted(node.conf.voters),
        "learners": sorted(node.conf.learners),
        "quorum": has_quorum(rt),
        "problems": problems(rt),
    }


def members(rt: RaftRuntime) -> list[dict[str, Any]]:
    node = rt.node
    now = time.monotonic()
    out = []
    for m in sorted(node.conf.members()):
        info = rt.sm.members.get(m)
        if m == rt.id:
            since_ms: int | None = 0
        else:
            seen = rt.last_contact.get(m)
            since_ms = None if seen is None else int((now - seen) * 1000)
        alive = since_ms is not None and since_ms < rt.election_timeout_s * 1000
        out.append({
            "id": m,
            "peer_addr": info.peer_addr if info else None,
            "api_addr": info.api_addr if info else None,
            "role": "voter" if m in node.conf.voters else "learner",
            "health": "alive" if alive else "suspect",
            "last_contact_ms": since_ms,
        })
    return out
