"""A whole simulated cluster: nodes, network, clients and nemesis on one clock."""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from dataclasses import dataclass, field

from quorate.raft import bootstrap_state
from quorate.raft.config import RaftConfig
from quorate.raft.types import Message, Role
from quorate.testing import MemoryStorage

from .checkers import Safety, check_digests
from .client import Client, ClientSettings, ClientWorld
from .events import EventLoop
from .nemesis import Fault, Nemesis, NemesisSettings
from .network import Network, NetworkConfig
from .node import NodeEnv, NodeSettings, RunStats, SimNode, Status
from .recovery import Recovery, RecoverySettings
from .trace import Trace


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything a run depends on besides its seed."""

    nodes: int = 5
    duration_ms: int = 10000  # fault phase
    settle_ms: int = 2000  # bound for a stable leader after healing (20 election timeouts)
    liveness_ms: int = 1000  # after that, each client must finish liveness_ops
    liveness_ops: int = 3  # operations (beyond one client timeout for those in flight)
    tick_ms: int = 10
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    snapshot_every: int = 40
    network: NetworkConfig = field(default_factory=NetworkConfig)
    clients: ClientSettings = field(default_factory=ClientSettings)
    nemesis: NemesisSettings = field(default_factory=NemesisSettings)
    recovery: RecoverySettings = field(default_factory=RecoverySettings)
    keep_trace: bool = False
    # Draw flow-control, batching, snapshot-chunk limits, heartbeat period
    # and network delays per seed, so the sweep covers one-entry appends, a
    # window of one, multi-chunk snapshots, slow and fast networks.
    vary: bool = True

    def raft_config(self, rng: random.Random) -> RaftConfig:
        base = RaftConfig(election_ticks=self.election_ticks, heartbeat_ticks=self.heartbeat_ticks)
        if not self.vary:
            return base
        return dataclasses.replace(
            base,
            heartbeat_ticks=rng.choice((1, 2, 3)),
            max_inflight=rng.choice((1, 4, 64)),
            max_entries_per_append=rng.choice((1, 8, 512)),
            snapshot_chunk_bytes=rng.choice((16, 100, 1 << 20)),
            pre_vote=rng.random() < 0.8,
            check_quorum=rng.random() < 0.8,
        )

    def network_config(self, rng: random.Random) -> NetworkConfig:
        if not self.vary:
            return self.network
        return dataclasses.replace(self.network, max_delay_ms=rng.choice((5, 10, 10, 30)))


class Cluster:
    """Owns every simulated component of one run."""

    def __init__(self, seed: int, cfg: SimConfig) -> None:
        self.seed = seed
        self.cfg = cfg
        self.rng = random.Random(seed)
        self.loop = EventLoop()
        self.trace = Trace(keep_lines=cfg.keep_trace)
        self.safety = Safety()
        self.stats = RunStats()
        variation = random.Random(self.rng.getrandbits(64))
        raft_cfg = cfg.raft_config(variation)
        net_cfg = cfg.network_config(variation)
        watchdog = cfg.recovery.enabled or Fault.QUORUM_LOSS in cfg.nemesis.faults
        if watchdog:
            # Recovery presupposes what the runtime always runs with: check-
            # quorum (a leader that lost its quorum steps down, so the
            # watchdog sees no leader) and pre-vote (without it, a survivor
            # still in the old configuration, which can never win, keeps
            # campaigning at ever higher terms and resets the forced node's
            # election timer: a livelock).
            raft_cfg = dataclasses.replace(raft_cfg, check_quorum=True, pre_vote=True)
        self.network = Network(
            self.loop, random.Random(self.rng.getrandbits(64)), net_cfg, self._deliver
        )
        jitter = cfg.tick_ms // 5 if cfg.vary else 0
        settings = NodeSettings(raft_cfg, cfg.tick_ms, cfg.snapshot_every, jitter)
        self.trace.log(
            0, "sim", f"seed {seed}: {cfg.nodes} nodes, {_describe(raft_cfg)} "
            f"delay={net_cfg.min_delay_ms}-{net_cfg.max_delay_ms}ms"
        )
        self.env = NodeEnv(
            self.loop,
            random.Random(self.rng.getrandbits(64)),
            self.network.send,
            self.safety,
            self.trace,
            self.stats,
            settings,
        )
        self.nodes: dict[str, SimNode] = {}
        ids = [f"n{i}" for i in range(1, cfg.nodes + 1)]
        state = bootstrap_state(ids)
        for node_id in ids:
            self.nodes[node_id] = SimNode(node_id, MemoryStorage.from_state(state), self.env)
        self.world = ClientWorld(self.loop, self.trace, self.running, self.nodes.get)
        self.clients = [
            Client(c, self.world, random.Random(self.rng.getrandbits(64)), cfg.clients)
            for c in range(cfg.clients.clients)
        ]
        self.nemesis = Nemesis(self, random.Random(self.rng.getrandbits(64)), cfg.nemesis)
        self.recovery: Recovery | None = None
        if watchdog:
            self.recovery = Recovery(self, random.Random(self.rng.getrandbits(64)), cfg.recovery)
            self.env.on_start = self.recovery.on_start
            self.env.on_forced = self.recovery.on_forced

    # -- wiring ----------------------------------------------------------------

    def start(self) -> None:
        for node in self.sorted_nodes():
            node.start()
        for client in self.clients:
            client.start()
        self.nemesis.start()
        self.loop.call_later(1000, self._report_network)

    def _report_network(self) -> None:
        """Once a simulated second: message counts (deliveries are hashed)."""
        st = self.network.stats
        self.trace.log(
            self.loop.now, "net", f"sent={st.sent} delivered={st.delivered} dropped={st.dropped} "
            f"blocked={st.blocked} duplicated={st.duplicated}"
        )
        self.loop.call_later(1000, self._report_network)

    def _deliver(self, msg: Message) -> None:
        node = self.nodes.get(msg.to)
        if node is not None:
            node.deliver(msg)

    def add_node(self, node_id: str) -> SimNode:
        """A brand-new server with empty storage (it joins as a learner)."""
        node = SimNode(node_id, MemoryStorage(), self.env)
        self.nodes[node_id] = node
        node.start()
        self.trace.log(self.loop.now, node_id, "new node started (empty storage)")
        return node

    def retire(self, node: SimNode) -> None:
        """Stop a node for good (it left the cluster)."""
        node.crash(Status.REMOVED)
        self.trace.log(self.loop.now, node.id, "stopped for good")

    # -- views -----------------------------------------------------------------

    def sorted_nodes(self) -> list[SimNode]:
        return [self.nodes[k] for k in sorted(self.nodes)]

    def running(self) -> list[SimNode]:
        return [n for n in self.sorted_nodes() if n.alive]

    def leader(self) -> SimNode | None:
        """The running leader with the highest term (a stale one may linger)."""
        best: SimNode | None = None
        for node in self.running():
            raft = node.raft
            if raft is not None and raft.role is Role.LEADER and not node.paused:
                if best is None or raft.term > best.raft.term:  # type: ignore[union-attr]
                    best = node
        return best

    def stable_leader(self) -> SimNode | None:
        """The one leader, followed in its term by every running member, with
        no running node in a later term (which, without pre-vote, would
        still unseat it) and no membership change in flight."""
        if self.nemesis.pending is not None:
            return None
        running = [n for n in self.running() if n.raft is not None]
        leaders = [n for n in running if n.raft.role is Role.LEADER]  # type: ignore[union-attr]
        if len(leaders) != 1:
            return None
        leader = leaders[0]
        raft = leader.raft
        assert raft is not None
        members = raft.conf_state.members()
        for node in running:
            other = node.raft
            assert other is not None
            if other.term > raft.term:
                return None
            if node.id in members and (other.term != raft.term or other.leader != leader.id):
                return None
        return leader

    def final_checks(self) -> None:
        """State machine safety across nodes of one epoch that applied the
        same prefix."""
        by_epoch: dict[int, list[tuple[str, int, str]]] = defaultdict(list)
        for n in self.running():
            by_epoch[n.epoch].append((n.id, n.applied, n.kv.digest()))
        for epoch in sorted(by_epoch):
            check_digests(by_epoch[epoch])


def _describe(cfg: RaftConfig) -> str:
    return (
        f"election_ticks={cfg.election_ticks} heartbeat_ticks={cfg.heartbeat_ticks} "
        f"pre_vote={cfg.pre_vote} check_quorum={cfg.check_quorum} "
        f"max_inflight={cfg.max_inflight} max_entries_per_append={cfg.max_entries_per_append} "
        f"snapshot_chunk_bytes={cfg.snapshot_chunk_bytes}"
    )
