"""Every provider passes the same conformance suite: the process provider
the manager runs with and the fake its tests use."""

from __future__ import annotations

import itertools
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from quorate.providers import Provider, ProcessProvider
from quorate.providers.process import read_record, reap_children
from quorate.testing.fake_provider import FakeProvider
from quorate.testing.provider_conformance import CHECKS, ProviderFactory, pids_running


def _sweep(marker: str) -> list[int]:
    """Kill and reap what a test left running; returns the pids it found."""
    left = pids_running(marker)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while (pids_running(marker) or set(left) & reap_children()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def process_factory(tmp_path: Path, marker: str) -> ProviderFactory:
    counter = itertools.count()

    def make() -> Provider:
        return ProcessProvider(tmp_path / f"state{next(counter)}", stop_timeout_s=5.0)

    def kill(provider: Provider, instance_id: str) -> None:
        assert isinstance(provider, ProcessProvider)
        os.kill(read_record(provider.record_path(instance_id)).pid, signal.SIGKILL)

    return ProviderFactory(make=make, kill=kill, argv=(sys.executable, "-c", "import time; time.sleep(600)", marker))


def fake_factory(_: Path, marker: str) -> ProviderFactory:
    def kill(provider: Provider, instance_id: str) -> None:
        assert isinstance(provider, FakeProvider)
        provider.kill(instance_id)

    return ProviderFactory(make=FakeProvider, kill=kill, argv=("sleep", marker))


IMPLEMENTATIONS: dict[str, Callable[[Path, str], ProviderFactory]] = {
    "process": process_factory,
    "fake": fake_factory,
}


@pytest.fixture
def marker() -> Iterator[str]:
    """Tags the test's processes; none may be left running afterwards."""
    tag = f"quorate-test-{uuid.uuid4().hex}"
    yield tag
    assert _sweep(tag) == [], "the test left processes running"


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("impl", sorted(IMPLEMENTATIONS))
def test_provider_conformance(impl: str, check: str, tmp_path: Path, marker: str) -> None:
    CHECKS[check](IMPLEMENTATIONS[impl](tmp_path, marker))
