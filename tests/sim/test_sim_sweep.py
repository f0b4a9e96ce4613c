"""The seed sweep: hundreds of seeded runs with every fault kind, on every core.

A failure prints the exact replay command. The sweep must also have
exercised something: leader changes and snapshot installs across the sweep.
"""

from __future__ import annotations

import pytest

from quorate.sim.nemesis import ALL_FAULTS
from quorate.sim.runner import replay_command, summarize, timed_sweep

SEEDS = 300


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [3, 5])
def test_sweep_with_all_faults(nodes: int) -> None:
    faults = ALL_FAULTS  # quorum_loss has its own sweep (test_sim_quorum_loss.py)
    results, elapsed = timed_sweep(list(range(SEEDS)), nodes, faults)
    print()
    print(summarize(results, elapsed, label=f"nodes={nodes} faults=all  "))
    failures = [r for r in results if not r.ok]
    for r in failures:
        print(f"seed {r.seed}: {r.error}\n  replay: {replay_command(r.seed, nodes, faults)}")
    assert not failures, f"{len(failures)} seed(s) failed; first: seed {failures[0].seed}"
    total = {k: sum(r.stats[k] for r in results) for k in results[0].stats}
    assert total["leader_changes"] >= SEEDS, "the sweep barely changed leaders"
    assert total["snapshot_installs"] >= SEEDS, "the sweep barely installed snapshots"
    assert total["crashes"] > 0 and total["conf_changes"] > 0 and total["ops_ok"] > 0
