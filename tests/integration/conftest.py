"""Fixtures for real-process tests: clusters are torn down (kill -9) after
each test, and every node's log is printed when the test failed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import ProcCluster
from .localup import LocalUp


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., ProcCluster]]:
    made: list[ProcCluster] = []

    def make(n: int = 3, **kw: Any) -> ProcCluster:
        c = ProcCluster(tmp_path / f"cluster{len(made)}", n, **kw)
        made.append(c)
        return c

    yield make
    failed = getattr(request.node, "rep_call", None)
    for c in made:
        c.stop_all()
        if failed is not None and failed.failed:
            print(c.logs())


@pytest.fixture
def local_up(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., LocalUp]]:
    """Clusters made with the real `quorate up`; `quorate down` after the
    test (which also stops every instance), logs printed on failure."""
    made: list[LocalUp] = []

    def make(managers: int = 3) -> LocalUp:
        lu = LocalUp(tmp_path / f"qc{len(made)}", managers)
        made.append(lu)
        return lu

    yield make
    failed = getattr(request.node, "rep_call", None)
    for lu in made:
        if failed is not None and failed.failed:
            print(lu.logs())
        if lu.dir.exists():
            lu.down()
