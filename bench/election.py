"""The Raft paper's leader-election experiment (Ongaro & Ousterhout 2014, Figure 16).

Five servers; the leader is crashed at a random moment within its heartbeat
interval; we measure the time until a new leader is elected and known to all
other live servers. The paper's setup is reproduced on the simulator's virtual
clock: 1 ms ticks, heartbeat interval half the minimum election timeout, and a
network whose round trip (the paper's "broadcast time") is about 15 ms
(one-way delay uniform in [5, 10] ms).

The paper ran without pre-vote or check-quorum; quorate runs with both on. Each
range is run both ways so the cost of pre-vote (one more round trip per
election) is visible.

    python bench/election.py [--trials 1000] [--json bench/results/election.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import pathlib
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass

from quorate.raft import Message, RaftConfig, RaftNode, Role, bootstrap_state
from quorate.sim.events import EventLoop

RANGES = [(150, 150), (150, 151), (150, 155), (150, 175), (150, 200), (150, 300),
          (12, 24), (25, 50), (50, 100), (100, 200)]
# Points published in the paper (Figure 16 and its text), in ms.
PAPER = {
    (150, 150): "some elections took over 10 s (split votes)",
    (150, 155): "median 287",
    (150, 200): "worst 513",
    (12, 24): "mean 35, max 152",
}
IDS = ["n1", "n2", "n3", "n4", "n5"]
DELAY = (5, 10)          # one-way ms; round trip about 15 ms
TRIAL_CAP_MS = 10_000    # a trial that elects nobody by then counts as 10 s+


@dataclass(frozen=True, slots=True)
class RangeResult:
    lo: int
    hi: int
    safe_mode: bool       # pre-vote and check-quorum on
    trials: int
    median_ms: float
    mean_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    capped: int           # trials that hit TRIAL_CAP_MS


class _Trial:
    """One crash-and-elect trial on a fresh five-node cluster."""

    def __init__(self, lo: int, hi: int, safe: bool, seed: int, delay: tuple[int, int] = DELAY) -> None:
        self.delay = delay
        self.rng = random.Random(seed)
        self.loop = EventLoop()
        cfg = RaftConfig(election_ticks=lo, election_ticks_max=hi, heartbeat_ticks=max(1, lo // 2),
                         pre_vote=safe, check_quorum=safe)
        state = bootstrap_state(IDS)
        self.nodes = {i: RaftNode(i, cfg, random.Random(self.rng.random()), state) for i in IDS}
        self.dead: set[str] = set()
        for i in IDS:
            self.loop.call_later(1, self._tick, i)

    def _tick(self, i: str) -> None:
        if i in self.dead:
            return
        self.nodes[i].tick()
        self._drain(i)
        self.loop.call_later(1, self._tick, i)

    def _deliver(self, msg: Message) -> None:
        if msg.to not in self.dead:
            self.nodes[msg.to].step(msg)
            self._drain(msg.to)

    def _drain(self, i: str) -> None:
        node = self.nodes[i]
        while node.has_ready():
            rd = node.ready()
            for m in rd.messages:
                self.loop.call_later(self.rng.randint(*self.delay), self._deliver, m)
            node.advance(rd)

    def _leader_known(self) -> str | None:
        live = [self.nodes[i] for i in IDS if i not in self.dead]
        leaders = [n.id for n in live if n.role is Role.LEADER]
        if len(leaders) == 1 and all(n.leader == leaders[0] for n in live):
            return leaders[0]
        return None

    def _run_until_leader(self, cap_ms: int) -> int | None:
        start = self.loop.now
        while self.loop.now - start < cap_ms:
            self.loop.run_one()
            if self._leader_known() is not None:
                return self.loop.now - start
        return None

    def run(self, lo: int) -> int:
        self.nodes["n1"].campaign()
        self._drain("n1")
        if self._run_until_leader(TRIAL_CAP_MS) is None:
            return TRIAL_CAP_MS
        # Let a few heartbeats pass, then crash the leader at a random point
        # of its heartbeat interval.
        self.loop.run_until(self.loop.now + 2 * lo + self.rng.randint(0, max(1, lo // 2)))
        leader = self._leader_known()
        if leader is None:
            return TRIAL_CAP_MS
        self.dead.add(leader)
        took = self._run_until_leader(TRIAL_CAP_MS)
        return TRIAL_CAP_MS if took is None else took


def _one(args: tuple[int, int, bool, int, tuple[int, int]]) -> int:
    lo, hi, safe, seed, delay = args
    return _Trial(lo, hi, safe, seed, delay).run(lo)


def _pct(xs: list[int], p: float) -> float:
    s = sorted(xs)
    return float(s[min(len(s) - 1, int(p * len(s)))])


def measure(lo: int, hi: int, safe: bool, trials: int, pool: multiprocessing.pool.Pool,
            delay: tuple[int, int] = DELAY) -> RangeResult:
    seeds = [(lo, hi, safe, lo * 1_000_003 + hi * 1009 + t + (7 if safe else 0), delay) for t in range(trials)]
    times = pool.map(_one, seeds, chunksize=max(1, trials // 16))
    return RangeResult(lo, hi, safe, trials, statistics.median(times), statistics.fmean(times),
                       _pct(times, 0.90), _pct(times, 0.99), float(max(times)),
                       sum(1 for t in times if t >= TRIAL_CAP_MS))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--json", default="bench/results/election.json")
    ap.add_argument("--delay-ms", default=f"{DELAY[0]},{DELAY[1]}",
                    help="one-way message delay range LO,HI in ms (default %(default)s)")
    args = ap.parse_args(argv)
    lo_d, hi_d = (int(x) for x in args.delay_ms.split(","))
    delay = (lo_d, hi_d)
    started = time.monotonic()
    results: list[RangeResult] = []
    header = f"{'range ms':>10} {'mode':>18} {'median':>7} {'mean':>7} {'p90':>7} {'p99':>7} {'max':>7} {'>=10s':>5}  paper"
    print(header)
    print("-" * len(header))
    with multiprocessing.Pool() as pool:
        for lo, hi in RANGES:
            for safe in (False, True):
                r = measure(lo, hi, safe, args.trials, pool, delay)
                results.append(r)
                mode = "pre-vote+chk-quorum" if safe else "plain (as paper)"
                print(f"{lo:>4}-{hi:<5} {mode:>18} {r.median_ms:7.0f} {r.mean_ms:7.0f} {r.p90_ms:7.0f} "
                      f"{r.p99_ms:7.0f} {r.max_ms:7.0f} {r.capped:5d}  {PAPER.get((lo, hi), '') if not safe else ''}",
                      flush=True)
    out = pathlib.Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "election", "trials": args.trials, "delay_ms": delay,
                               "results": [asdict(r) for r in results],
                               "wall_seconds": round(time.monotonic() - started, 1)}, indent=2))
    print(f"wrote {out} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
