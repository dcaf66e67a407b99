"""Benchmark of issue 5: scenario S0, every pacing strategy, 10 seeds, one table.

Usage: .venv/bin/python bench/dialer.py [--seeds N] [--jobs J] [--step]

``--step`` also runs S0-step (live answers drop from 30% to 15% at 4 h), the
robustness case from the research note. The target on S0 is occupancy
>= 0.95 with abandonment <= 3% in every regulator window and in the worst
rolling hour, on every seed; the 'ok' column checks the abandonment part on
every seed and the summary line the occupancy part.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from ccengine.dialer.cli import format_table, run_matrix
from ccengine.dialer.scenario import ShareChange, load_scenario

HERE = Path(__file__).resolve().parent
STRATEGIES = ["progressive", "ratio:2", "ratio:3.33", "vicidial", "predictive-open:0.01",
              "predictive:0.02"]
ANALYTIC_PROGRESSIVE = 210 / 256.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--step", action="store_true", help="also run S0-step")
    args = parser.parse_args()
    scenario = load_scenario(HERE / "dialer_s0.yaml")
    seeds = range(1, args.seeds + 1)
    started = time.perf_counter()
    results = run_matrix(scenario, STRATEGIES, seeds, args.jobs)
    elapsed = time.perf_counter() - started
    print(f"S0: {scenario.agents} agents, {scenario.duration / 3600:g} h, {args.seeds} seeds, "
          f"{elapsed:.0f} s wall on {args.jobs} process(es)")
    print("mean±sd over seeds, ≤x = worst seed; m/ah, /ah = per agent-hour")
    print(format_table(results, scenario.pacing.cap))
    prog = statistics.fmean(r.occupancy for r in results["progressive"])
    print(f"\nprogressive occupancy {prog:.4f} vs analytic {ANALYTIC_PROGRESSIVE:.4f} "
          f"(diff {prog - ANALYTIC_PROGRESSIVE:+.4f})")
    best = results["predictive:0.02"]
    worst_occ = min(r.occupancy for r in best)
    worst_ab = max(max(r.worst_hour, *r.abandon.values()) for r in best)
    verdict = "MET" if worst_occ >= 0.95 and worst_ab <= scenario.pacing.cap else "NOT MET"
    print(f"target (occupancy >= 0.95, every window and worst hour <= 3%, every seed): {verdict} "
          f"-- lowest occupancy {worst_occ:.4f}, highest abandonment {worst_ab:.2%}")
    if args.step:
        step = scenario.model_copy(update={
            "name": "S0-step",
            "changes": [ShareChange(at=4 * 3600.0, shares={"live": 0.15})]})
        results = run_matrix(step, ["progressive", "vicidial", "predictive:0.02"], seeds, args.jobs)
        print("\nS0-step: live answers 30% -> 15% at 4 h")
        print(format_table(results, step.pacing.cap))


if __name__ == "__main__":
    main()
