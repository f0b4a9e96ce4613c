"""Real network faults: one network namespace per agent.

Loopback cannot cut one link and keep another, and SIGSTOP is not a
partition. Here every agent runs in a namespace of its own, attached by a
veth pair to a bridge in the root namespace; the bridge carries an address
too, so the test process (and its clients) reach every node directly.

Faults are nftables rules on the *input* hook of the receiving namespace:
a dropped packet is silently lost, the way a cut cable or a dead switch port
loses it (a drop on output would fail the sender's send() at once, which no
real network does). Client traffic from the bridge address is never
dropped: the faults are between the peers.

What is built (every name starts with ``qrt<tag>``, so a leftover from a
crashed run is recognised and removed by ``sweep_leftovers``):

- a bridge ``qrt<tag>br`` with ``10.213.<k>.254/24``;
- per node a namespace ``qrt<tag>-<id>`` whose ``eth0`` has
  ``10.213.<k>.<i>/24``, its other end ``qrt<tag>h<i>`` on the bridge.

Loss is nftables' ``numgen random``. The kernel here has no ``sch_netem``,
so delay with jitter is made by a relay instead (``delay_relay.py``): a NAT
rule in the sending namespace sends its outgoing peer connections through a
relay process in that namespace, which holds every chunk back ``delay ±
jitter``.
"""

from __future__ import annotations

import itertools
import os
import random
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .harness import Agent, ProcCluster

PREFIX = "qrt"
TABLE = "quorate_fault"
DELAY_TABLE = "quorate_delay"
RELAY_PORT = 7401
RELAY_MARK = 0x51
RELAY = Path(__file__).with_name("delay_relay.py")
PEER_PORT = 7400
API_PORT = 8400
CMD_TIMEOUT = 20.0


class NetLabUnavailable(Exception):
    """Namespaces, veth or nftables cannot be used here (the reason says why)."""


