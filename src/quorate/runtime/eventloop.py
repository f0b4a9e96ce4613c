"""Which asyncio event loop runs an agent.

uvloop (libuv under asyncio's interface) does the same work with less CPU per
socket read and write, which is most of what an agent does besides
consensus. It is an optional extra, never required: ``auto`` takes it when
it is importable and falls back to the standard loop otherwise.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


class EventLoopUnavailable(Exception):
    """``uvloop`` was asked for and is not installed."""


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``choice`` (None: asyncio's own default)."""
    if choice not in EVENT_LOOPS:
        raise ValueError(f"event loop must be one of {', '.join(EVENT_LOOPS)}, not {choice!r}")
    if choice == "asyncio":
        return None
    if importlib.util.find_spec("uvloop") is None:
        if choice == "uvloop":
            raise EventLoopUnavailable("uvloop is not installed: pip install 'quorate[uvloop]'")
        return None
    import uvloop

    return uvloop.new_event_loop  # type: ignore[no-any-return]


def run_event_loop(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """``asyncio.run`` on the chosen loop."""
    try:
        factory = loop_factory(choice)
    except EventLoopUnavailable:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
