"""``pytest tests/scenarios --rewrite`` rewrites the golden output in place."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--rewrite", action="store_true", default=False,
                     help="rewrite the expected output of tests/scenarios/*.txt")