def _run(*cmd: str, ns: str | None = None, stdin: str | None = None, check: bool = True) -> str:
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    res = subprocess.run(full, input=stdin, capture_output=True, text=True, timeout=CMD_TIMEOUT)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(full)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def unavailable_reason() -> str | None:
    """Why the namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (Debian: iproute2 / nftables)"
    probe = f"{PREFIX}probe{os.getpid() % 100000}"
    try:
        _run("ip", "netns", "add", probe)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace: {exc}"
    try:
        _run("nft", "-f", "-", ns=probe, stdin=f"table inet {TABLE} {{ }}\n")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"nftables does not work in a namespace: {exc}"
    finally:
        _run("ip", "netns", "del", probe, check=False)
    return None


def sweep_leftovers() -> None:
    """Remove namespaces and bridges a crashed run of this harness left."""
    for line in _run("ip", "netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(PREFIX):
            _run("ip", "netns", "del", name, check=False)
    for line in _run("ip", "-o", "link", "show", "type", "bridge", check=False).splitlines():
        parts = line.split(":")
        if len(parts) > 1 and parts[1].strip().startswith(PREFIX):
            _run("ip", "link", "del", parts[1].strip(), check=False)


@dataclass
class Host:
    node_id: str
    index: int
    ns: str
    ip: str
    veth: str


@dataclass
class _Rules:
    """What a namespace's input hook drops: every packet from some sources,
    a share of the packets from others."""

    drop_from: set[str] = field(default_factory=set)
    loss_from: dict[str, int] = field(default_factory=dict)  # source ip -> percent

    def script(self) -> str:
        lines = [f"table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{",
                 "  chain input {", "    type filter hook input priority 0; policy accept;"]
        lines += [f"    ip saddr {ip} drop" for ip in sorted(self.drop_from)]
        lines += [f"    ip saddr {ip} numgen random mod 100 < {pct} drop"
                  for ip, pct in sorted(self.loss_from.items()) if ip not in self.drop_from]
        lines += ["  }", "}"]
        return "\n".join(lines) + "\n"


class NetLab:
    """The namespaces, the bridge and the faults between the hosts."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(2)
        self.bridge = f"{PREFIX}{self.tag}br"
        used = _run("ip", "-4", "-o", "addr", "show", check=False)
        free = [k for k in range(1, 255) if f"10.213.{k}." not in used]
        if not free:
            raise NetLabUnavailable("no free 10.213.k.0/24 subnet")
        self.subnet = f"10.213.{random.choice(free)}"
        self.gateway = f"{self.subnet}.254"
        self.hosts: dict[str, Host] = {}
        self._rules: dict[str, _Rules] = {}
        self._counter = itertools.count(1)
        self._relays: dict[str, subprocess.Popen[bytes]] = {}
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")

    def add_host(self, node_id: str) -> Host:
        i = next(self._counter)
        host = Host(node_id, i, f"{PREFIX}{self.tag}-{node_id}", f"{self.subnet}.{i}", f"{PREFIX}{self.tag}h{i}")
        _run("ip", "netns", "add", host.ns)
        self.hosts[node_id] = host
        _run("ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.ns)
        _run("ip", "link", "set", host.veth, "master", self.bridge)
        _run("ip", "link", "set", host.veth, "up")
        _run("ip", "addr", "add", f"{host.ip}/24", "dev", "eth0", ns=host.ns)
        _run("ip", "link", "set", "eth0", "up", ns=host.ns)
        _run("ip", "link", "set", "lo", "up", ns=host.ns)
        self._rules[node_id] = _Rules()
        self._apply(node_id)
        return host

    def close(self) -> None:
        """Delete everything this lab made; safe to call twice."""
        self._stop_relays()
        for host in self.hosts.values():
            _run("ip", "netns", "del", host.ns, check=False)
        _run("ip", "link", "del", self.bridge, check=False)
        self.hosts.clear()

    # -- faults ---------------------------------------------------------------------

    def _apply(self, node_id: str) -> None:
        _run("nft", "-f", "-", ns=self.hosts[node_id].ns, stdin=self._rules[node_id].script())

    def drop(self, src: str, dst: str) -> None:
        """Lose every packet from ``src`` to ``dst`` (one way)."""
        rules = self._rules[dst]
        rules.drop_from.add(self.hosts[src].ip)
        self._apply(dst)

    def cut(self, a: str, b: str) -> None:
        """Lose every packet between ``a`` and ``b``, both ways."""
        self.drop(a, b)
        self.drop(b, a)

    def partition(self, *groups: list[str]) -> None:
        """Symmetric partition: hosts in different groups cannot talk; hosts
        named in no group keep every link (a bridge between the sides)."""
        for g1, g2 in itertools.combinations(groups, 2):
            for a in g1:
                for b in g2:
                    self.cut(a, b)

    def isolate(self, node_id: str) -> None:
        self.partition([node_id], [n for n in self.hosts if n != node_id])

    def loss(self, percent: int, among: list[str] | None = None) -> None:
        """Lose ``percent``% of the packets on every peer link among the hosts."""
        if not 0 <= percent <= 100:
            raise ValueError(f"loss must be within 0..100 percent, not {percent}")
        names = among or list(self.hosts)
        for dst in names:
            rules = self._rules[dst]
            for src in names:
                if src != dst:
                    rules.loss_from[self.hosts[src].ip] = percent
            self._apply(dst)

    def delay(self, ms: float, jitter_ms: float, among: list[str] | None = None) -> None:
        """Hold every byte a host sends to a peer back ``ms ± jitter_ms``
        (both directions of each peer connection the host opens go through
        its relay). Open peer connections are aborted (``ss -K``), so the
        transport reconnects through the relays."""
        if ms < 0 or not 0 <= jitter_ms <= ms:
            raise ValueError(f"need 0 <= jitter <= delay, not delay {ms} jitter {jitter_ms}")
        for n in among or list(self.hosts):
            host = self.hosts[n]
            if n in self._relays:
                continue
            proc = subprocess.Popen(
                ["ip", "netns", "exec", host.ns, sys.executable, str(RELAY), str(RELAY_PORT), str(ms),
                 str(jitter_ms), hex(RELAY_MARK), str(host.index)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            self._relays[n] = proc
            assert proc.stdout is not None
            line = proc.stdout.readline()  # the relay prints once it listens (or dies, closing stdout)
            if b"relay ready" not in line:
                raise RuntimeError(f"the delay relay in {host.ns} did not start: {line!r}")
            _run("nft", "-f", "-", ns=host.ns, stdin=(
                f"table ip {DELAY_TABLE} {{\n  chain out {{\n"
                "    type nat hook output priority -100; policy accept;\n"
                f"    meta mark != {RELAY_MARK:#x} tcp dport {PEER_PORT} redirect to :{RELAY_PORT}\n  }}\n}}\n"))
            # Abort the peer connections already open, so the transport's
            # reconnects go through the relay.
            _run("ss", "-K", "-t", "(", "dport", "=", f":{PEER_PORT}", "or", "sport", "=", f":{PEER_PORT}", ")",
                 ns=host.ns, check=False)

    def _stop_relays(self) -> None:
        for n, proc in self._relays.items():
            _run("nft", "delete", "table", "ip", DELAY_TABLE, ns=self.hosts[n].ns, check=False)
            proc.kill()
            proc.wait(timeout=CMD_TIMEOUT)
            if proc.stdout is not None:
                proc.stdout.close()
        self._relays.clear()

    def heal(self) -> None:
        """Every link whole again (relayed connections end with the relays)."""
        self._stop_relays()
        for n in self.hosts:
            self._rules[n] = _Rules()
            self._apply(n)

    def describe(self) -> dict[str, Any]:
        """The rules in force, per host, as nft lists them (for failure output)."""
        return {n: _run("nft", "list", "table", "inet", TABLE, ns=h.ns, check=False) for n, h in self.hosts.items()}


@dataclass
class NetAgent(Agent):
    ns: str = ""  # the namespace the agent runs in


class NetCluster(ProcCluster):
    """A ProcCluster whose agents each run in their own namespace of ``lab``
    (all on the same ports, each on its own address)."""

    def __init__(self, root: Path, lab: NetLab, n: int, *, extra: list[str] | None = None,
                 election_ms: int = 600, heartbeat_ms: int = 60) -> None:
        self.root = root
        self.lab = lab
        self.cluster_id = f"netns-{secrets.token_hex(4)}"
        self.extra = ["--cluster-id", self.cluster_id, "--heartbeat-ms", str(heartbeat_ms),
                      "--election-timeout-ms", str(election_ms), *(extra or [])]
        self.agents: dict[str, Agent] = {}
        for i in range(n):
            node_id = f"n{i + 1}"
            host = lab.add_host(node_id)
            self.agents[node_id] = NetAgent(node_id, PEER_PORT, API_PORT, root, list(self.extra),
                                            host=host.ip, ns=host.ns)
        self.bootstrap = ",".join(f"{a.id}={a.peer_addr}" for a in self.agents.values())

    def command(self, a: Agent, *, join: str | None = None, bootstrap: bool = True) -> list[str]:
        assert isinstance(a, NetAgent)
        # ip execs the agent: the pid stays the agent's.
        return ["ip", "netns", "exec", a.ns, *super().command(a, join=join, bootstrap=bootstrap)]

    def add_agent(self, node_id: str) -> Agent:
        raise NotImplementedError("a NetCluster's hosts are made with the lab")
