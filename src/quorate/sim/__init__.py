"""Deterministic whole-cluster simulation of quorate.

Many nodes in one process on a virtual clock, a network that delays, drops,
duplicates, reorders and partitions, crashes with durable state, pauses and
membership changes, safety checkers after every event and a
linearizability check of the clients' history. A failing seed replays
exactly: ``python -m quorate.sim --nodes 5 --seeds 17 --faults all --trace``.
"""

from .checkers import InvariantViolation
from .cluster import Cluster, SimConfig
from .runner import LivenessViolation, SimResult, make_config, run_seed

__all__ = [
    "Cluster",
    "InvariantViolation",
    "LivenessViolation",
    "SimConfig",
    "SimResult",
    "make_config",
    "run_seed",
]
