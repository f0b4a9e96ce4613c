"""Raft §7: log compaction and InstallSnapshot (sent in chunks)."""

from __future__ import annotations

import math
import random

import pytest

from quorate.raft import (
    Entry,
    HardState,
    Message,
    MessageType,
    PersistentState,
    RaftConfig,
    RaftNode,
    Snapshot,
    SnapshotChunk,
    SnapshotMeta,
    bootstrap_state,
)
from quorate.testing.cluster import Cluster, three

MT = MessageType
IDS3 = ["n1", "n2", "n3"]



def lagging_n3(chunk: int, proposals: int = 20) -> tuple[Cluster, int]:
    """n3 misses ``proposals`` entries which n1 and n2 then compact away."""
    c = three(snapshot_chunk_bytes=chunk)
    c.isolate("n3")
    for k in range(proposals):
        c.propose("n1", f"value-{k:02d}")
    c.deliver()
    at = c.compact("n1")
    c.compact("n2")
    assert c.node("n1").first_index == at + 1 > c.node("n3").last_index + 1
    return c, at


def snapshot_msgs(c: Cluster, to: str = "n3") -> list[Message]:
    return c.sent(lambda m: m.type is MT.SNAPSHOT and m.to == to)


def test_compaction_drops_the_log_and_restart_restores_from_the_snapshot() -> None:
    """Raft §7: each server snapshots its committed state and discards the
    log up to the snapshot; after a restart it starts from the snapshot."""
    c = three()
    for k in range(5):
        c.propose("n1", f"v{k}")
    c.deliver()
    at = c.compact("n2")
    n2 = c.node("n2")
    assert n2.first_index == at + 1 and n2.term_at(at - 1) is None
    assert n2.snapshot_meta.index == at and n2.snapshot_meta.conf.voters == set(IDS3)
    c.crash("n2")
    c.restart("n2")
    assert c.applied("n2") == [f"v{k}".encode() for k in range(5)]
    c.propose("n1", "later")
    c.deliver()
    assert c.applied("n2")[-1] == b"later"


def test_lagging_follower_gets_the_snapshot_in_chunks() -> None:
    """Raft §7: a follower missing compacted entries gets InstallSnapshot,
    split in chunks of snapshot_chunk_bytes, then the entries after it."""
    c, at = lagging_n3(chunk=64)
    c.heal()
    c.run(3)
    chunks = snapshot_msgs(c)
    size = len(c.members["n1"].store.snapshot.data)  # type: ignore[union-attr]
    assert len(chunks) >= math.ceil(size / 64) >= 3
    assert all(len(m.snapshot.data) <= 64 for m in chunks)  # type: ignore[union-attr]
    assert [m.snapshot.offset for m in chunks[:3]] == [0, 64, 128]  # type: ignore[union-attr]
    assert c.node("n3").snapshot_meta.index == at
    assert c.applied("n3") == c.applied("n1") and len(c.applied("n3")) == 20
    c.propose("n1", "after")
    c.deliver()
    assert c.applied("n3")[-1] == b"after"
    c.check_invariants()


def test_lost_chunk_is_resent() -> None:
    """Raft §7: InstallSnapshot chunks may be lost like any RPC; the leader
    resends (here on the next heartbeat response) and the install completes."""
    c, at = lagging_n3(chunk=64)
    c.heal()
    lost: list[Message] = []

    def lose_second_chunk_once(m: Message) -> bool:
        if m.type is MT.SNAPSHOT and m.snapshot is not None and m.snapshot.offset == 64 and not lost:
            lost.append(m)
            return True
        return False

    c.drop(lose_second_chunk_once)
    c.run(1)
    assert lost and c.node("n3").snapshot_meta.index == 0
    c.run(3)
    offsets = [m.snapshot.offset for m in snapshot_msgs(c)]  # type: ignore[union-attr]
    assert offsets.count(64) >= 2
    assert c.node("n3").snapshot_meta.index == at
    assert c.applied("n3") == c.applied("n1")


