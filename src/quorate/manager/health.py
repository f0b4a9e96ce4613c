"""Health checks of running instances (process, http, tcp).

A ``process`` check is the provider's own answer (running or not). ``http``
and ``tcp`` checks probe the instance; an instance is unhealthy only after
``failure_threshold`` failures in a row, and never during its
``start_period_s`` (a process that is still starting is not broken). Each
probe has its own timeout, so a hung instance cannot stall a cycle.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from quorate.http_session import new_session


@dataclass(slots=True)
class _Record:
    failures: int = 0
    last_check: float = float("-inf")  # monotonic; never checked: due at once
    last_ok: bool | None = None
    last_error: str = ""


class HealthTracker:
    """Consecutive failures per instance, kept across cycles (leader only;
    a new leader starts counting afresh, which only delays a replacement)."""

    def __init__(self) -> None:
        self._records: dict[str, _Record] = {}

    def healthy(self, instance_id: str) -> bool | None:
        """The last verdict: True, False, or None (not probed yet)."""
        rec = self._records.get(instance_id)
        return None if rec is None else rec.last_ok

    def unhealthy(self, instance_id: str, threshold: int) -> bool:
        rec = self._records.get(instance_id)
        return rec is not None and rec.failures >= threshold

    def last_error(self, instance_id: str) -> str:
        rec = self._records.get(instance_id)
        return rec.last_error if rec else ""

    def forget_except(self, live: set[str]) -> None:
        for iid in list(self._records):
            if iid not in live:
                del self._records[iid]

    async def probe_due(self, targets: list[tuple[str, dict[str, Any], float, float, float]]) -> None:
        """Probe each ``(instance_id, target, interval_s, timeout_s,
        started_at)`` whose interval has passed and whose start period is
        over; all at once, each bounded by its timeout."""
        now = time.monotonic()
        due = []
        for iid, target, interval, timeout, start_period_end in targets:
            if target["type"] == "process" or time.time() < start_period_end:
                continue
            rec = self._records.setdefault(iid, _Record())
            if now - rec.last_check >= interval:
                rec.last_check = now
                due.append((rec, target, timeout))
        if not due:
            return
        async with new_session() as session:
            results = await asyncio.gather(*(_probe(session, t, timeout) for _, t, timeout in due))
        for (rec, _, _), error in zip(due, results):
            rec.last_ok = error is None
            rec.failures = 0 if error is None else rec.failures + 1
            rec.last_error = error or ""


async def _probe(session: aiohttp.ClientSession, target: dict[str, Any], timeout: float) -> str | None:
    """None when healthy, else what went wrong."""
    try:
        async with asyncio.timeout(timeout):
            if target["type"] == "http":
                async with session.get(target["url"]) as resp:
                    await resp.read()
                    if 200 <= resp.status < 400:
                        return None
                    return f"HTTP {resp.status} from {target['url']}"
            _, writer = await asyncio.open_connection(target["host"], int(target["port"]))
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
            return None
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
