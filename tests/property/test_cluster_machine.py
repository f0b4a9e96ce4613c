"""A rule-based state machine over the in-process cluster: Hypothesis picks
ticks, deliveries, losses, duplicates, reorderings, partitions, crashes,
proposals, transfers and compactions; after every step the Raft safety
properties are checked (Raft §5.4, Figure 3):

- election safety: at most one leader per term, over the whole history;
- log matching: same index and term means identical prefixes;
- leader completeness / state machine safety: a committed entry never
  changes, and applied sequences are prefixes of one another;

- ReadIndex is not stale: a read index covers everything committed
  before the read was asked for;

with single-server membership changes (nodes join empty, get promoted,
get removed, the leader included) mixed in.

The harness itself also checks the Ready contract on every Ready. At the
end (teardown) the faults are removed and the cluster must elect a leader
and converge (a liveness check).
"""

from __future__ import annotations

import sys

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from quorate.raft import ConfChange, ConfChangeType, RaftConfig, RaftError, Role
from quorate.testing.cluster import Cluster

IDS = ["n1", "n2", "n3", "n4", "n5"]
node_ids = st.sampled_from(IDS)  # rules naming a node outside a 3-node cluster do nothing


class ClusterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.c: Cluster = Cluster(IDS[:3])
        self.proposed = 0
        # ReadIndex requests: ctx -> highest index committed when it was asked.
        self.reads: dict[bytes, int] = {}

    @initialize(size=st.sampled_from([3, 5]), seed=st.integers(0, 2**16), pre_vote=st.booleans(),
                check_quorum=st.booleans(), inflight=st.sampled_from([1, 2, 64]),
                chunk=st.sampled_from([16, 1 << 20]))
    def boot(self, size: int, seed: int, pre_vote: bool, check_quorum: bool, inflight: int, chunk: int) -> None:
        cfg = RaftConfig(election_ticks=4, heartbeat_ticks=1, pre_vote=pre_vote, check_quorum=check_quorum,
                         max_inflight=inflight, max_entries_per_append=3, snapshot_chunk_bytes=chunk)
        self.c = Cluster(IDS[:size], cfg, seed=seed, max_steps=5000)
        self.c.elect("n1")  # start from a working cluster: faults are what matter

    # -- time and the network ------------------------------------------------------

    @rule(n=st.integers(1, 6))
    def tick(self, n: int) -> None:
        self.c.tick(n)

    @rule(n=st.integers(1, 16))
    def run(self, n: int) -> None:
        self.c.run(n)

    @rule()
    def deliver(self) -> None:
        self.c.deliver()

    @rule(action=st.sampled_from(["reorder", "lose", "duplicate"]), data=st.data())
    def network(self, action: str, data: st.DataObject) -> None:
        """Deliver a few queued messages in any order, lose one, or deliver
        again one the network already carried (a late copy)."""
        c = self.c
        c.flush()
        if action == "duplicate":
            seen = [m for kind, m in c.trace[-200:] if kind == "deliver"]
            if seen:
                c.queue.append(data.draw(st.sampled_from(seen)))
            return
        for _ in range(data.draw(st.integers(1, 6)) if action == "reorder" else 1):
            if not c.queue:
                return
            pos = data.draw(st.integers(0, len(c.queue) - 1))
            if action == "reorder":
                c.step_one(pos)
            else:
                c.discard(pos)

    @rule(action=st.sampled_from(["isolate", "cut", "heal"]), a=node_ids, b=node_ids)
    def partition(self, action: str, a: str, b: str) -> None:
        if action == "isolate":
            self.c.isolate(a)
        elif action == "cut" and a != b:
            self.c.cut(a, b)
        elif action == "heal":
            self.c.heal()

    # -- nodes -------------------------------------------------------------------

    @rule(node=node_ids)
    def crash_or_restart(self, node: str) -> None:
        """Crash a running node (never the last one), restart a crashed one."""
        c = self.c
        if node in c.live() and len(c.live()) > 1:
            c.crash(node)
        elif node in c.members and node not in c.live():
            c.restart(node)

    @rule(node=node_ids)
    def campaign(self, node: str) -> None:
        if node in self.c.live():
            self.c.node(node).campaign()

    @rule(node=node_ids, lost=node_ids)
    def hint_unreachable(self, node: str, lost: str) -> None:
        """The transport's hint, right or wrong: safety must not depend on it."""
        if node in self.c.live():
            self.c.node(node).leader_unreachable(lost)

    @rule(node=st.one_of(st.none(), node_ids), k=st.integers(1, 4), then_deliver=st.booleans())
    def propose(self, node: str | None, k: int, then_deliver: bool) -> None:
        """Propose to ``node``, or (None) to whoever leads now."""
        node = node or self.c.leader()
        if node is None or node not in self.c.live():
            return
        for _ in range(k):
            self.proposed += 1
            try:
                self.c.propose(node, f"v{self.proposed}")
            except RaftError:
                break
        if then_deliver:
            self.c.deliver()

    @rule(node=node_ids, to=node_ids)
    def transfer(self, node: str, to: str) -> None:
        if node in self.c.live():
            try:
                self.c.node(node).transfer_leadership(to)
            except RaftError:
                pass

    @rule(node=node_ids)
    def compact(self, node: str) -> None:
        if node in self.c.live():
            self.c.compact(node)

    @rule(node=node_ids)
    def read(self, node: str) -> None:
        if node not in self.c.live():
            return
        ctx = f"r{len(self.reads)}".encode()
        try:
            self.c.node(node).read_index(ctx)
        except RaftError:
            return
        self.reads[ctx] = self.c.highest_committed()

    @rule(node=node_ids, kind=st.sampled_from(list(ConfChangeType)))
    def change_membership(self, node: str, kind: ConfChangeType) -> None:
        """Add a learner or voter (a new empty node joins), promote, remove."""
        lead = self.c.leader()
        if lead is None:
            return
        if node not in self.c.members:
            if kind is ConfChangeType.REMOVE:
                return
            self.c.add_node(node)
        try:
            self.c.node(lead).propose_conf_change(ConfChange(kind, node))
        except RaftError:
            pass

    # -- properties ----------------------------------------------------------------

    @invariant()
    def safety(self) -> None:
        self.c.check_invariants()

    @invariant()
    def reads_are_not_stale(self) -> None:
        """Thesis §6.4: a read index covers every entry committed before the
        read was asked for (otherwise the read could miss a write)."""
        for i in self.c.ids:
            for rs in self.c.read_states(i):
                floor = self.reads.get(rs.request_ctx)
                assert floor is not None, f"{i} got a read state nobody asked for"
                assert rs.index >= floor, f"{i} read at {rs.index} but {floor} was already committed"

    def teardown(self) -> None:
        """Liveness: without faults, the cluster elects a leader and every
        member (removed nodes aside) applies the same entries."""
        if sys.exc_info()[0] is not None:
            return  # a step already failed (teardown runs in a finally): keep that error
        c = self.c
        c.heal()
        for i in c.ids:
            if i not in c.live():
                c.restart(i)
        for _ in range(300):
            c.run(1)
            if self._converged():
                break
        lead = c.leader()
        assert lead is not None, "no leader after healing"
        assert c.node(lead).role is Role.LEADER
        for i in c.node(lead).conf_state.members():
            assert c.applied(i) == c.applied(lead), f"{i} did not converge on {lead}"
        c.check_invariants()

    def _converged(self) -> bool:
        """One leader; every current member applied what it committed."""
        lead = self.c.leader()
        if lead is None:
            return False
        leader = self.c.node(lead)
        return all(self.c.applied(i) == self.c.applied(lead)
                   and self.c.node(i).commit_index == leader.commit_index
                   for i in leader.conf_state.members())


TestCluster = ClusterMachine.TestCase
TestCluster.settings = settings(max_examples=300, stateful_step_count=50, deadline=None)
