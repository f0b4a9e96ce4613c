"""The status and member views the API serves, computed from one runtime.

``problems`` says in words what is wrong and what to do about it: an
operator at three in the morning reads this first.
"""

from __future__ import annotations

import time
from typing import Any

from quorate.manager.electorate import DEPARTED, MemberState, health
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


def member_states(rt: RaftRuntime) -> list[MemberState]:
    """Every member as this node sees it (the leader's view is the one that
    counts: followers forward /v1/members to it)."""
    node = rt.node
    now = time.monotonic()
    out = []
    for m in sorted(node.conf.members()):
        seen = now if m == rt.id else rt.last_contact.get(m)
        down = rt.down_since.get(m)
        out.append(MemberState(m, m in node.conf.voters, None if seen is None else now - seen,
                               0.0 if down is None else now - down, m in rt.confirmed_dead))
    return out


def alive_members(rt: RaftRuntime) -> set[str]:
    return {m.id for m in member_states(rt)
            if m.last_contact_s is not None and m.last_contact_s < rt.election_timeout_s}


def members(rt: RaftRuntime) -> list[dict[str, Any]]:
    """Current members with their health, then the departed ones (newest first)."""
    out = []
    for m in member_states(rt):
        info = rt.sm.members.get(m.id)
        out.append({
            "id": m.id,
            "peer_addr": info.peer_addr if info else None,
            "api_addr": info.api_addr if info else None,
            "role": "voter" if m.voter else "learner",
            "health": health(m, suspect_after_s=rt.election_timeout_s, dead_after_s=rt.dead_member_timeout_s),
            "last_contact_ms": None if m.last_contact_s is None else int(m.last_contact_s * 1000),
            "down_ms": int(m.down_for_s * 1000),
        })
    for m, (index, role) in sorted(rt.sm.departed.items(), key=lambda kv: -kv[1][0]):
        if m in rt.node.conf.members():
            continue
        out.append({"id": m, "peer_addr": None, "api_addr": None, "role": role, "health": DEPARTED,
                    "last_contact_ms": None, "departed_at_index": index})
    return out
