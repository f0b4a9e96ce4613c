"""quorate vs etcd vs PySyncObj, side by side, in one run on this machine.

    python -m bench            # the full run (make bench)
    python -m bench --quick    # a short version: fewer seconds, trials, keys

Three nodes of each system on 127.0.0.1. Every figure is meant to be read as
a ratio between systems measured in the same run: these machines are shared
and noisy. Steps (each system in turn, interleaved point by point):

1. RSS per idle node;
2. write throughput and p50/p99 latency with 1, 16, 64 closed-loop clients
   (distinct keys, 16-byte values, to the leader's HTTP front);
3. linearizable reads at the same concurrency;
4. CPU time per committed write (all server processes, /proc) at offered
   rates of 1,000 and 5,000 writes/s (open loop);
5. leader failover (kill -9 the leader, time to an acknowledged write
   through a survivor), default timing, then the fast profile (heartbeat
   30 ms, election timeout 150 ms), trials interleaved across systems;
6. snapshot install for a follower that fell behind by K keys, and RSS
   after K keys (fresh clusters);
7. quorum-loss recovery (kill -9 two of three): quorate's own, with the
   data kept and with it lost, and etcd's documented --force-new-cluster
   procedure scripted (``bench/quorum.py``).

Prints one table and writes ``bench/results/<date>-<commit>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import time
import traceback
from pathlib import Path

from bench import failover, memory, quorum
from bench.load import client_closed_loop, closed_loop, open_loop
from bench.procs import Registry, cpu_seconds
from bench.report import Results
from bench.systems import DEFAULT, FAST, Cluster, Timing
from bench.systems.etcd import EtcdCluster, ensure_etcd, etcd_version
from bench.systems.pysyncobj import PySyncObjCluster
from bench.systems.quorate import QuorateCluster

REPO = Path(__file__).resolve().parent.parent
VALUE = "v" * 16
CLIENTS = (1, 16, 64)
RATES = (1000, 5000)


def variant(c: Cluster) -> str:
    return "nofsync" if c.system == "quorate" and not c.durable else ""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.seconds = 2.0 if self.quick else 8.0
        self.trials = 3 if self.quick else 20
        self.keys = 5_000 if self.quick else 100_000
        self.res = Results()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.work = Path(args.work_dir or REPO / "bench" / ".work") / stamp
        self.etcd = ensure_etcd() if not args.no_etcd else None
        self.systems = [s for s in ("quorate", "etcd", "pysyncobj") if s in args.systems.split(",")]
        if self.etcd is None and "etcd" in self.systems:
            self.systems.remove("etcd")
            self.res.notes.append("etcd rows skipped: no etcd binary")
        self.seq = 0

    def make(self, system: str, timing: Timing, tag: str, **kw: object) -> Cluster:
        root = self.work / f"{system}-{tag}-{timing.name}"
        if system == "quorate":
            return QuorateCluster(root, timing, **kw)  # type: ignore[arg-type]
        if system == "etcd":
            assert self.etcd is not None
            return EtcdCluster(root, timing, self.etcd, **kw)  # type: ignore[arg-type]
        return PySyncObjCluster(root, timing, batch=self.args.pysyncobj_batch)

    def start(self, clusters: list[Cluster]) -> None:
        for c in clusters:
            c.start()
        for c in clusters:
            c.wait_ready()

    # -- steps --------------------------------------------------------------------------
    def rss_idle(self, clusters: list[Cluster]) -> None:
        time.sleep(3.0)
        for c in clusters:
            rss = memory.rss_all(c)
            self.res.add(c.system, "rss_idle_mb", max(rss), len(rss), variant=variant(c),
                         note="max over the 3 nodes: " + ", ".join(f"{x:.1f}" for x in rss))
            log(f"{c.label}: idle RSS {', '.join(f'{x:.1f}' for x in rss)} MB")

    def keyfn(self, c: Cluster, what: str):  # type: ignore[no-untyped-def]
        self.seq += 1
        run = self.seq
        return lambda client, i: c.write_req(f"bench/{what}/{run}/{client}/{i}", VALUE)

    def writes(self, clusters: list[Cluster]) -> None:
        for n in CLIENTS:
            for c in clusters:
                lead = c.wait_ready()
                r = asyncio.run(closed_loop("127.0.0.1", c.api_ports[lead], n, self.seconds, self.keyfn(c, "w")))
                self._latency_rows(c.system, "write", n, r, variant(c))
                log(f"{c.label} writes x{n}: {r.ops_per_s:.0f}/s p50 {r.median_ms():.2f} ms "
                    f"p99 {r.pct_ms(0.99):.2f} ms errors {r.errors}")
                if c.system == "quorate" and c.durable:
                    self.seq += 1
                    run = self.seq
                    rc = asyncio.run(client_closed_loop(f"http://127.0.0.1:{c.api_ports[lead]}", n, self.seconds,
                                                        lambda cl, i: f"bench/wc/{run}/{cl}/{i}", VALUE))
                    self._latency_rows("quorate", "write", n, rc, "client")
                    log(f"quorate (AsyncClient) writes x{n}: {rc.ops_per_s:.0f}/s p50 {rc.median_ms():.2f} ms "
                        f"errors {rc.errors}")

    def _latency_rows(self, system: str, kind: str, n: int, r, var: str) -> None:  # type: ignore[no-untyped-def]
        self.res.add(system, f"{kind}_ops_per_s", r.ops_per_s, r.ok, clients=n, variant=var,
                     note=f"{r.errors} errors" if r.errors else "")
        if kind == "write":
            self.res.add(system, "write_p50_ms", r.median_ms(), r.ok, clients=n, variant=var)
            self.res.add(system, "write_p99_ms", r.pct_ms(0.99), r.ok, clients=n, variant=var)
        else:
            self.res.add(system, "read_p50_ms", r.median_ms(), r.ok, clients=n, variant=var)
            self.res.add(system, "read_p99_ms", r.pct_ms(0.99), r.ok, clients=n, variant=var)

    def reads(self, clusters: list[Cluster]) -> None:
        for c in clusters:
            lead = c.wait_ready()
            for k in range(64):
                c.try_write(lead, f"bench/r/{k}", VALUE, timeout=10)
        for n in CLIENTS:
            for c in clusters:
                lead = c.wait_ready()
                r = asyncio.run(closed_loop("127.0.0.1", c.api_ports[lead], n, self.seconds,
                                            lambda client, i, c=c: c.read_req(f"bench/r/{client}")))
                self._latency_rows(c.system, "read", n, r, variant(c))
                log(f"{c.label} reads x{n}: {r.ops_per_s:.0f}/s p50 {r.median_ms():.2f} ms errors {r.errors}")

    def cpu(self, clusters: list[Cluster]) -> None:
        for rate in RATES:
            for c in clusters:
                lead = c.wait_ready()
                time.sleep(0.5)
                pids = c.pids()
                cpu0 = cpu_seconds(pids)
                r = asyncio.run(open_loop("127.0.0.1", c.api_ports[lead], rate, self.seconds, self.keyfn(c, "cpu")))
                used = cpu_seconds(pids) - cpu0
                per = 1000 * used / r.ok if r.ok else float("nan")
                self.res.add(c.system, "cpu_ms_per_write", per, r.ok, clients=rate, variant=variant(c),
                             note=f"achieved {r.ok / r.seconds:.0f}/s of {rate}/s offered; "
                                  f"{r.not_sent} not sent (256 in flight), {r.errors} errors; "
                                  f"{used:.2f} CPU-s")
                log(f"{c.label} at {rate}/s offered: {r.ok / r.seconds:.0f}/s done, {per:.3f} CPU-ms/write, "
                    f"not sent {r.not_sent}, errors {r.errors}")

    def failovers(self, clusters: list[Cluster], timing: Timing) -> None:
        times: dict[str, list[float]] = {c.label: [] for c in clusters}
        for t in range(self.trials):
            for c in clusters:
                ms = failover.one_trial(c, t)
                times[c.label].append(ms)
                log(f"{c.label} failover ({timing.name}) trial {t + 1}/{self.trials}: {ms:.0f} ms")
        for c in clusters:
            ms = times[c.label]
            s = failover.summary(ms)
            for k in ("min", "median", "p90", "max"):
                self.res.add(c.system, f"failover_{k}_ms", s[k], len(ms), timing=timing.name, variant=variant(c))

    def snapshot_and_memory(self, system: str) -> None:
        kw: dict[str, object] = {"snapshot_count": 10_000} if system == "etcd" else {}
        c = self.make(system, DEFAULT, "mem", **kw)
        try:
            self.start([c])
            took, rss, ok = memory.snapshot_install(c, self.keys, VALUE)
            note = f"{ok} keys written" + ("" if self.keys == 100_000 else f" (--quick: {self.keys}, not 100k)")
            self.res.add(system, "snapshot_install_100k_ms", took, 1, note=note + "; includes process start")
            self.res.add(system, "rss_100k_keys_mb", max(rss), len(rss),
                         note=note + "; max over the 3 nodes: " + ", ".join(f"{x:.1f}" for x in rss))
            log(f"{c.label}: snapshot install after {ok} keys {took:.0f} ms; RSS {', '.join(f'{x:.1f}' for x in rss)}")
        finally:
            c.stop()

    def quorum(self) -> None:
        trials = 3 if self.quick else 10
        for keep in ((True, False) if "quorate" in self.systems else ()):
            variant_name = "data_kept" if keep else ""  # the plain row is the one to set beside etcd's
            try:
                first, full = quorum.quorate_trials(self.work, trials, keep, log)
            except Exception as exc:  # a failed phase is reported, the rest of the bench stands
                log(f"quorate quorum-loss trials failed: {exc!r}")
                continue
            for metric, ms in (("quorum_recovery_write_ms", first), ("quorum_recovery_full_ms", full)):
                self.res.add("quorate", metric, statistics.median(ms), len(ms), variant=variant_name,
                             note=quorum.summary_note(ms) + ("; restarted in place" if keep else
                                                             "; forced, then re-provisioned"))
        if self.etcd:
            try:
                first, full = quorum.etcd_trials(self.work, self.etcd, trials, log)
            except Exception as exc:
                log(f"etcd quorum-loss trials failed: {exc!r}")
                return
            for metric, ms in (("quorum_recovery_write_ms", first), ("quorum_recovery_full_ms", full)):
                self.res.add("etcd", metric, statistics.median(ms), len(ms),
                             note=quorum.summary_note(ms) + "; the documented --force-new-cluster procedure, "
                                  "scripted to start at the kill (no operator delay)")
        self.res.notes.append("quorum_recovery_*: kill -9 of 2 of 3 managers; quorate's figures include its "
                              "5 s grace period (five election timeouts) before it acts; data_kept rows "
                              "restart the dead in place; the plain rows delete the killed managers' data, so quorate "
                              "forces a new configuration (the rows to compare with etcd's)")

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> int:
        a = self.args
        log(f"work dir {self.work}; systems {self.systems}; {'quick' if self.quick else 'full'} run")
        if self.etcd:
            self.res.notes.append(f"etcd {etcd_version(self.etcd)} (Debian etcd-server), gRPC-JSON gateway; "
                                  "pre-vote off (its default in 3.4)")
        self.res.notes.append("pysyncobj: in-memory log (no durable log); compare with quorate's nofsync column; "
                              + ("appendEntriesUseBatch=True (its default)" if a.pysyncobj_batch else
                                 "appendEntriesUseBatch=False (its low-latency setting; the default batches "
                                 "every 100 ms)"))
        self.res.notes.append("load generator: one Python asyncio process on the same machine, plain HTTP/1.1 "
                              "keep-alive, to the leader")
        self.res.notes.append(f"quorate: event loop {event_loop_name()} (--event-loop auto)")
        if self.quick:
            self.res.notes.append(f"--quick: {self.seconds:g} s per point, {self.trials} failover trials, "
                                  f"{self.keys} keys for the memory/snapshot rows")
        phases = a.phases.split(",")
        if {"rss", "writes", "reads", "cpu", "failover"} & set(phases):
            clusters = [self.make(s, DEFAULT, "main") for s in self.systems]
            if "quorate" in self.systems:
                clusters.insert(1, self.make("quorate", DEFAULT, "nofsync", fsync=False))
            try:
                self.start(clusters)
                if "rss" in phases:
                    self.rss_idle(clusters)
                if "writes" in phases:
                    self.writes(clusters)
                if "reads" in phases:
                    self.reads(clusters)
                if "cpu" in phases:
                    self.cpu(clusters)
                durable_and_pso = [c for c in clusters if c.durable or c.system == "pysyncobj"]
                for c in clusters:
                    if c not in durable_and_pso:
                        c.stop()
                if "failover" in phases:
                    self.failovers(durable_and_pso, DEFAULT)
            finally:
                for c in clusters:
                    c.stop()
        if "failover" in phases:
            fast = [self.make(s, FAST, "fo") for s in self.systems]
            try:
                self.start(fast)
                self.failovers(fast, FAST)
            finally:
                for c in fast:
                    c.stop()
        if "memory" in phases:
            for s in self.systems:
                self.snapshot_and_memory(s)
        extra: list[str] = []
        if "quorum" in phases:
            self.quorum()
            for r in self.res.rows:
                if r.variant == "data_kept":
                    extra.append(f"{r.metric + ' (data kept)':<42} | {r.value:>9.0f}  quorate, restarted in place")
        else:
            extra.append("quorum_recovery_*: not run (--phases without quorum)")
        print()
        print(self.res.table(extra))
        print()
        for n in self.res.notes:
            print(f"note: {n}")
        meta = {"quick": self.quick, "seconds_per_point": self.seconds, "failover_trials": self.trials,
                "keys": self.keys, "timings": {"default": "each system's own defaults",
                                                "fast": f"heartbeat {FAST.heartbeat_ms} ms, election timeout "
                                                        f"{FAST.election_ms} ms"}}
        path = self.res.write_json(Path(a.results_dir), meta)
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
        return 0


def event_loop_name() -> str:
    """The loop a quorate agent runs with ``--event-loop auto`` here."""
    from quorate.runtime.eventloop import loop_factory

    factory = loop_factory("auto")
    if factory is None:
        return "asyncio (uvloop not installed)"
    import uvloop

    return f"uvloop {uvloop.__version__}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short run (a few minutes)")
    ap.add_argument("--systems", default="quorate,etcd,pysyncobj")
    ap.add_argument("--phases", default="rss,writes,reads,cpu,failover,memory,quorum")
    ap.add_argument("--pysyncobj-batch", action="store_true",
                    help="PySyncObj with its default appendEntriesUseBatch=True (about 100 ms per write)")
    ap.add_argument("--no-etcd", action="store_true", help="do not look for or install etcd")
    ap.add_argument("--results-dir", default=str(REPO / "bench" / "results"))
    ap.add_argument("--work-dir", default=None, help="where the nodes' data live (default bench/.work; "
                    "must be a real disk, not tmpfs, for fsync to mean anything)")
    ap.add_argument("--keep", action="store_true", help="keep the nodes' data and logs")
    args = ap.parse_args(argv)
    os.chdir(REPO)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    bench = Bench(args)
    try:
        return bench.run()
    except BaseException:
        traceback.print_exc()
        print(f"bench failed; node logs are under {bench.work}", file=sys.stderr)
        args.keep = True
        return 1
    finally:
        Registry.kill_all()
        if not args.keep:
            shutil.rmtree(bench.work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
