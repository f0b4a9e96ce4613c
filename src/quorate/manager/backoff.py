"""Crash-loop back-off: an instance that keeps dying soon after it starts
is started again less and less often (1 s, 2 s, 4 s ... up to a ceiling),
so a broken command does not restart every cycle and flood the logs. A start
that lived longer than ``crash_window_s`` resets the delay."""

from __future__ import annotations

from dataclasses import dataclass

from .model import Action, Create, Plan, Replace, Restart


@dataclass(slots=True)
class _Slot:
    last_start: float
    delay: float


class CrashBackoff:
    def __init__(self, *, first_s: float = 1.0, max_s: float = 30.0, crash_window_s: float = 10.0) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.crash_window_s = crash_window_s
        self._slots: dict[tuple[str, str], _Slot] = {}

    def gate(self, plan: Plan, now: float) -> Plan:
        """The plan without the starts that must wait; each held back start
        becomes a note saying until when."""
        kept: list[Action] = []
        notes = list(plan.notes)
        for action in plan.actions:
            if not isinstance(action, (Create, Restart, Replace)):
                kept.append(action)
                continue
            key = (action.group, action.slot)
            s = self._slots.get(key)
            if s is not None and now - s.last_start < self.crash_window_s:
                wait = s.last_start + s.delay - now
                if wait > 0:
                    notes.append(f"slot {action.slot}: its instance died {now - s.last_start:.1f}s after "
                                 f"starting; next start in {wait:.1f}s (crash-loop back-off)")
                    continue
                s.delay = min(s.delay * 2, self.max_s)
            elif s is not None:
                s.delay = self.first_s
            else:
                s = self._slots[key] = _Slot(now, self.first_s)
            s.last_start = now
            kept.append(action)
        return Plan(tuple(kept), tuple(notes))
