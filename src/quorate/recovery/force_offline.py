"""``quorate recover --data-dir``: force a new configuration on a stopped
node's data directory, for when no agent can run at all (or the operator
prefers to do it with the cluster down).

The node's log is loaded as the agent would load it. The same core
operation as the online path (``RaftNode.force_new_configuration``) then
makes this node the only voter in the next epoch, and the new entry and
hard state are written back through the storage (fsync included). Started
again, the node elects itself and the managers group provisions the rest.
The storage lock refuses while an agent holds the directory.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from quorate.raft import Entry, EntryKind, RaftConfig, RaftNode
from quorate.raft.types import ConfChange, ConfChangeType
from quorate.runtime.state_machine import StateMachine
from quorate.storage import FileStorage


@dataclass(frozen=True, slots=True)
class OfflinePlan:
    node: str
    voters_before: list[str]
    epoch: int          # the epoch the forced configuration starts
    last_index: int
    last_term: int
    commit: int


def force_offline(data_dir: Path, node_id: str, *, dry_run: bool = False) -> OfflinePlan:
    """Make ``node_id`` the only voter of its data dir's log, in a new
    epoch (or only say what that would do, with ``dry_run``)."""
    store = Path(data_dir) / "raft"
    if not (store / "wal").is_dir():
        raise ValueError(f"there is no quorate store in {data_dir} (no {store / 'wal'}); nothing was changed")
    storage = FileStorage(store)
    try:
        state = storage.load()
        sm = StateMachine()
        applied = 0
        if state.snapshot is not None:
            sm.restore(state.snapshot)
            applied = state.snapshot.meta.index
        node = RaftNode(node_id, RaftConfig(), random.Random(0), state, applied=applied)
        if node_id not in node.conf.voters:
            raise ValueError(f"{node_id} is not a voter of the configuration in {data_dir} "
                             f"(voters: {sorted(node.conf.voters)}); give the --id this directory belongs to")
        epoch = _latest_epoch(sm.epoch, state.entries) + 1
        plan = OfflinePlan(node_id, sorted(node.conf.voters), epoch, node.last_index, node.log.last_term,
                           node.commit_index)
        if not dry_run:
            node.force_new_configuration(frozenset({node_id}), epoch)
            rd = node.ready()
            storage.save(rd.hard_state, rd.entries, None)
        return plan
    finally:
        storage.close()


def _latest_epoch(epoch: int, entries: Iterable[Entry]) -> int:
    """The highest epoch a FORCE entry of the log names (committed or not)."""
    for e in entries:
        if e.kind is EntryKind.CONF_CHANGE:
            cc = ConfChange.decode(e.data)
            if cc.type is ConfChangeType.FORCE:
                epoch = max(epoch, cc.forced()[1])
    return epoch
