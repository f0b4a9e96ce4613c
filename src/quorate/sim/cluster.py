"""A whole simulated cluster: nodes, network, clients and nemesis on one clock."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from quorate.raft import bootstrap_state
from quorate.raft.config import RaftConfig
from quorate.raft.types import Message, Role
from quorate.testing import MemoryStorage

from .checkers import Safety, check_digests
from .client import Client, ClientSettings, ClientWorld
from .events import EventLoop
from .nemesis import Nemesis, NemesisSettings
from .network import Network, NetworkConfig
from .node import NodeEnv, NodeSettings, RunStats, SimNode, Status
from .trace import Trace


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything a run depends on besides its seed."""

    nodes: int = 5
    duration_ms: int = 6000  # fault phase
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
    keep_trace: bool = False

    def raft_config(self) -> RaftConfig:
        return RaftConfig(election_ticks=self.election_ticks, heartbeat_ticks=self.heartbeat_ticks)


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
        self.network = Network(
            self.loop, random.Random(self.rng.getrandbits(64)), cfg.network, self._deliver
        )
        settings = NodeSettings(cfg.raft_config(), cfg.tick_ms, cfg.snapshot_every)
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

    # -- wiring ----------------------------------------------------------------

    def start(self) -> None:
        for node in self.sorted_nodes():
            node.start()
        for client in self.clients:
            client.start()
        self.nemesis.start()

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
        """The one leader, followed by a majority of its voters in its term."""
        leaders = [n for n in self.running() if n.raft is not None and n.raft.role is Role.LEADER]
        if len(leaders) != 1 or self.nemesis.pending is not None:
            return None
        leader = leaders[0]
        raft = leader.raft
        assert raft is not None
        voters = sorted(raft.conf_state.voters)
        following = 0
        for vid in voters:
            node = self.nodes.get(vid)
            if node is not None and node.alive and node.raft is not None:
                if node.raft.term == raft.term and node.raft.leader == leader.id:
                    following += 1
        return leader if following * 2 > len(voters) else None

    def final_checks(self) -> None:
        """State machine safety across nodes that applied the same prefix."""
        check_digests((n.id, n.applied, n.kv.digest()) for n in self.running())
