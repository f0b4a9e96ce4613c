"""Electorate hygiene (S4, seed 004): who counts in the electorate, and
when a member may leave it. Pure functions; the leader applies them.

Habitat's elections hung because members confirmed dead kept counting while
new ones were added, so the quorum grew out of reach. quorate keeps four
rules:

1. A confirmed-dead voter is removed, through consensus, before its
   replacement is added.
2. A member that has failed for longer than the dead-member timeout is
   removed by the leader. This never takes the voter count below the
   minimum, and never removes more than (N-1)/2 voters in one pass.
3. An operator's removal is refused when it would break the quorum or take
   out a live member, unless forced.
4. When the quorum is lost, the advice names the fewest members whose
   removal would restore it.

Health of a member, as this leader sees it:

``alive``
    heard from within an election timeout.
``suspect``
    not heard from for longer than that, but not failed yet.
``failed``
    the provider confirms its instance terminated, or it has been
    unreachable for longer than the dead-member timeout.
``departed``
    it left or was removed. This is kept in the replicated member directory
    for a while, so ``quorate members`` can say where a member went.
"""

from __future__ import annotations

from dataclasses import dataclass

ALIVE, SUSPECT, FAILED, DEPARTED = "alive", "suspect", "failed", "departed"


@dataclass(frozen=True, slots=True)
class MemberState:
    id: str
    voter: bool
    last_contact_s: float | None   # seconds since last heard from (None: never, since this node started)
    down_for_s: float              # how long it has been continuously not alive (0 when alive)
    confirmed_dead: bool           # the provider says its instance terminated


def health(m: MemberState, *, suspect_after_s: float, dead_after_s: float) -> str:
    if m.last_contact_s is not None and m.last_contact_s < suspect_after_s:
        return ALIVE
    if m.confirmed_dead or m.down_for_s >= dead_after_s:
        return FAILED
    return SUSPECT


def majority(n: int) -> int:
    return n // 2 + 1


def removal_refusal(voters: set[str], alive: set[str], target: str) -> str | None:
    """Why removing ``target`` is refused without --force, or None."""
    if target in alive:
        return (f"{target} is alive (heard from within an election timeout); removing a live member is "
                "refused: make it leave gracefully (`quorate members leave` on it), or use --force")
    if target in voters:
        remaining = voters - {target}
        live = remaining & alive
        if remaining and len(live) < majority(len(remaining)):
            return (f"removing {target} leaves {len(remaining)} voters of which {len(live)} are alive, "
                    f"below the {majority(len(remaining))} a quorum needs; use --force to remove it anyway")
    return None


def cleanup(states: list[MemberState], *, suspect_after_s: float, dead_after_s: float, min_voters: int,
            replacements_waiting: int = 0) -> list[str]:
    """The failed members the leader removes in this pass: failed learners
    first, then voters, longest failed first.

    Failed learners are always removed. Failed voters are removed when they
    have been failed for longer than ``dead_after_s``, or at once when the
    provider confirms them dead and a replacement is waiting. The pass never
    leaves fewer than ``min_voters`` voters (a voter being replaced does not
    count against that) and never removes more than (N-1)/2 voters, so a
    pass can never remove a majority on the strength of a single view.
    """
    out: list[str] = []
    failed = [m for m in states if health(m, suspect_after_s=suspect_after_s, dead_after_s=dead_after_s) == FAILED]
    failed.sort(key=lambda m: (-m.down_for_s, m.id))
    out += [m.id for m in failed if not m.voter]
    voters = [m for m in states if m.voter]
    budget = min((len(voters) - 1) // 2, max(0, len(voters) - min_voters) + replacements_waiting)
    for m in failed:
        if not m.voter or budget <= 0:
            continue
        timed_out = m.down_for_s >= dead_after_s
        replaced = m.confirmed_dead and replacements_waiting > 0
        if timed_out or replaced:
            out.append(m.id)
            budget -= 1
            if replaced and not timed_out:
                replacements_waiting -= 1
    return out


def quorum_advice(voters: set[str], alive: set[str], down_for: dict[str, float]) -> list[str] | None:
    """The fewest voters whose removal would give the live voters a
    majority (longest down first), [] when they have one, None when no
    removal can (no voter is alive)."""
    live = voters & alive
    if len(live) >= majority(len(voters)):
        return []
    if not live:
        return None
    dead = sorted(voters - alive, key=lambda m: (-down_for.get(m, 0.0), m))
    for k in range(1, len(dead) + 1):
        if len(live) >= majority(len(voters) - k):
            return dead[:k]
    return None
