"""Prometheus metrics of one node, in a registry of its own (no global state,
so several nodes can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.is_leader = Gauge("quorate_is_leader", "1 when this node is the leader", registry=r)
        self.term = Gauge("quorate_term", "Current Raft term", registry=r)
        self.commit_index = Gauge("quorate_commit_index", "Raft commit index", registry=r)
        self.applied_index = Gauge("quorate_applied_index", "Last applied index", registry=r)
        self.proposals = Counter("quorate_proposals", "Entries proposed by this node as leader", registry=r)
        self.proposals_failed = Counter("quorate_proposals_failed", "Proposals that timed out or were lost",
                                        ["reason"], registry=r)
        self.leader_changes = Counter("quorate_leader_changes", "Leader changes seen by this node", registry=r)
        self.commit_latency = Histogram("quorate_commit_latency_seconds", "Proposal to apply, on the leader",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.fsync_latency = Histogram("quorate_fsync_latency_seconds", "Storage save (write + fsync) time",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.snapshots = Counter("quorate_snapshots", "Snapshots taken by this node", registry=r)
        self.snapshots_installed = Counter("quorate_snapshots_installed", "Snapshots installed from the leader",
                                           registry=r)

        self.leadership_flaps = Counter(
            "quorate_leadership_flaps", "Times this node lost leadership soon after gaining it (seed 003)",
            registry=r)
        self.controllers_running = Gauge("quorate_controllers_running",
                                         "1 while this node's group controllers run (leader only)", registry=r)
        self.reconcile_cycles = Counter("quorate_reconcile_cycles", "Reconcile cycles run by this node",
                                        registry=r)
        self.reconcile_actions = Counter("quorate_reconcile_actions", "Reconcile actions executed",
                                         ["kind", "outcome"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
