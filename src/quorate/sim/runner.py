"""Run one seed, or sweep many in parallel, and say what went wrong.

A run has three phases: faults (the nemesis acts while clients run), heal
(the nemesis stops; a stable leader must appear within ``settle_ms``), and
liveness (client operations invoked from then on must all succeed). Safety
checkers run inside every event; at the end the history goes through the
linearizability checker. Everything depends only on the seed and the config,
so a failing seed replays exactly.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from .checkers import InvariantViolation, LivenessViolation
from .cluster import Cluster, SimConfig
from .nemesis import Fault, format_faults, parse_faults
from .node import SimNode
from .recovery import check_epochs

__all__ = ["LivenessViolation", "SimResult", "make_config", "parse_seeds", "replay_command", "run_seed",
           "simulate", "summarize", "sweep", "timed_sweep"]


@dataclass(frozen=True, slots=True)
class SimResult:
    seed: int
    ok: bool
    error: str | None
    stats: dict[str, int] = field(default_factory=dict)
    trace_digest: str = ""
    trace: str = ""


def make_config(
    nodes: int = 5, faults: str | frozenset[Fault] = "all", **overrides: object
) -> SimConfig:
    """A SimConfig with the fault kinds given by name or as a set."""
    kinds = parse_faults(faults) if isinstance(faults, str) else frozenset(faults)
    base = SimConfig(nodes=nodes)
    nemesis = dataclasses.replace(base.nemesis, faults=kinds)
    return dataclasses.replace(base, nemesis=nemesis, **overrides)  # type: ignore[arg-type]


def run_seed(
    seed: int,
    nodes: int = 5,
    faults: str | frozenset[Fault] = "all",
    trace: bool = False,
    config: SimConfig | None = None,
    **overrides: object,
) -> SimResult:
    """Simulate one seed; never raises for a failure of the system under test."""
    cfg = config or make_config(nodes, faults, **overrides)
    if trace and not cfg.keep_trace:
        cfg = dataclasses.replace(cfg, keep_trace=True)
    cluster = Cluster(seed, cfg)
    error = simulate(cluster)
    return SimResult(
        seed,
        error is None,
        error,
        _stats(cluster),
        cluster.trace.digest(),
        cluster.trace.text() if cfg.keep_trace else "",
    )


def simulate(cluster: Cluster) -> str | None:
    """Run a cluster built by hand through the three phases (faults may be
    scheduled on its loop beforehand); returns the failure, or None."""
    error: str | None = None
    try:
        _simulate(cluster)
    except InvariantViolation as exc:
        error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a crash of the code under test is a failure too
        where = traceback.extract_tb(exc.__traceback__)[-1]
        error = (
            f"{type(exc).__name__} at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}: {exc}"
        )
    if error is not None:
        cluster.trace.log(cluster.loop.now, "sim", f"FAILED {error}")
    return error


def _simulate(cluster: Cluster) -> None:
    cfg = cluster.cfg
    loop = cluster.loop
    cluster.start()
    loop.run_until(cfg.duration_ms)
    cluster.nemesis.stop()
    stable = _await_stable_leader(cluster)
    cluster.trace.log(loop.now, "sim", f"stable leader {stable.id} after healing")
    cluster.world.strict_after = loop.now
    deadline = loop.now + cfg.clients.timeout_ms + cfg.liveness_ms
    while loop.now < deadline and any(
        c.completed_strict < cfg.liveness_ops for c in cluster.clients
    ):
        loop.run_until(loop.now + cfg.tick_ms)
    _drain_clients(cluster)
    _check_liveness(cluster)
    _check_caught_up(cluster)
    cluster.final_checks()
    recovery = cluster.recovery
    epochs = recovery.epochs if recovery is not None else []
    boundaries = recovery.boundaries() if recovery is not None else []
    segment, verdict = check_epochs(cluster.world.history, boundaries)
    if not verdict.ok:
        where = f" (epoch {epochs[segment - 1].epoch})" if segment else ""
        raise InvariantViolation(f"linearizability{where}: {verdict.message}")


def _await_stable_leader(cluster: Cluster) -> SimNode:
    """Within ``settle_ms`` of healing, one leader must be followed by every
    running member, and stay so for a few election timeouts: without
    pre-vote, a node whose timer ran down during a partition may still
    campaign once right after the heal, which Raft allows."""
    cfg = cluster.cfg
    loop = cluster.loop
    healed = loop.now
    hold = 3 * cfg.election_ticks * cfg.tick_ms
    held: tuple[str, int] | None = None
    since = healed
    while True:
        if loop.now > healed + cfg.settle_ms:
            raise LivenessViolation(
                f"no leader followed by every running member for {hold} ms within "
                f"{cfg.settle_ms} ms after healing (at {healed}): {_roles(cluster)}"
            )
        loop.run_until(loop.now + cfg.tick_ms)
        leader = cluster.stable_leader()
        key = None if leader is None or leader.raft is None else (leader.id, leader.raft.term)
        if key != held:
            held, since = key, loop.now
        elif leader is not None and loop.now - since >= hold:
            return leader


def _drain_clients(cluster: Cluster) -> None:
    """Stop issuing operations and let the ones in flight end."""
    for client in cluster.clients:
        client.stopped = True
    loop = cluster.loop
    deadline = loop.now + cluster.cfg.clients.timeout_ms + 50
    while not all(c.idle for c in cluster.clients) and loop.now < deadline:
        loop.run_until(loop.now + cluster.cfg.tick_ms)


def _check_liveness(cluster: Cluster) -> None:
    world = cluster.world
    if world.late_problems:
        raise LivenessViolation(
            f"{len(world.late_problems)} operation(s) failed after the cluster was healed "
            f"and stable (from {world.strict_after}); first: {world.late_problems[0]}"
        )
    idle = [f"c{c.cid}" for c in cluster.clients if c.completed_strict == 0]
    if idle:
        raise LivenessViolation(
            f"client(s) {', '.join(idle)} completed nothing after healing "
            f"(from {world.strict_after} to {cluster.loop.now})"
        )


def _check_caught_up(cluster: Cluster) -> None:
    """Once clients stop, every running member must apply everything the
    leader committed within ``settle_ms`` (no follower is left behind)."""
    loop = cluster.loop
    deadline = loop.now + cluster.cfg.settle_ms
    while True:
        leader = cluster.leader()
        if leader is None or leader.raft is None:
            raise LivenessViolation(f"no leader at the end: {_roles(cluster)}")
        target = leader.raft.commit_index
        members = leader.raft.conf_state.members()
        behind = [
            f"{n.id} applied {n.applied}"
            for n in cluster.running()
            if n.id in members and n.applied < target
        ]
        if not behind:
            return
        if loop.now >= deadline:
            raise LivenessViolation(
                f"member(s) still behind the leader's commit index {target} "
                f"{cluster.cfg.settle_ms} ms after clients stopped: {', '.join(behind)}; "
                f"{_roles(cluster)}"
            )
        loop.run_until(loop.now + cluster.cfg.tick_ms)


def _roles(cluster: Cluster) -> str:
    parts = []
    for node in cluster.sorted_nodes():
        if node.raft is None:
            parts.append(f"{node.id}={node.status.value}")
        else:
            r = node.raft
            parts.append(f"{node.id}={r.role.value}/t{r.term}/lead={r.leader}/commit={r.commit_index}")
    return " ".join(parts)


def _stats(cluster: Cluster) -> dict[str, int]:
    s = cluster.stats
    w = cluster.world.stats
    return {
        "leader_changes": max(0, s.leaders_elected - 1),
        "elections": s.campaigns,
        "snapshot_installs": s.snapshot_installs,
        "compactions": s.compactions,
        "crashes": s.crashes + s.mid_ready_crashes,
        "mid_ready_crashes": s.mid_ready_crashes,
        "restarts": s.restarts,
        "partitions": s.partitions,
        "pauses": s.pauses,
        "conf_changes": s.conf_changes,
        "ops_ok": w.ok,
        "ops_unknown": w.unknown,
        "ops_failed": w.failed,
        "final_commit": s.max_commit,
        "events": cluster.loop.processed,
        "sim_ms": cluster.loop.now,
        "quorum_losses": s.quorum_losses,
        "forces": s.forces,
        "restarts_in_place": s.restarts_in_place,
        "watchdog_waits": s.watchdog_waits,
        "watchdog_follows": s.watchdog_follows,
        "restart_lock_refusals": s.restart_lock_refusals,
        "lost_by_recovery": s.lost_by_recovery,
        "recoveries": s.recoveries,
        "max_recovery_ms": s.max_recovery_ms,
    }


# -- sweeps ---------------------------------------------------------------------


def parse_seeds(text: str) -> list[int]:
    """``"0-999"`` (inclusive), ``"1,5,9"``, or a mix: ``"0-9,17"``."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = (int(x) for x in part.split("-", 1))
            if hi < lo:
                raise ValueError(f"empty seed range {part!r}")
            seeds.extend(range(lo, hi + 1))
        else:
            seeds.append(int(part))
    if not seeds:
        raise ValueError("no seeds given")
    return seeds


