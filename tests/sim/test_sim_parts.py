"""The simulator's parts on their own: clock, network, trace, crash writes,
argument parsing."""

from __future__ import annotations

import random

import pytest

from quorate.raft.ready import Ready
from quorate.raft.types import (
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)
from quorate.sim.events import EventLoop
from quorate.sim.nemesis import ALL_FAULTS, Fault, format_faults, parse_faults
from quorate.sim.network import Network, NetworkConfig
from quorate.sim.node import ready_writes
from quorate.sim.runner import parse_seeds
from quorate.sim.trace import Trace
from quorate.testing import MemoryStorage


def test_event_loop_orders_by_time_then_scheduling_order() -> None:
    loop = EventLoop()
    seen: list[str] = []
    loop.call_at(5, seen.append, "b")
    loop.call_at(3, seen.append, "a")
    loop.call_at(5, seen.append, "c")
    loop.run_until(4)
    assert seen == ["a"] and loop.now == 4
    loop.run_until(10)
    assert seen == ["a", "b", "c"] and loop.now == 10
    with pytest.raises(ValueError, match="already"):
        loop.call_at(9, seen.append, "late")


def _net(cfg: NetworkConfig, seed: int = 1) -> tuple[EventLoop, Network, list[tuple[int, Message]]]:
    loop = EventLoop()
    got: list[tuple[int, Message]] = []
    net = Network(loop, random.Random(seed), cfg, lambda m: got.append((loop.now, m)))
    return loop, net, got


def msg(frm: str, to: str, index: int = 0) -> Message:
    return Message(MessageType.HEARTBEAT, frm, to, 1, index=index)


def test_network_delays_within_bounds_and_reorders() -> None:
    loop, net, got = _net(NetworkConfig(min_delay_ms=1, max_delay_ms=10, duplicate_rate=0.0))
    for i in range(200):
        net.send(msg("n1", "n2", i))
    loop.run_until(100)
    assert len(got) == 200
    assert all(1 <= t <= 10 for t, _ in got)
    order = [m.index for _, m in got]
    assert order != sorted(order)  # random delays reorder


def test_network_drops_and_duplicates() -> None:
    loop, net, got = _net(NetworkConfig(drop_rate=0.5, duplicate_rate=0.5))
    for i in range(400):
        net.send(msg("n1", "n2", i))
    loop.run_until(100)
    assert 100 < net.stats.dropped < 300
    assert net.stats.duplicated > 50
    assert len(got) == 400 - net.stats.dropped + net.stats.duplicated


def test_partitions_split_one_way_and_bridge() -> None:
    _, net, _ = _net(NetworkConfig())
    net.split([["n1", "n2"], ["n3"]])
    assert net.can_reach("n1", "n2") and not net.can_reach("n1", "n3")
    assert not net.can_reach("n3", "n2")
    net.heal()
    net.cut_one_way(["n1"], ["n2"])
    assert not net.can_reach("n1", "n2") and net.can_reach("n2", "n1")
    net.heal()
    net.bridge(["n1"], ["n3"])  # n2 is the bridge
    assert not net.can_reach("n1", "n3") and not net.can_reach("n3", "n1")
    assert all(net.can_reach(a, b) for a, b in [("n1", "n2"), ("n2", "n3"), ("n3", "n2")])
    net.heal()
    assert not net.partitioned


def test_blocked_messages_never_arrive() -> None:
    loop, net, got = _net(NetworkConfig())
    net.split([["n1"], ["n2"]])
    net.send(msg("n1", "n2"))
    loop.run_until(50)
    assert got == [] and net.stats.blocked == 1


def test_trace_hash_covers_lines_and_deliveries() -> None:
    a, b = Trace(), Trace(keep_lines=False)
    for t in (a, b):
        t.log(5, "n1", "leader term=2")
        t.delivery(6, "n1", "n2", 5)
    assert a.digest() == b.digest()
    assert a.text() == "       5 n1     leader term=2\n" and b.text() == ""
    b.delivery(7, "n2", "n1", 6)
    assert a.digest() != b.digest()


def test_a_crash_during_a_write_keeps_a_prefix() -> None:
    snap = Snapshot(SnapshotMeta(3, 1, ConfState(frozenset({"n1"}))), b"img")
    rd = Ready(None, HardState(2, "n1", 4), (Entry(2, 4), Entry(2, 5)), snap, (), (), ())
    expected = [
        (0, None, 0),  # (snapshot index, last index, term in hard state)
        (3, 3, 0),
        (3, 4, 0),
        (3, 5, 0),
        (3, 5, 2),
    ]
    for kept, (snap_index, last, term) in enumerate(expected):
        storage = MemoryStorage()
        for write in ready_writes(storage, rd)[:kept]:
            write()
        assert storage.snapshot_index == snap_index
        assert storage.last_index == (last or 0)
        assert storage.hard_state.term == term


def test_parse_faults_and_seeds() -> None:
    assert parse_faults("none") == frozenset()
    assert parse_faults("all") == ALL_FAULTS == frozenset(Fault) - {Fault.QUORUM_LOSS}
    assert parse_faults("crash, partition") == {Fault.CRASH, Fault.PARTITION}
    with pytest.raises(ValueError, match="unknown fault kind.*bogus.*known"):
        parse_faults("crash,bogus")
    assert format_faults(ALL_FAULTS) == "all"
    assert format_faults({Fault.DROP, Fault.CRASH}) == "crash,drop"
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    with pytest.raises(ValueError):
        parse_seeds("5-1")
