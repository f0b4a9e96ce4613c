"""Whole simulated runs: determinism, liveness without faults, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from quorate.sim import run_seed
from quorate.sim.__main__ import main
from quorate.sim.checkers import InvariantViolation
from quorate.sim.cluster import Cluster
from quorate.sim.runner import make_config

SHORT = {"duration_ms": 2500}


def test_same_seed_gives_the_same_trace() -> None:
    first = run_seed(11, 5, "all", trace=True, **SHORT)
    second = run_seed(11, 5, "all", trace=True, **SHORT)
    assert first.trace_digest == second.trace_digest
    assert first.trace == second.trace
    assert first.stats == second.stats
    assert run_seed(11, 5, "all", **SHORT).trace_digest == first.trace_digest  # lines or not


def test_different_seeds_give_different_traces() -> None:
    digests = {run_seed(s, 3, "all", **SHORT).trace_digest for s in range(4)}
    assert len(digests) == 4


def test_replay_is_independent_of_the_process_hash_seed() -> None:
    code = (
        "from quorate.sim import run_seed;"
        f"print(run_seed(3, 5, 'all', duration_ms={SHORT['duration_ms']}).trace_digest)"
    )
    here = run_seed(3, 5, "all", **SHORT).trace_digest
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, timeout=120)
        assert out.stdout.strip() == here


@pytest.mark.parametrize("nodes", [3, 5])
def test_liveness_without_faults(nodes: int) -> None:
    result = run_seed(1, nodes, "none", duration_ms=3000)
    assert result.ok, result.error
    stats = result.stats
    assert stats["ops_ok"] > 200
    assert stats["ops_unknown"] == 0 and stats["ops_failed"] == 0
    assert stats["leader_changes"] == 0


def test_a_leader_is_elected_quickly_without_faults() -> None:
    cluster = Cluster(5, make_config(5, "none"))
    cluster.start()
    bound = 20 * cluster.cfg.election_ticks * cluster.cfg.tick_ms
    while cluster.stable_leader() is None:
        assert cluster.loop.now < bound, "no leader within 20 election timeouts"
        cluster.loop.run_until(cluster.loop.now + cluster.cfg.tick_ms)


def test_a_broken_invariant_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: object, node: str, term: int) -> None:
        raise InvariantViolation(f"planted: {node} in term {term}")

    monkeypatch.setattr("quorate.sim.checkers.ElectionSafety.observe_leader", broken)
    result = run_seed(2, 3, "none", **SHORT)
    assert not result.ok
    assert result.error is not None and "planted" in result.error


def test_cli_sweep_and_trace(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--nodes", "3", "--seeds", "0-1", "--faults", "none",
                 "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "seeds run: 2" in out and "failures: 0" in out and "snapshot_installs" in out
    assert main(["--nodes", "3", "--seeds", "4", "--faults", "none", "--trace"]) == 0
    out = capsys.readouterr().out
    assert "leader term=" in out and "seed 4: ok" in out


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--faults", "meteor"]) == 2
    assert "unknown fault kind" in capsys.readouterr().err
    assert main(["--seeds", "1-2", "--trace"]) == 2


def test_demo_tells_the_story(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    for phrase in ("won the election", "kill -9", "new leader", "network partition",
                   "stepped down", "partition healed", "linearizable"):
        assert phrase in out
