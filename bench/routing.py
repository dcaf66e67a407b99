"""Routing-decision benchmark: indexed router vs. a linear-scan baseline.

World: 10,000 agents, 50 skills (4 per agent, levels 1..10), 120 queues that
need one or two skills at a minimum level (plus a language skill for a third
of the callers, as customer rules would add), three strategies, four aging
rates, affinity on some queues. The centre is saturated: about 10,000
contacts wait while nearly every agent is busy, which is when routing is
hardest (a freed agent must find its best contact among thousands).

Events, drawn at random in realistic proportions: arrivals, call completions
(with or without wrap-up), wrap-up ends, ready/not-ready changes, abandons,
ring-no-answer and answers (confirm). Each router call is timed on its own;
"decision" latency covers the calls that choose (arrival, completion, ready),
and decisions/s divides the decisions by the time spent in *all* router
calls, state updates included.

The router measured is the one the engine imports: the mypyc-compiled
module when ``make setup`` built it (and it is current), else ``router.py``.
When it is compiled, the same run also measures ``router.py`` itself (loaded
under another module name) on the same world and events, and checks that both
make the same offers. The baseline is ``LinearScanRouter`` of the measured
module (same rules, full scans) taking over the same state (same seed) and fed
the same events; its decisions are checked to be identical to the indexed
router's over the same events.
Run: ``.venv/bin/python bench/routing.py``.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
import timeit
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ccengine.acd import ROUTER, native
from ccengine.acd import router as imported
from ccengine.acd.router import QueuePolicy, Reservation, Router

N_AGENTS = 10_000
N_SKILLS = 50
SKILLS_PER_AGENT = 4
N_QUEUES = 120
TARGET_WAITING = 10_000
CLOCK = time.perf_counter_ns  # --cpu-clock: time.thread_time_ns (robust on a shared machine)
TICK_EVENTS = 100  # events per simulated second (0.01 s apart): the engine ticks once a second
LANGUAGES = [f"s{i:02d}" for i in range(5)]  # the first five skills act as languages


class Bag:
    """A set with O(1) random choice, for picking who acts next."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.where: dict[str, int] = {}

    def add(self, item: str) -> None:
        if item not in self.where:
            self.where[item] = len(self.items)
            self.items.append(item)

    def discard(self, item: str) -> None:
        index = self.where.pop(item, None)
        if index is None:
            return
        last = self.items.pop()
        if index < len(self.items):
            self.items[index] = last
            self.where[last] = index

    def choice(self, rng: random.Random) -> str:
        return self.items[rng.randrange(len(self.items))]

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class World:
    """What the driver (playing the PBX) knows, to choose the next event."""

    router: Router
    waiting: Bag = field(default_factory=Bag)
    busy: Bag = field(default_factory=Bag)  # agents on a call
    wrap: Bag = field(default_factory=Bag)
    not_ready: Bag = field(default_factory=Bag)
    call_of: dict[str, str] = field(default_factory=dict)
    last_agent: dict[str, str] = field(default_factory=dict)  # customer -> agent
    next_id: int = 0
    now: float = 0.0


def build_definitions(rng: random.Random, rt: ModuleType) -> tuple[list[QueuePolicy], list[tuple[str, dict[str, int]]]]:
    skills = [f"s{i:02d}" for i in range(N_SKILLS)]
    queues = []
    for q in range(N_QUEUES):
        count = 1 if rng.random() < 0.7 else 2
        need = {s: rng.randint(1, 5) for s in rng.sample(skills[5:], count)}
        queues.append(rt.QueuePolicy(
            id=f"q{q:03d}", required_skills=need, priority=rng.choice([0, 10, 20, 50]),
            strategy=rng.choice(["best_skill", "longest_idle", "least_occupancy"]),
            aging_per_second=rng.choice([0.0, 1 / 60, 2 / 60, 5 / 60]),
            affinity_window=rng.choice([0.0, 0.0, 3600.0]),
            wrap_up=rng.choice([0.0, 20.0])))
    agents = []
    for a in range(N_AGENTS):
        picked = [rng.choice(LANGUAGES), *rng.sample(skills[5:], SKILLS_PER_AGENT - 1)]
        agents.append((f"a{a:05d}", {s: rng.randint(1, 10) for s in picked}))
    return queues, agents


