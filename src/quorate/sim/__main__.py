"""``python -m quorate.sim``: seed sweeps, single-seed traces, and the demo.

    python -m quorate.sim --nodes 5 --seeds 0-999 --faults all
    python -m quorate.sim --nodes 5 --seeds 17 --faults all --trace
    python -m quorate.sim --nodes 3 --seeds 0-199 --faults all,quorum_loss
    python -m quorate.sim demo

``all`` is every fault kind but quorum_loss (quorum-loss recovery by the
watchdog); add it by name.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .nemesis import parse_faults
from .runner import SimResult, parse_seeds, replay_command, run_seed, summarize, timed_sweep


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m quorate.sim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", choices=["sweep", "demo"], default="sweep")
    p.add_argument("--nodes", type=int, default=5, help="initial voters (default 5)")
    p.add_argument("--seeds", default="0-99", help='"0-999", "1,5,9" or a mix (default 0-99)')
    p.add_argument("--faults", default="all",
                   help="none, or a comma-separated mix of all, partition, crash, drop, pause, "
                        "membership, transfer, quorum_loss (all = every kind but quorum_loss)")
    p.add_argument("--duration-ms", type=int, default=None,
                   help="length of the fault phase in simulated ms (default 10000)")
    p.add_argument("--trace", action="store_true", help="print the trace of a single seed")
    p.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The core logs role changes; the trace already tells them, in order.
    logging.getLogger("quorate").addHandler(logging.NullHandler())
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(sys.stdout)
    try:
        seeds = parse_seeds(args.seeds)
        faults = parse_faults(args.faults)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.nodes < 1:
        print("error: --nodes must be at least 1", file=sys.stderr)
        return 2
    if args.duration_ms is not None and args.duration_ms < 0:
        print("error: --duration-ms must not be negative", file=sys.stderr)
        return 2
    overrides = {} if args.duration_ms is None else {"duration_ms": args.duration_ms}
    if args.trace:
        if len(seeds) != 1:
            print("error: --trace needs exactly one seed", file=sys.stderr)
            return 2
        result = run_seed(seeds[0], args.nodes, faults, trace=True, **overrides)
        sys.stdout.write(result.trace)
        _print_result_line(result, args.nodes, faults, args.duration_ms)
        return 0 if result.ok else 1

    def report(result: SimResult) -> None:
        if not result.ok:
            _print_result_line(result, args.nodes, faults, args.duration_ms)

    results, elapsed = timed_sweep(seeds, args.nodes, faults, args.workers, report, **overrides)
    print(summarize(results, elapsed, label=f"nodes={args.nodes} faults={args.faults}  "))
    return 0 if all(r.ok for r in results) else 1


def _print_result_line(result: SimResult, nodes: int, faults: frozenset,
                       duration_ms: int | None = None) -> None:
    if result.ok:
        stats = " ".join(f"{k}={v}" for k, v in sorted(result.stats.items()))
        print(f"seed {result.seed}: ok  {stats}")
    else:
        print(f"seed {result.seed}: FAILED {result.error}\n  replay: "
              f"{replay_command(result.seed, nodes, faults, duration_ms)}", flush=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. piped into head: not an error of the run
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