@dataclass(frozen=True, slots=True)
class _Job:
    seed: int
    nodes: int
    faults: frozenset[Fault]
    overrides: tuple[tuple[str, object], ...] = ()


def _run_job(job: _Job) -> SimResult:
    return run_seed(job.seed, job.nodes, job.faults, **dict(job.overrides))


def sweep(
    seeds: Iterable[int],
    nodes: int,
    faults: frozenset[Fault],
    workers: int | None = None,
    on_result: Callable[[SimResult], None] | None = None,
    **overrides: object,
) -> list[SimResult]:
    """Run seeds on every core (fork), in seed order in the output;
    ``overrides`` go to the SimConfig (``duration_ms=...``)."""
    extra = tuple(sorted(overrides.items()))
    jobs = [_Job(s, nodes, faults, extra) for s in seeds]
    workers = workers or multiprocessing.cpu_count()
    results: list[SimResult] = []
    for result in _map(jobs, workers):
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def _map(jobs: list[_Job], workers: int) -> Iterator[SimResult]:
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_run_job, jobs)
        return
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        yield from pool.imap(_run_job, jobs, chunksize=4)


def replay_command(seed: int, nodes: int, faults: frozenset[Fault], duration_ms: int | None = None) -> str:
    duration = "" if duration_ms is None else f" --duration-ms {duration_ms}"
    return (
        f"python -m quorate.sim --nodes {nodes} --seeds {seed} "
        f"--faults {format_faults(faults)}{duration} --trace"
    )


