"""What a node applies committed entries to: the KV store, the member
directory (addresses learnt from membership changes) and the watch history.

The member directory is replicated state like the KV: it travels inside the
snapshot, so a node restored from a snapshot still knows every address.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import msgpack

from quorate.kv import (
    Applied,
    ApplyResult,
    Delete,
    EventHistory,
    EventType,
    KVStore,
    Put,
    WatchEvent,
    decode_command,
)
from quorate.kv.commands import CommandError
from quorate.raft import ConfChange, ConfChangeType, Entry, EntryKind, NodeId, Snapshot

SNAPSHOT_FORMAT = 1
# Each member registers its current addresses under this reserved prefix
# (a bootstrap only knows peer addresses; the API address comes from here).
MEMBER_PREFIX = "_quorate/members/"
DEPARTED_KEEP = 100


class StateMachineError(Exception):
    """A snapshot that cannot be installed."""


@dataclass(frozen=True, slots=True)
class MemberInfo:
    peer_addr: str
    api_addr: str

    def encode(self) -> str:
        return json.dumps({"peer_addr": self.peer_addr, "api_addr": self.api_addr}, sort_keys=True)

    @classmethod
    def decode(cls, context: str) -> MemberInfo | None:
        try:
            raw = json.loads(context)
            return cls(str(raw["peer_addr"]), str(raw["api_addr"]))
        except (ValueError, KeyError, TypeError):
            return None


class StateMachine:
    def __init__(self, history_capacity: int = 10_000) -> None:
        self.kv = KVStore()
        self.members: dict[NodeId, MemberInfo] = {}
        self.history = EventHistory(history_capacity)
        self.applied_index = 0
        # Bumped by every forced configuration (quorum-loss recovery): a
        # member of an older epoch is refused by the peers (transport).
        self.epoch = 0
        # Members that left or were removed: id -> the log index of that
        # change (the newest DEPARTED_KEEP of them), so `quorate members`
        # can still say where a member went.
        self.departed: dict[NodeId, tuple[int, str]] = {}  # id -> (index, role it had)
        self.roles: dict[NodeId, str] = {}  # current members: voter | learner

    def apply(self, entry: Entry) -> ApplyResult | None:
        """Apply one committed entry; returns the KV result for NORMAL ones."""
        self.applied_index = entry.index
        if entry.kind is EntryKind.CONF_CHANGE:
            self._apply_conf_change(ConfChange.decode(entry.data), entry.index)
            return None
        if not entry.data:
            return None  # a leader's no-op
        result = self.kv.apply(entry.index, entry.data)
        if isinstance(result, Applied):
            self._record_event(entry.data, result.revision)
        return result

    def _apply_conf_change(self, cc: ConfChange, index: int) -> None:
        if cc.type is ConfChangeType.FORCE:
            voters, self.epoch = cc.forced()
            for gone in sorted(set(self.roles) - voters):
                self._depart(gone, index)
            self.members = {m: i for m, i in self.members.items() if m in voters}
            self.roles = {m: "voter" for m in voters}
            return
        if cc.type is ConfChangeType.REMOVE:
            self.members.pop(cc.node_id, None)
            self._depart(cc.node_id, index)
            return
        self.departed.pop(cc.node_id, None)
        if cc.type is ConfChangeType.ADD_VOTER or self.roles.get(cc.node_id) != "voter":
            self.roles[cc.node_id] = "voter" if cc.type is ConfChangeType.ADD_VOTER else "learner"
        info = MemberInfo.decode(cc.context)
        if info is not None:
            self.members[cc.node_id] = info

    def _depart(self, node: NodeId, index: int) -> None:
        self.departed[node] = (index, self.roles.pop(node, "voter"))
        if len(self.departed) > DEPARTED_KEEP:
            oldest = min(self.departed, key=lambda m: (self.departed[m][0], m))
            del self.departed[oldest]

    def _record_event(self, data: bytes, revision: int) -> None:
        try:
            cmd = decode_command(data)
        except CommandError:
            return
        if isinstance(cmd, Put):
            if cmd.key.startswith(MEMBER_PREFIX):
                info = MemberInfo.decode(cmd.value)
                if info is not None:
                    self.members[cmd.key[len(MEMBER_PREFIX):]] = info
            kv = self.kv.get(cmd.key)
            create = kv.create_revision if kv else revision
            self.history.append(WatchEvent(EventType.PUT, cmd.key, revision, cmd.value, create))
        elif isinstance(cmd, Delete):
            self.history.append(WatchEvent(EventType.DELETE, cmd.key, revision))

    # -- snapshots ------------------------------------------------------------

    def snapshot(self) -> bytes:
        members = {m: [i.peer_addr, i.api_addr] for m, i in sorted(self.members.items())}
        return msgpack.packb({"format": SNAPSHOT_FORMAT, "kv": self.kv.snapshot(), "members": members,
                              "epoch": self.epoch,
                              "departed": {m: list(v) for m, v in sorted(self.departed.items())}})

    def restore(self, snap: Snapshot) -> None:
        """Replace the whole state with ``snap`` (installed from the leader
        or read back at start)."""
        try:
            raw = msgpack.unpackb(snap.data)
            if not isinstance(raw, dict) or raw.get("format") != SNAPSHOT_FORMAT:
                raise ValueError("unknown snapshot format")
            kv = KVStore.restore(raw["kv"])
            members = {str(m): MemberInfo(str(a[0]), str(a[1])) for m, a in raw["members"].items()}
            epoch = int(raw.get("epoch", 0))
            departed = {str(m): (int(v[0]), str(v[1])) for m, v in raw.get("departed", {}).items()}
        except Exception as exc:  # any decoding failure is one error for the caller
            raise StateMachineError(f"snapshot at index {snap.meta.index} is unreadable: {exc}") from exc
        self.kv = kv
        self.members = members
        self.epoch = epoch
        self.departed = departed
        conf = snap.meta.conf
        self.roles = {**{m: "learner" for m in conf.learners}, **{m: "voter" for m in conf.voters}}
        self.history.reset(kv.revision)
        self.applied_index = snap.meta.index
