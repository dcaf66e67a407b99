"""``ccengine dialer simulate``: every strategy against one scenario, side by side."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import click

from ccengine.yamlconf import ConfigError

from .pacing import STRATEGY_HELP, make_strategy
from .scenario import Scenario, load_scenario
from .simulator import SimResult, simulate


def run_one(scenario: Scenario, strategy: str, seed: int) -> SimResult:
    """One day for one strategy; records dropped so results are cheap to ship between processes."""
    pacing = scenario.pacing
    result = simulate(scenario, make_strategy(strategy, cap=pacing.cap, min_agents=pacing.min_agents,
                                              grace_s=scenario.grace), seed)
    return replace(result, records=[], strategy=strategy)


def run_matrix(scenario: Scenario, strategies: Sequence[str], seeds: Sequence[int],
               jobs: int = 1) -> dict[str, list[SimResult]]:
    """Every strategy x seed; in ``jobs`` processes (each day is independent)."""
    tasks = [(s, seed) for s in strategies for seed in seeds]
    out: dict[str, list[SimResult]] = {s: [] for s in strategies}
    if jobs <= 1:
        for name, seed in tasks:
            out[name].append(run_one(scenario, name, seed))
        return out
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_one, scenario, name, seed) for name, seed in tasks]
        for (name, _), future in zip(tasks, futures, strict=True):
            out[name].append(future.result())
    return out


@dataclass(frozen=True)
class _Column:
    title: str
    get: Callable[[SimResult], float]
    scale: float = 1.0
    digits: int = 3
    worst: bool = False  # also show the maximum over seeds


def _abandon_getter(name: str) -> Callable[[SimResult], float]:
    return lambda r: r.abandon[name]


def _columns(results: dict[str, list[SimResult]]) -> list[_Column]:
    first = next(iter(results.values()))[0]
    cols = [
        _Column("occ", lambda r: r.occupancy),
        _Column("talk m/ah", lambda r: r.talk_min_per_agent_hour, digits=1),
    ]
    for name in first.abandon:
        cols.append(_Column(f"{name} %", _abandon_getter(name), 100.0, 2))
    cols += [
        _Column("worst 60m %", lambda r: r.worst_hour, 100.0, 2, worst=True),
        _Column("15m>cap %", lambda r: r.buckets_over_cap, 100.0, 1),
        _Column("dials/ah", lambda r: r.dials_per_agent_hour, digits=1),
        _Column("conn/ah", lambda r: r.connects_per_agent_hour, digits=2),
        _Column("peak lines", lambda r: float(r.peak_lines), digits=0, worst=True),
    ]
    return cols


def _cell(values: list[float], col: _Column) -> str:
    scaled = [v * col.scale for v in values]
    mean = statistics.fmean(scaled)
    text = f"{mean:.{col.digits}f}"
    if len(scaled) > 1:
        text += f"±{statistics.stdev(scaled):.{col.digits}f}"
        if col.worst:
            text += f" ≤{max(scaled):.{col.digits}f}"
    return text


def format_table(results: dict[str, list[SimResult]], cap: float = 0.03,
                 baseline: str = "progressive", occupancy_target: float | None = None) -> str:
    """Rows = strategies, mean±sd over seeds (``≤x``: worst seed); ratios vs ``baseline``.

    ``ok`` means every seed kept every regulator window and the worst rolling
    hour at or under the cap (and reached ``occupancy_target`` if given).
    """
    cols = _columns(results)
    header = ["strategy", *[c.title for c in cols]]
    base = results.get(baseline)
    if base:
        header += ["occ/prog", "talk/prog"]
    header.append("ok")
    rows = [header]
    for name, runs in results.items():
        row = [name, *[_cell([c.get(r) for r in runs], c) for c in cols]]
        if base:
            occ = statistics.fmean(r.occupancy for r in runs)
            talk = statistics.fmean(r.talk_min_per_agent_hour for r in runs)
            row.append(f"{occ / statistics.fmean(r.occupancy for r in base):.3f}")
            row.append(f"{talk / statistics.fmean(r.talk_min_per_agent_hour for r in base):.3f}")
        ok = all(max(r.worst_hour, *r.abandon.values()) <= cap for r in runs)
        if occupancy_target is not None:
            ok = ok and all(r.occupancy >= occupancy_target for r in runs)
        row.append("yes" if ok else "NO")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


@click.group("dialer")
def dialer() -> None:
    """Outbound dialer tools (pacing simulation)."""


@dialer.command("simulate")
@click.argument("scenario_file", metavar="SCENARIO.yaml", type=click.Path(dir_okay=False))
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(1),
              help="Simulated days per strategy (seeds 1..N).")
@click.option("--strategy", "strategies", multiple=True, metavar="NAME",
              help=f"Repeatable; default: the scenario's list. {STRATEGY_HELP}")
@click.option("--jobs", default=min(os.cpu_count() or 1, 4), show_default=True,
              type=click.IntRange(1), help="Worker processes.")
def simulate_cmd(scenario_file: str, seeds: int, strategies: tuple[str, ...], jobs: int) -> None:
    """Run the pacing strategies against SCENARIO.yaml and print them side by side."""
    try:
        scenario = load_scenario(scenario_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    names = list(strategies) or scenario.pacing.strategies
    for name in names:
        try:
            make_strategy(name)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--strategy") from None
    results = run_matrix(scenario, names, range(1, seeds + 1), jobs)
    hours = (scenario.duration - scenario.warmup) / 3600
    click.echo(f"{scenario.name}: {scenario.agents} agents, {scenario.duration / 3600:g} h "
               f"(measured after {scenario.warmup / 60:g} min warm-up, {hours:g} h), "
               f"{seeds} seed(s), cap {scenario.pacing.cap:.1%}")
    click.echo(format_table(results, scenario.pacing.cap))
