"""Crash-loop back-off: starts of a slot whose instances keep dying young
are spaced 1, 2, 4 ... s apart up to a ceiling; a long-lived start resets it."""

from __future__ import annotations

from quorate.manager.backoff import CrashBackoff
from quorate.manager.model import Create, Destroy, Plan, Replace


def _replace(slot: str = "0") -> Plan:
    return Plan((Replace("web", slot, f"web-{slot}-1", None, 2, "terminated"),))


def test_crash_loop_starts_are_spaced_out_and_reset_after_a_long_life() -> None:
    b = CrashBackoff(first_s=1.0, max_s=4.0, crash_window_s=10.0)
    assert b.gate(_replace(), 0.0).actions  # first start: at once
    held = b.gate(_replace(), 0.5)
    assert not held.actions and "crash-loop back-off" in held.notes[0]
    starts = [t for t in (x / 10 for x in range(1, 200)) if b.gate(_replace(), t).actions]
    gaps = [round(b - a, 1) for a, b in zip([0.0] + starts, starts)]
    assert gaps[:4] == [1.0, 2.0, 4.0, 4.0]  # doubling, capped at max_s
    last = starts[-1]
    assert b.gate(_replace(), last + 30.0).actions  # lived past the crash window: at once again
    assert not b.gate(_replace(), last + 30.5).actions  # and the delay starts from first_s
    assert b.gate(_replace(), last + 31.0).actions


def test_other_slots_and_other_actions_are_not_held() -> None:
    b = CrashBackoff()
    b.gate(_replace("0"), 0.0)
    mixed = Plan((Destroy("web", "x", "orphan"), Create("web", "1", 1, "empty"),
                  Replace("web", "0", "web-0-2", None, 3, "terminated")))
    kept = b.gate(mixed, 0.1).actions
    assert [type(a).__name__ for a in kept] == ["Destroy", "Create"]