def test_restarted_follower_restarts_the_install() -> None:
    """Raft §7: a follower that crashed mid-install has lost the partial
    chunks; the leader starts over from offset 0."""
    c, at = lagging_n3(chunk=64)
    c.heal()
    c.drop(lambda m: m.type is MT.SNAPSHOT and m.snapshot is not None and m.snapshot.offset == 128)
    c.run(1)
    c.crash("n3")
    c.restart("n3")
    c.heal()
    c.run(5)
    assert c.node("n3").snapshot_meta.index == at
    assert c.applied("n3") == c.applied("n1")


def test_follower_that_has_the_entries_just_advances_commit() -> None:
    """Raft §7: if the follower's log has the entry the snapshot ends with,
    it keeps the entries after it; here it only learns the commit index."""
    ents = bootstrap_state(IDS3).entries + tuple(Entry(2, i, data=b"x%d" % i) for i in range(4, 9))
    node = RaftNode("n2", RaftConfig(), random.Random(0),
                    PersistentState(HardState(term=2, commit=3), None, ents), applied=3)
    meta = SnapshotMeta(6, 2, node.conf_state)
    node.step(Message(MT.SNAPSHOT, "n1", "n2", 2,
                      snapshot=SnapshotChunk(meta, 0, b"image", done=True)))
    rd = node.ready()
    assert rd.snapshot is None
    assert (node.commit_index, node.first_index, node.last_index) == (6, 1, 8)
    assert [e.index for e in rd.committed_entries] == [4, 5, 6]
    assert [(m.type, m.index, m.reject) for m in rd.messages] == [(MT.APPEND_RESP, 6, False)]
    node.advance(rd)


def test_snapshot_replaces_a_conflicting_log() -> None:
    """Raft §7: if the snapshot's last entry is not in the follower's log,
    the follower discards its entire log and installs the snapshot."""
    ents = bootstrap_state(IDS3).entries + (Entry(2, 4, data=b"old"),)
    node = RaftNode("n2", RaftConfig(), random.Random(0),
                    PersistentState(HardState(term=2, commit=3), None, ents), applied=3)
    snap = Snapshot(SnapshotMeta(6, 3, node.conf_state), b"image")
    node.step(Message(MT.SNAPSHOT, "n1", "n2", 3,
                      snapshot=SnapshotChunk(snap.meta, 0, snap.data, done=True)))
    rd = node.ready()
    assert rd.snapshot == snap and rd.committed_entries == ()
    assert (node.first_index, node.last_index, node.commit_index) == (7, 6, 6)
    node.advance(rd)
    assert node.applied_index == 6 and not node.has_ready()


def test_heartbeats_during_a_transfer_do_not_multiply_the_chunk_stream() -> None:
    """Raft §7: resending a lost chunk on a heartbeat must not duplicate the
    transfer: the snapshot crosses the network about once, plus at most one
    extra chunk per heartbeat."""
    c, at = lagging_n3(chunk=64)
    c.heal()
    heartbeats = 4
    for _ in range(heartbeats):  # the transfer is slower than the heartbeat interval
        c.tick(1, ["n1"])
        c.flush(["n1"])
        for _ in range(4):
            if c.queue:
                c.step_one()
    c.deliver()
    size = len(c.members["n1"].store.snapshot.data)  # type: ignore[union-attr]
    needed = math.ceil(size / 64)
    assert c.node("n3").snapshot_meta.index == at
    assert len(snapshot_msgs(c)) <= needed + heartbeats


def test_follower_gets_new_entries_right_after_the_install() -> None:
    """Raft §7: once the follower has the snapshot the leader resumes normal
    replication; the next proposal reaches it without waiting for a timer."""
    c, _ = lagging_n3(chunk=64)
    c.heal()
    c.tick(1, ["n1"])
    c.deliver()
    assert c.node("n3").snapshot_meta.index > 0
    c.propose("n1", "after")
    c.deliver()
    assert c.applied("n3")[-1] == b"after"