def contact_terms(rng: random.Random, queue: QueuePolicy) -> tuple[int, dict[str, int]]:
    skills = dict(queue.required_skills)
    if rng.random() < 0.33:  # a customer rule adds the caller's language
        skills[rng.choice(LANGUAGES)] = 6  # rules use one level per language
    boost = 30 if rng.random() < 0.05 else 0  # VIP / vulnerable
    return queue.priority + boost, skills


def took(world: World, offer: Reservation | None) -> None:
    """Book-keep an offer the router made: the contact no longer waits."""
    if offer is not None:
        world.waiting.discard(offer.contact_id)


def prefill(world: World, rng: random.Random, queues: list[QueuePolicy], weights: list[float]) -> None:
    router = world.router
    for agent_id in list(router._agents):
        router.login(agent_id, 0.0)
        if rng.random() < 0.05:
            world.not_ready.add(agent_id)
        else:
            router.set_ready(agent_id, 0.0)
    while len(world.waiting) < TARGET_WAITING:
        arrive(world, rng, queues, weights, answer=True)


def arrive(world: World, rng: random.Random, queues: list[QueuePolicy], weights: list[float],
           answer: bool) -> Reservation | None:
    queue = rng.choices(queues, weights)[0]
    priority, skills = contact_terms(rng, queue)
    contact_id = f"c{world.next_id}"
    world.next_id += 1
    customer = f"k{rng.randrange(50_000)}"
    last = world.last_agent.get(customer)
    offer = world.router.contact_arrives(contact_id, queue.id, world.now, priority=priority, skills=skills,
                                         last_agent=last, last_agent_at=world.now - 600 if last else None)
    world.waiting.add(contact_id)
    took(world, offer)
    if offer is not None and answer:
        world.router.confirm(offer.id, world.now)
        world.busy.add(offer.agent_id)
        world.call_of[offer.agent_id] = offer.contact_id
        world.last_agent[customer] = offer.agent_id
    return offer


