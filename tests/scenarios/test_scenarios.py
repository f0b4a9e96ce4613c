"""Replays every scripted scenario (``*.txt`` next to this file) and diffs
its output against the golden text recorded in the file itself. The
language is described in ``quorate.testing.scenario``."""

from __future__ import annotations

import difflib
import pathlib

import pytest

from quorate.testing.scenario import run_script

HERE = pathlib.Path(__file__).parent
SCRIPTS = sorted(HERE.glob("*.txt"))


def test_there_are_scenarios() -> None:
    assert len(SCRIPTS) >= 8


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_scenario(path: pathlib.Path, request: pytest.FixtureRequest) -> None:
    expected = path.read_text()
    actual = run_script(expected)
    if actual == expected:
        return
    if request.config.getoption("--rewrite", default=False):
        path.write_text(actual)
        return
    diff = "".join(difflib.unified_diff(
        expected.splitlines(keepends=True), actual.splitlines(keepends=True),
        fromfile=f"{path.name} (golden)", tofile=f"{path.name} (actual)"))
    pytest.fail(f"scenario output changed (rerun with --rewrite if intended):\n{diff}", pytrace=False)


def test_run_twice_gives_the_same_output() -> None:
    """Determinism: the same script (and seeds) replays to the same text."""
    text = SCRIPTS[0].read_text()
    assert run_script(text) == run_script(text)
