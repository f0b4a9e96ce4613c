"""Quorum-loss recovery (S2): kill -9 two of three managers, then time
(a) until a write through the survivor is acknowledged and (b) until the
cluster is back to three voters.

Three systems are measured:

- **quorate, data kept:** the survivor's watchdog restarts the dead in
  place.
- **quorate, data lost:** the killed managers' data dirs are deleted. The
  survivor forces a new configuration, and the managers group provisions
  two new members.
- **etcd, data lost:** the documented disaster-recovery procedure,
  scripted and run the moment the kill happens (an operator would be
  slower). It restarts the survivor with ``--force-new-cluster``, then for
  each lost member runs ``member add`` and starts a fresh one with
  ``--initial-cluster-state existing``.

The quorate figures include its grace period (five election timeouts, 5 s
by default), during which an ordinary election is given its chance. The
etcd script skips any such wait.

Trials reuse one cluster. Each trial starts from three healthy voters.
"""

from __future__ import annotations

import os
import shutil
import statistics
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.procs import Registry, free_ports, wait_for
from bench.systems import http_json
from bench.systems.etcd import _b64

CAP_S = 120.0


# -- quorate ------------------------------------------------------------------------------


def _quorate(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "quorate", *args], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"quorate {' '.join(args)} failed: {r.stderr[-2000:]}")
    return r.stdout


def _free_base() -> int:
    """A base port whose manager and worker ports (base + 0..2, +100.., +200..) are free."""
    for _ in range(100):
        base = free_ports(1)[0]
        if base + 210 < 65000 and _ports_free([base + o + i for o in (0, 100, 200) for i in range(3)]):
            return base
    raise RuntimeError("no free port range")


def _ports_free(ports: list[int]) -> bool:
    import socket
    for p in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def quorate_trials(work: Path, trials: int, keep_data: bool, log: Any) -> tuple[list[float], list[float]]:
    directory = work / ("quorum-kept" if keep_data else "quorum-lost")
    base = _free_base()
    _quorate("up", "--dir", str(directory), "--base-port", str(base))
    urls = [f"http://127.0.0.1:{base + 100 + i}" for i in range(3)]
    first: list[float] = []
    full: list[float] = []

    def get(url: str, path: str) -> Any:
        status, body = http_json("GET", url + path, timeout=2.0)
        return body if status == 200 else None

    def any_get(path: str) -> Any:
        for u in urls:
            try:
                body = get(u, path)
            except OSError:
                continue
            if body is not None:
                return body
        return None

    def healthy() -> list[dict[str, Any]] | None:
        members = any_get("/v1/members") or []
        insts = any_get("/v1/instances?group=managers") or []
        running = [i for i in insts if i["state"] == "running" and i.get("tracked")]
        voters = [m for m in members if m["role"] == "voter" and m["health"] != "departed"]
        return running if len(voters) == 3 and len(running) == 3 else None

    try:
        for t in range(trials):
            running = wait_for("three healthy managers", healthy, CAP_S, 0.1)
            time.sleep(0.5)  # the last catch-up settles
            status = any_get("/v1/status") or {}
            victims = [i for i in running if i["member_id"] == status.get("leader")]
            victims += [i for i in running if i not in victims][: 2 - len(victims)]
            survivor = next(i for i in running if i not in victims)
            url = urls[int(survivor["slot"][1:]) - 1]
            t0 = time.perf_counter()
            for v in victims:
                os.kill(int(v["pid"]), signal.SIGKILL)
            if not keep_data:
                for v in victims:
                    shutil.rmtree(directory / "nodes" / v["member_id"] / "data", ignore_errors=True)

            def wrote() -> bool:
                s, _ = http_json("PUT", f"{url}/v1/kv/bench/quorum/{t}", {"value": "v"}, timeout=2.0)
                return s == 200

            wait_for("a write through the survivor", wrote, CAP_S, 0.01)
            first.append((time.perf_counter() - t0) * 1000)
            wait_for("three voters again", healthy, CAP_S, 0.05)
            full.append((time.perf_counter() - t0) * 1000)
            log(f"quorate quorum loss ({'data kept' if keep_data else 'data lost'}) trial {t + 1}/{trials}: "
                f"write {first[-1]:.0f} ms, full {full[-1]:.0f} ms")
    finally:
        try:
            _quorate("down", "--dir", str(directory))
        except (RuntimeError, subprocess.SubprocessError) as exc:
            log(f"quorate down failed: {exc}")
    return first, full


# -- etcd ---------------------------------------------------------------------------------


