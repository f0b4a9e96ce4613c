"""A box that only ever holds the latest value (seed 003, Nomad #6977).

The consensus loop publishes leadership changes with ``set``, which never
blocks and never queues: a consumer that falls behind sees only the newest
value, and counts how many it skipped. A stuck consumer can therefore never
stall Raft, which is what deadlocked Nomad's leader loop.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestValue(Generic[T]):
    def __init__(self, initial: T) -> None:
        self._value = initial
        self._version = 0
        self._changed = asyncio.Event()

    @property
    def value(self) -> T:
        return self._value

    @property
    def version(self) -> int:
        return self._version

    def set(self, value: T) -> None:
        """Publish ``value``; returns at once whatever the consumers do."""
        self._value = value
        self._version += 1
        self._changed.set()

    async def wait_newer(self, seen_version: int, timeout: float) -> tuple[T, int]:
        """The latest (value, version) once version > ``seen_version``.
        Raises TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while self._version <= seen_version:
                self._changed.clear()
                await self._changed.wait()
        return self._value, self._version