def summarize(results: list[SimResult], elapsed_s: float, label: str = "") -> str:
    """The sweep's final table."""
    keys = ("leader_changes", "elections", "snapshot_installs", "crashes", "conf_changes",
            "ops_ok", "ops_unknown", "ops_failed", "events")
    if any(r.stats.get("quorum_losses") for r in results):
        keys += ("quorum_losses", "forces", "restarts_in_place", "watchdog_waits",
                 "watchdog_follows", "lost_by_recovery", "recoveries")
    totals = {k: sum(r.stats.get(k, 0) for r in results) for k in keys}
    n = max(1, len(results))
    failures = sum(1 for r in results if not r.ok)
    lines = [
        f"{label}seeds run: {len(results)}   failures: {failures}   time: {elapsed_s:.1f} s",
        f"{'':<20}{'total':>10}{'per seed':>10}",
    ]
    lines.extend(f"{k:<20}{v:>10}{v / n:>10.1f}" for k, v in totals.items())
    if "forces" in totals:
        worst = max(r.stats.get("max_recovery_ms", 0) for r in results)
        lines.append(f"{'max_recovery_ms':<20}{worst:>10}")
    return "\n".join(lines)


def timed_sweep(seeds: list[int], nodes: int, faults: frozenset[Fault], workers: int | None = None,
                on_result: Callable[[SimResult], None] | None = None,
                **overrides: object) -> tuple[list[SimResult], float]:
    start = time.perf_counter()
    results = sweep(seeds, nodes, faults, workers, on_result, **overrides)
    return results, time.perf_counter() - start
