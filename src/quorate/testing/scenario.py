"""A tiny line-oriented language for scripted Raft scenarios (golden files).

In the manner of etcd-io/raft's datadriven tests: a file is a sequence of
blocks, each a command line, a ``----`` line, then the expected output up to
the next blank line. Lines starting with ``#`` between blocks are comments.
``run_script`` replays the commands on a ``Cluster`` and returns the file
text with the actual output in place, so a test compares it with the file
and a rewrite flag writes it back.

Commands (node lists are comma-separated: ``n1,n2``):

    bootstrap n1 n2 n3 [election=10 heartbeat=1 prevote=true checkquorum=true
                        inflight=64 maxents=512 chunk=1048576 seed=0]
    campaign N | tick [NODES] K | run K [NODES] | stabilize | step | pending
    propose N DATA | propose-many N COUNT PREFIX | transfer N TARGET | read N CTX
    add-learner N NEW | add-voter N NEW | remove N OLD
    isolate N | cut A B | drop FROM TO [TYPE] | heal | crash N | restart N
    compact N [INDEX] | status | log N | applied N | reads N | conf | check
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from quorate.raft import ConfChange, ConfChangeType, MessageType, RaftConfig, RaftError

from .cluster import Cluster, describe, describe_entry, describe_node

SEPARATOR = "----"


@dataclass(slots=True)
class Block:
    """A command with its expected output, or a verbatim line (comment/blank)."""

    command: str | None
    expected: list[str]
    verbatim: str = ""


def parse(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.startswith("#"):
            blocks.append(Block(None, [], line))
            continue
        expected: list[str] = []
        if i < len(lines) and lines[i] == SEPARATOR:
            i += 1
            while i < len(lines) and lines[i].strip():
                expected.append(lines[i])
                i += 1
        blocks.append(Block(line, expected))
    return blocks


def render(blocks: list[Block]) -> str:
    out: list[str] = []
    for k, b in enumerate(blocks):
        if b.command is None:
            out.append(b.verbatim)
            continue
        out += [b.command, SEPARATOR, *b.expected]
        nxt = blocks[k + 1] if k + 1 < len(blocks) else None
        if nxt is not None and not (nxt.command is None and not nxt.verbatim.strip()):
            out.append("")
    return "\n".join(out) + "\n"


def run_script(text: str) -> str:
    """Replay ``text``; return it with every block's output recomputed."""
    blocks = parse(text)
    interp = Interpreter()
    for b in blocks:
        if b.command is not None:
            b.expected = interp.execute(b.command) or ["ok"]
    return render(blocks)


def _nodes(arg: str) -> list[str]:
    return [x for x in arg.split(",") if x]


