"""The agent's event loop choice (--event-loop)."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from quorate.runtime import eventloop
from quorate.runtime.eventloop import EventLoopUnavailable, run_event_loop


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_asyncio_is_the_standard_loop() -> None:
    assert run_event_loop(_loop_module(), "asyncio").startswith("asyncio")


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed")
def test_auto_and_uvloop_take_uvloop_when_installed() -> None:
    assert run_event_loop(_loop_module(), "auto").startswith("uvloop")
    assert run_event_loop(_loop_module(), "uvloop").startswith("uvloop")


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(eventloop.importlib.util, "find_spec",
                        lambda name, *a: None if name == "uvloop" else real(name, *a))
    assert run_event_loop(_loop_module(), "auto").startswith("asyncio")
    coro = _loop_module()
    with pytest.raises(EventLoopUnavailable, match="not installed"):
        run_event_loop(coro, "uvloop")
    assert coro.cr_frame is None  # closed, not left to warn "never awaited"


def test_unknown_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="auto, uvloop, asyncio"):
        eventloop.loop_factory("trio")
