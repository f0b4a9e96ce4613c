"""Fixtures over :mod:`fakeapi`: fake API nodes, a dead endpoint, a fake sleep."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from fakeapi import FakeCluster, FakeSleep


@pytest.fixture
def fake() -> Iterator[FakeCluster]:
    cluster = FakeCluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def dead_endpoint() -> str:
    """An address nothing listens on (bound, then closed: refused at once)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()