class _Etcd:
    """etcd members by name, so the recovery can add fresh ones."""

    def __init__(self, root: Path, binary: str) -> None:
        self.root = root
        self.binary = binary
        self.peer: dict[str, int] = {}
        self.api: dict[str, int] = {}
        self.procs: dict[str, Any] = {}
        self.token = f"bench-q-{os.getpid()}"

    def command(self, name: str, initial: dict[str, int], state: str, force: bool = False) -> list[str]:
        cluster = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in initial.items())
        cmd = [self.binary, "--name", name, "--data-dir", str(self.root / name),
               "--listen-peer-urls", f"http://127.0.0.1:{self.peer[name]}",
               "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer[name]}",
               "--listen-client-urls", f"http://127.0.0.1:{self.api[name]}",
               "--advertise-client-urls", f"http://127.0.0.1:{self.api[name]}",
               "--initial-cluster", cluster, "--initial-cluster-state", state,
               "--initial-cluster-token", self.token, "--log-level", "warn", "--logger", "zap"]
        return cmd + (["--force-new-cluster"] if force else [])

    def start(self, name: str, initial: dict[str, int], state: str, force: bool = False) -> None:
        self.procs[name] = Registry.spawn(self.command(name, initial, state, force),
                                          self.root / f"{name}.log")

    def kill(self, name: str) -> None:
        p = self.procs.pop(name, None)
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(timeout=30)

    def write(self, name: str, key: str) -> bool:
        try:
            s, _ = http_json("POST", f"http://127.0.0.1:{self.api[name]}/v3/kv/put",
                             {"key": _b64(key), "value": _b64("v")}, timeout=2.0)
        except OSError:
            return False
        return s == 200

    def members(self, name: str) -> list[dict[str, Any]]:
        s, body = http_json("POST", f"http://127.0.0.1:{self.api[name]}/v3/cluster/member/list", {}, timeout=2.0)
        return list(body.get("members", [])) if s == 200 else []

    def add_member(self, via: str, name: str) -> None:
        """``member add``, retried while etcd answers "unhealthy cluster"
        (its strict reconfiguration check wants every member connected for
        a while first), as an operator following the procedure would."""
        last: list[Any] = []

        def added() -> bool:
            s, body = http_json("POST", f"http://127.0.0.1:{self.api[via]}/v3/cluster/member/add",
                                {"peerURLs": [f"http://127.0.0.1:{self.peer[name]}"]}, timeout=10.0)
            last[:] = [s, body]
            return s == 200

        try:
            wait_for(f"etcd: member add {name}", added, CAP_S, 0.1)
        except TimeoutError as exc:
            raise RuntimeError(f"etcd member add {name} failed: {last}") from exc

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name)


def etcd_trials(work: Path, binary: str, trials: int, log: Any) -> tuple[list[float], list[float]]:
    root = work / "etcd-quorum"
    root.mkdir(parents=True, exist_ok=True)
    e = _Etcd(root, binary)
    names = ["a0", "a1", "a2"]
    ports = free_ports(6)
    for i, n in enumerate(names):
        e.peer[n], e.api[n] = ports[i], ports[3 + i]
    initial = {n: e.peer[n] for n in names}
    first: list[float] = []
    full: list[float] = []
    try:
        for n in names:
            e.start(n, initial, "new")
        wait_for("etcd: a first write", lambda: e.write(names[0], "bench/ready"), CAP_S, 0.05)
        gen = 0
        for t in range(trials):
            survivor, dead = names[0], names[1:]
            wait_for("etcd: three members", lambda: len(e.members(survivor)) == 3, CAP_S, 0.05)
            wait_for("etcd: a write", lambda: e.write(survivor, f"bench/pre/{t}"), CAP_S, 0.05)
            t0 = time.perf_counter()
            for n in dead:
                e.kill(n)
                shutil.rmtree(root / n, ignore_errors=True)
            # The documented procedure: restart the survivor alone with --force-new-cluster ...
            e.kill(survivor)
            e.start(survivor, {survivor: e.peer[survivor]}, "existing", force=True)
            wait_for("etcd: a write after --force-new-cluster", lambda: e.write(survivor, f"bench/q/{t}"),
                     CAP_S, 0.01)
            first.append((time.perf_counter() - t0) * 1000)
            # ... then add the lost members back one at a time, each from an empty data dir.
            members = {survivor: e.peer[survivor]}
            fresh = []
            for old in dead:
                gen += 1
                name = f"b{gen}"
                e.peer[name], e.api[name] = e.peer.pop(old), e.api.pop(old)
                e.add_member(survivor, name)
                members[name] = e.peer[name]
                e.start(name, dict(members), "existing")
                wait_for(f"etcd: {name} serving", lambda: e.write(name, f"bench/j/{t}/{name}"), CAP_S, 0.02)
                fresh.append(name)
            full.append((time.perf_counter() - t0) * 1000)
            log(f"etcd quorum loss (scripted --force-new-cluster) trial {t + 1}/{trials}: write "
                f"{first[-1]:.0f} ms, full {full[-1]:.0f} ms")
            # The next trial: the survivor restarts without the flag (as the procedure says).
            e.kill(survivor)
            e.start(survivor, members, "existing")
            wait_for("etcd: survivor back", lambda: e.write(survivor, f"bench/back/{t}"), CAP_S, 0.05)
            names = [survivor, *fresh]
    finally:
        e.stop_all()
    return first, full


def summary_note(ms: list[float]) -> str:
    s = sorted(ms)
    return f"min {s[0]:.0f}, median {statistics.median(s):.0f}, max {s[-1]:.0f} ms over {len(s)} trials"