def run(world: World, events: int, seed: int, queues: list[QueuePolicy], weights: list[float],
        record: list[tuple[str, str]] | None = None,
        upkeep: list[int] | None = None) -> tuple[list[int], int, int]:
    """Play ``events`` random events; return decision latencies (ns), number
    of decisions and total ns spent inside router calls, housekeeping
    (``Router.maintain``, run once per simulated second as the engine's ticker
    does, its durations appended to ``upkeep``) included."""
    rng = random.Random(seed)
    router = world.router
    latencies: list[int] = []
    total = 0
    clock = CLOCK

    def handle(offer: Reservation | None) -> None:
        # the agent's phone rings; 3 % ring-no-answer, the rest answer
        nonlocal total
        if offer is None:
            return
        took(world, offer)
        if record is not None:
            record.append((offer.contact_id, offer.agent_id))
        if rng.random() < 0.03:
            t0 = clock()
            offers = router.release(offer.id, world.now, rona=True)
            total += clock() - t0
            world.waiting.add(offer.contact_id)
            world.not_ready.add(offer.agent_id)
            for again in offers:
                handle(again)
            return
        t0 = clock()
        router.confirm(offer.id, world.now)
        total += clock() - t0
        world.busy.add(offer.agent_id)
        world.call_of[offer.agent_id] = offer.contact_id

    for i in range(events):
        world.now += 0.01
        if i % TICK_EVENTS == 0:
            t0 = clock()
            router.maintain()
            dt = clock() - t0
            total += dt
            if upkeep is not None:
                upkeep.append(dt)
        roll = rng.random()
        pressure = 0.05 if len(world.waiting) < TARGET_WAITING else -0.05
        if roll < 0.40 + pressure:
            queue = rng.choices(queues, weights)[0]
            priority, skills = contact_terms(rng, queue)
            contact_id = f"c{world.next_id}"
            world.next_id += 1
            t0 = clock()
            offer = router.contact_arrives(contact_id, queue.id, world.now, priority=priority, skills=skills)
            dt = clock() - t0
            world.waiting.add(contact_id)
            latencies.append(dt)
            total += dt
            handle(offer)
        elif roll < 0.80 and len(world.busy):
            agent_id = world.busy.choice(rng)
            world.busy.discard(agent_id)
            contact_id = world.call_of.pop(agent_id)
            t0 = clock()
            offer = router.finish(agent_id, contact_id, world.now)
            dt = clock() - t0
            latencies.append(dt)
            total += dt
            if router.agent_state(agent_id)[0].value == "wrap_up":
                world.wrap.add(agent_id)
            handle(offer)
        elif roll < 0.88 and len(world.wrap):
            agent_id = world.wrap.choice(rng)
            world.wrap.discard(agent_id)
            t0 = clock()
            offer = router.set_ready(agent_id, world.now)
            dt = clock() - t0
            latencies.append(dt)
            total += dt
            handle(offer)
        elif roll < 0.92 and len(world.not_ready):
            agent_id = world.not_ready.choice(rng)
            world.not_ready.discard(agent_id)
            t0 = clock()
            offer = router.set_ready(agent_id, world.now)
            dt = clock() - t0
            latencies.append(dt)
            total += dt
            handle(offer)
        elif roll < 0.95 and len(world.busy):
            # an agent on a call asks to go not ready afterwards (break)
            agent_id = world.busy.choice(rng)
            t0 = clock()
            router.set_not_ready(agent_id, world.now, "break")
            total += clock() - t0
            world.busy.discard(agent_id)
            world.not_ready.add(agent_id)
            contact_id = world.call_of.pop(agent_id)
            t0 = clock()
            router.finish(agent_id, contact_id, world.now)
            total += clock() - t0
        elif len(world.waiting):
            contact_id = world.waiting.choice(rng)
            t0 = clock()
            offer = router.abandon(contact_id, world.now)
            total += clock() - t0
            world.waiting.discard(contact_id)
            handle(offer)
    return latencies, len(latencies), total


def pct(sorted_ns: list[int], p: float) -> float:
    index = min(len(sorted_ns) - 1, round(p / 100 * (len(sorted_ns) - 1)))
    return sorted_ns[index] / 1000.0


def report(name: str, latencies: list[int], decisions: int, total_ns: int) -> tuple[float, float, float]:
    data = sorted(latencies)
    p50, p99, p999 = pct(data, 50), pct(data, 99), pct(data, 99.9)
    rate = decisions / (total_ns / 1e9)
    mean = statistics.fmean(data) / 1000
    print(f"{name:<22} decisions={decisions:>7}  p50={p50:8.1f} µs  p99={p99:8.1f} µs  "
          f"p99.9={p999:8.1f} µs  max={data[-1] / 1000:8.1f} µs  mean={mean:7.1f} µs  "
          f"{rate:>10,.0f} decisions/s")
    return p99, rate, statistics.median(data) / 1000.0