class Interpreter:
    def __init__(self) -> None:
        self._c: Cluster | None = None
        self._handlers: dict[str, Callable[[list[str]], list[str]]] = {
            name.removeprefix("cmd_").replace("_", "-"): getattr(self, name)
            for name in dir(self) if name.startswith("cmd_")
        }

    @property
    def c(self) -> Cluster:
        if self._c is None:
            raise ValueError("bootstrap first")
        return self._c

    def execute(self, line: str) -> list[str]:
        name, *args = line.split()
        handler = self._handlers.get(name)
        if handler is None:
            raise ValueError(f"unknown command {name!r}; known: {sorted(self._handlers)}")
        try:
            return handler(args)
        except RaftError as e:
            return [f"error: {type(e).__name__}: {e}"]

    # -- setup and time ------------------------------------------------------------

    def cmd_bootstrap(self, args: list[str]) -> list[str]:
        ids = [a for a in args if "=" not in a]
        opts = dict(a.split("=", 1) for a in args if "=" in a)
        flag = {"true": True, "false": False}
        keys = {"election": "election_ticks", "heartbeat": "heartbeat_ticks", "inflight": "max_inflight",
                "maxents": "max_entries_per_append", "chunk": "snapshot_chunk_bytes"}
        cfg: dict[str, object] = {keys[k]: int(v) for k, v in opts.items() if k in keys}
        cfg["pre_vote"] = flag[opts.get("prevote", "true")]
        cfg["check_quorum"] = flag[opts.get("checkquorum", "true")]
        self._c = Cluster(ids, RaftConfig(**cfg), seed=int(opts.get("seed", "0")))  # type: ignore[arg-type]
        return self.cmd_status([])

    def cmd_campaign(self, args: list[str]) -> list[str]:
        self.c.node(args[0]).campaign()
        return []

    def cmd_tick(self, args: list[str]) -> list[str]:
        nodes = _nodes(args[0]) if len(args) == 2 else None
        self.c.tick(int(args[-1]), nodes)
        return []

    def cmd_run(self, args: list[str]) -> list[str]:
        """Tick and deliver ``K`` times; print who changed role, term or leader."""
        c = self.c
        nodes = _nodes(args[1]) if len(args) > 1 else None
        out: list[str] = []
        seen = self._roles()
        for t in range(1, int(args[0]) + 1):
            c.run(1, nodes)
            now = self._roles()
            for i, state in now.items():
                if seen.get(i) != state:
                    out.append(f"tick {t}: {i} {state}")
            seen = now
        return out

    def _roles(self) -> dict[str, str]:
        out = {}
        for i in self.c.ids:
            n = self.c.members[i].node
            out[i] = "down" if n is None else f"{n.role.value} term={n.term} lead={n.leader or '-'}"
        return out

    def cmd_stabilize(self, args: list[str]) -> list[str]:
        mark = len(self.c.trace)
        self.c.deliver()
        return [("DROP " if kind == "drop" else "") + describe(m) for kind, m in self.c.trace[mark:]]

    def cmd_step(self, args: list[str]) -> list[str]:
        self.c.flush()
        if not self.c.queue:
            return ["nothing to deliver"]
        msg, ok = self.c.step_one()
        return [("" if ok else "DROP ") + describe(msg)]

    def cmd_pending(self, args: list[str]) -> list[str]:
        self.c.flush()
        return [describe(m) for m in self.c.pending()]

    # -- requests ------------------------------------------------------------------

    def cmd_propose(self, args: list[str]) -> list[str]:
        return [f"index {self.c.propose(args[0], ' '.join(args[1:]))}"]

    def cmd_propose_many(self, args: list[str]) -> list[str]:
        first = last = 0
        for k in range(int(args[1])):
            last = self.c.propose(args[0], f"{args[2]}{k}")
            first = first or last
        return [f"indices {first}..{last}"]

    def cmd_transfer(self, args: list[str]) -> list[str]:
        self.c.node(args[0]).transfer_leadership(args[1])
        return []

    def cmd_read(self, args: list[str]) -> list[str]:
        self.c.node(args[0]).read_index(args[1].encode())
        return []

    def _conf_change(self, kind: ConfChangeType, args: list[str]) -> list[str]:
        via, target = args
        if target not in self.c.members:
            self.c.add_node(target)
        return [f"index {self.c.node(via).propose_conf_change(ConfChange(kind, target))}"]

    def cmd_add_learner(self, args: list[str]) -> list[str]:
        return self._conf_change(ConfChangeType.ADD_LEARNER, args)

    def cmd_add_voter(self, args: list[str]) -> list[str]:
        return self._conf_change(ConfChangeType.ADD_VOTER, args)

    def cmd_remove(self, args: list[str]) -> list[str]:
        return self._conf_change(ConfChangeType.REMOVE, args)

    def cmd_compact(self, args: list[str]) -> list[str]:
        at = self.c.compact(args[0], int(args[1]) if len(args) > 1 else None)
        return [f"snapshot at {at}"]

    # -- faults ----------------------------------------------------------------------

    def cmd_isolate(self, args: list[str]) -> list[str]:
        self.c.isolate(args[0])
        return []

    def cmd_cut(self, args: list[str]) -> list[str]:
        self.c.cut(args[0], args[1])
        return []

    def cmd_drop(self, args: list[str]) -> list[str]:
        frm, to = args[0], args[1]
        mtype = MessageType[args[2]] if len(args) > 2 else None
        self.c.drop(lambda m: (frm in ("*", m.frm)) and (to in ("*", m.to))
                    and (mtype is None or m.type is mtype))
        return []

    def cmd_heal(self, args: list[str]) -> list[str]:
        self.c.heal()
        return []

    def cmd_crash(self, args: list[str]) -> list[str]:
        self.c.crash(args[0])
        return []

    def cmd_restart(self, args: list[str]) -> list[str]:
        self.c.restart(args[0])
        return [describe_node(self.c, args[0])]

    # -- inspection ------------------------------------------------------------------

    def cmd_status(self, args: list[str]) -> list[str]:
        return [describe_node(self.c, i) for i in self.c.ids]

    def cmd_log(self, args: list[str]) -> list[str]:
        n = self.c.node(args[0])
        meta = n.snapshot_meta
        head = [f"snapshot {meta.index}/{meta.term}"] if meta.index else []
        return head + [describe_entry(e) for e in self.c.log_of(args[0])]

    def cmd_applied(self, args: list[str]) -> list[str]:
        items = [d.decode(errors="replace") for d in self.c.applied(args[0])]
        return [" ".join(items) if items else "(nothing)"]

    def cmd_reads(self, args: list[str]) -> list[str]:
        states = self.c.read_states(args[0])
        return [f"{rs.request_ctx.decode()} at {rs.index}" for rs in states] or ["(none)"]

    def cmd_conf(self, args: list[str]) -> list[str]:
        out = []
        for i in self.c.live():
            conf = self.c.node(i).conf_state
            learners = ",".join(sorted(conf.learners)) or "-"
            out.append(f"{i}: voters={','.join(sorted(conf.voters)) or '-'} learners={learners}")
        return out

    def cmd_check(self, args: list[str]) -> list[str]:
        self.c.check_invariants()
        return []