def build_world(seed: int, rt: ModuleType, linear: bool = False) -> tuple[World, list[QueuePolicy], list[float],
                                                                        float]:
    """Same seed, same world, with the router module ``rt``. The prefill always
    runs on the indexed router (a linear one would need minutes); with ``linear``
    a ``LinearScanRouter`` then takes over the state and the decisions."""
    rng = random.Random(seed)
    queues, agents = build_definitions(rng, rt)
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(queues))]  # a few busy queues, a long tail
    router = rt.Router()
    for queue in queues:
        router.define_queue(queue)
    for agent_id, skills in agents:
        router.add_agent(agent_id, skills)
    world = World(router)
    t0 = time.perf_counter()
    prefill(world, rng, queues, weights)
    if linear:
        world.router = rt.LinearScanRouter.taking_over(router)
    return world, queues, weights, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=300_000, help="events for the indexed router")
    parser.add_argument("--baseline-events", type=int, default=600, help="events for the linear baseline")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cpu-clock", action="store_true",
                        help="time router calls in thread CPU time, not wall time: on a busy machine this "
                             "leaves out the time other processes hold the core")
    args = parser.parse_args()
    global CLOCK
    if args.cpu_clock:
        CLOCK = time.thread_time_ns
    print(f"clock: {'thread CPU time' if args.cpu_clock else 'wall (perf_counter)'}")

    # a fixed CPython workload, so figures from different machines can be compared
    calibration = timeit.repeat("sorted(d.items())", "d = {'b': 2, 'a': 1, 'c': 3}", number=200_000, repeat=3)
    print(f"calibration: sorted() of a 3-item dict {min(calibration) / 200_000 * 1e9:.0f} ns "
          f"(python {sys.version.split()[0]})")
    print(f"router measured: {ROUTER.note} ({Path(imported.__file__ or '').name})")
    pure = native.load_source("ccengine.acd._router_source") if imported.COMPILED else None
    world, queues, weights, setup = build_world(args.seed, imported)
    print(f"setup: {N_AGENTS} agents, {N_SKILLS} skills ({SKILLS_PER_AGENT}/agent), {len(queues)} queues, "
          f"{len(world.router._groups)} skill signatures, {len(world.waiting)} waiting, "
          f"{len(world.busy)} agents busy, {len(world.not_ready)} not ready ({setup:.1f} s)")
    pure_world = build_world(args.seed, pure)[0] if pure is not None else None
    baseline_world = build_world(args.seed, imported, linear=True)[0]

    gc.collect()
    gc.freeze()  # the long-lived state is not rescanned by every collection
    name = "Router (compiled)" if imported.COMPILED else "Router (pure Python)"
    upkeep: list[int] = []
    pairs: list[tuple[str, str]] = []
    t0 = time.perf_counter()
    lat, decisions, total = run(world, args.events, args.seed + 1, queues, weights, pairs, upkeep)
    wall = time.perf_counter() - t0
    print(f"indexed run: {args.events} events in {wall:.1f} s wall, {len(world.waiting)} still waiting")
    p99, rate, median = report(name, lat, decisions, total)
    upkeep.sort()
    print(f"  housekeeping (maintain(), once per simulated second, outside decisions, inside decisions/s): "
          f"{len(upkeep)} runs, p50 {pct(upkeep, 50):.0f} µs, max {upkeep[-1] / 1000:.0f} µs")
    del world

    pure_same: bool | None = None
    if pure_world is not None:
        pure_pairs: list[tuple[str, str]] = []
        t0 = time.perf_counter()
        plat, pdec, ptotal = run(pure_world, args.events, args.seed + 1, queues, weights, pure_pairs)
        print(f"pure-Python run: {args.events} events in {time.perf_counter() - t0:.1f} s wall")
        pp99, prate, pmedian = report("Router (pure Python)", plat, pdec, ptotal)
        pure_same = pure_pairs == pairs
        print(f"same decisions compiled and pure over {len(pairs)} offers: {'yes' if pure_same else 'NO'}")
        print(f"compiled vs pure: median latency {pmedian / median:.2f}x, p99 {pp99 / p99:.2f}x, "
              f"throughput {rate / prate:.2f}x")
        del pure_world

    baseline_pairs: list[tuple[str, str]] = []
    t0 = time.perf_counter()
    blat, bdec, btotal = run(baseline_world, args.baseline_events, args.seed + 1, queues, weights,
                             baseline_pairs)
    print(f"baseline run: {args.baseline_events} events in {time.perf_counter() - t0:.1f} s wall")
    _, brate, bmedian = report(f"LinearScan ({'compiled' if imported.COMPILED else 'pure'})", blat, bdec, btotal)
    same = pairs[:len(baseline_pairs)] == baseline_pairs  # same seed: the same first events
    print(f"same decisions as the baseline over its {len(baseline_pairs)} offers: {'yes' if same else 'NO'}")
    print(f"indexed vs linear scan: median latency {bmedian / median:,.0f}x, throughput {rate / brate:,.0f}x")
    ok = p99 <= 50.0 and rate >= 50_000 and same and pure_same is not False
    print(f"targets for {name} (p99 <= 50 µs, >= 50,000 decisions/s, identical decisions): "
          f"{'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
