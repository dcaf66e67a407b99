"""Discrete-event model of an outbound campaign, driven by the real pacing code.

The simulator owns the world (who answers, when, how long they talk); the
strategy only ever sees what a live dialer would see -- a
:class:`PacingSnapshot` and :class:`Estimates` learned from completed calls --
and learns the outcome of every live answer. That keeps the benchmark honest:
the pacer cannot peek at the sampled ring or talk times.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .abandonment import (
    FCC_30_DAY,
    AbandonDefinition,
    AmdVerdict,
    ClockStart,
    LiveAnswer,
    abandonment_rate,
    period_rates,
    worst_window_rate,
)
from .estimators import Estimates
from .pacing import PacingSnapshot, Strategy
from .scenario import OutcomeName, Scenario

# event kinds
_TICK, _RESOLVE, _VERDICT, _EXPIRE, _TALK_END, _WRAP_END, _RELEASE = range(7)
# true nature of a dialed number once it picks up
_HUMAN, _MACHINE, _NOBODY = range(3)


@dataclass(slots=True)
class _Call:
    dial_ts: float
    outcome: str
    nature: int
    ring_s: float
    answer_ts: float = math.nan
    greeting_end_ts: float | None = None
    verdict: AmdVerdict | None = None
    deadline: float = math.inf
    waiting: bool = False


@dataclass
class SimResult:
    """Metrics of one simulated day for one strategy and seed."""

    strategy: str
    seed: int
    occupancy: float
    talk_fraction: float
    talk_min_per_agent_hour: float
    dials_per_agent_hour: float
    connects_per_agent_hour: float
    peak_lines: int
    abandon: dict[str, float]
    worst_hour: float
    buckets_over_cap: float
    live_answers: int
    abandoned: int
    records: list[LiveAnswer] = field(default_factory=list, repr=False)


def definitions_for(scenario: Scenario) -> list[AbandonDefinition]:
    """FCC 30-day, Ofcom 24 h (with the AMD false-positive estimate), VICIdial 'today'."""
    cap = scenario.pacing.cap
    grace = scenario.grace
    fp = 0.0
    if scenario.amd is not None and scenario.amd.enabled:
        assumed = scenario.amd.assumed_false_positive_rate
        fp = scenario.amd.false_positive_rate if assumed is None else assumed
    return [
        AbandonDefinition("fcc-30d", 30 * 86400.0, grace, ClockStart.GREETING_END, cap),
        AbandonDefinition("ofcom-24h", 86400.0, grace, ClockStart.GREETING_END, cap,
                          count_amd_false_positives=fp > 0, amd_false_positive_rate=fp),
        AbandonDefinition("vicidial-today", 86400.0, grace, ClockStart.ANSWER, cap),
    ]


class Simulation:
    """One campaign day: ``Simulation(scenario, strategy, seed).run()``."""

    def __init__(self, scenario: Scenario, strategy: Strategy, seed: int,
                 estimates: Estimates | None = None,
                 on_decision: Callable[[PacingSnapshot, int], None] | None = None) -> None:
        self.sc = scenario
        self.strategy = strategy
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.est = estimates if estimates is not None else Estimates()
        self.on_decision = on_decision
        self._events: list[tuple[float, int, int, int]] = []
        self._seq = 0
        self.now = 0.0
        n = scenario.agents
        self._idle: list[int] = list(range(n))
        self._talk_start: dict[int, float] = {}
        self._wrap_start: dict[int, float] = {}
        self._busy_start = [0.0] * n
        self._agent_call: list[int] = [-1] * n
        self._calls: dict[int, _Call] = {}
        self._ringing: dict[int, float] = {}
        self._waiting: deque[int] = deque()
        self._n_waiting = 0
        self._next_call = 0
        self.lines = 0
        self.peak_lines = 0
        self.records: list[LiveAnswer] = []
        self._busy_time = 0.0
        self._talk_time = 0.0
        self._dials_measured = 0
        self._connects_measured = 0
        self._names: list[OutcomeName] = []
        self._cum: list[float] = []
        self._change_times = sorted({c.at for c in scenario.changes})
        self._next_change = 0
        self._set_shares(0.0)

    # -- plumbing -------------------------------------------------------------
    def _push(self, t: float, kind: int, ref: int) -> None:
        self._seq += 1
        heapq.heappush(self._events, (t, self._seq, kind, ref))

    def _set_shares(self, t: float) -> None:
        shares = self.sc.shares_at(t)
        self._names = [k for k in self.sc.outcomes if k in shares]
        self._cum = list(np.cumsum([shares[k] for k in self._names]))

    def _measured(self, start: float, end: float) -> float:
        """Length of [start, end] inside the measurement span (after warm-up)."""
        return max(0.0, min(end, self.sc.duration) - max(start, self.sc.warmup))

    # -- dialing ---------------------------------------------------------------
    def _dial(self) -> None:
        t = self.now
        while self._next_change < len(self._change_times) and self._change_times[self._next_change] <= t:
            self._next_change += 1
            self._set_shares(t)
        u = float(self.rng.random()) * self._cum[-1]
        name = self._names[min(bisect.bisect_right(self._cum, u), len(self._names) - 1)]
        outcome = self.sc.outcomes[name]
        nature = _HUMAN if name == "live" else _MACHINE if name == "machine" else _NOBODY
        ring = outcome.ring.sample(self.rng)
        cid = self._next_call
        self._next_call += 1
        self._calls[cid] = _Call(t, name, nature, ring)
        self._ringing[cid] = t
        self.lines += 1
        self.peak_lines = max(self.peak_lines, self.lines)
        if t >= self.sc.warmup:
            self._dials_measured += 1
        self._push(t + ring, _RESOLVE, cid)

    def _snapshot(self) -> PacingSnapshot:
        now = self.now
        talk = now - np.fromiter(self._talk_start.values(), np.float64, len(self._talk_start))
        wrap = now - np.fromiter(self._wrap_start.values(), np.float64, len(self._wrap_start))
        ring = now - np.fromiter(self._ringing.values(), np.float64, len(self._ringing))
        return PacingSnapshot(now, len(self._idle), talk, wrap, ring, self._n_waiting,
                              self.lines, self.sc.max_lines)

    def _pace(self) -> None:
        if self.now >= self.sc.duration:
            return
        snap = self._snapshot()
        n = self.strategy.decide(snap, self.est)
        if self.on_decision is not None:
            self.on_decision(snap, n)
        for _ in range(n):
            self._dial()

    # -- call life cycle ---------------------------------------------------------
    def _resolve(self, cid: int) -> None:
        call = self._calls[cid]
        t = self.now
        if call.nature == _NOBODY:
            del self._ringing[cid]
            del self._calls[cid]
            self.lines -= 1
            self.est.ring.observe(False, t - call.dial_ts)
            return
        call.answer_ts = t
        amd = self.sc.amd
        if amd is None or not amd.enabled:
            # without AMD the dialer learns nothing until it is bridged
            call.greeting_end_ts = t
            self._route(cid, call)
            return
        greeting = amd.greeting.sample(self.rng)
        call.greeting_end_ts = t + greeting
        if call.nature == _HUMAN:
            false_positive = self.rng.random() < amd.false_positive_rate
            call.verdict = AmdVerdict.MACHINE if false_positive else AmdVerdict.HUMAN
            self._push(t + greeting + amd.human_verdict_after_greeting, _VERDICT, cid)
        else:
            false_negative = self.rng.random() < amd.false_negative_rate
            call.verdict = AmdVerdict.HUMAN if false_negative else AmdVerdict.MACHINE
            delay = (greeting + amd.human_verdict_after_greeting if false_negative
                     else amd.machine_verdict.sample(self.rng))
            self._push(t + delay, _VERDICT, cid)

    def _verdict(self, cid: int) -> None:
        call = self._calls[cid]
        if call.verdict is AmdVerdict.HUMAN:
            self._route(cid, call)
            return
        del self._ringing[cid]
        self.est.ring.observe(False, self.now - call.dial_ts)
        if call.nature == _HUMAN:  # false positive: a person hung up on
            self.records.append(LiveAnswer(call.answer_ts, call.greeting_end_ts, None, True,
                                           AmdVerdict.MACHINE, str(cid)))
        del self._calls[cid]
        self._push(self.now + self.sc.abandon_message, _RELEASE, cid)

    def _route(self, cid: int, call: _Call) -> None:
        """The dialer now believes a person is on the line: bridge or queue it."""
        del self._ringing[cid]
        self.est.ring.observe(True, self.now - call.dial_ts)
        if self._idle:
            self._connect(self._idle.pop(), cid, call)
            return
        assert call.greeting_end_ts is not None
        call.deadline = call.greeting_end_ts + self.sc.grace
        call.waiting = True
        self._waiting.append(cid)
        self._n_waiting += 1
        self._push(call.deadline, _EXPIRE, cid)

    def _connect(self, agent: int, cid: int, call: _Call) -> None:
        t = self.now
        if call.waiting:
            call.waiting = False
            self._n_waiting -= 1
        if call.nature == _HUMAN:
            self.records.append(LiveAnswer(call.answer_ts, call.greeting_end_ts, t, False,
                                           call.verdict, str(cid)))
            talk = self.sc.talk.sample(self.rng)
            if t >= self.sc.warmup:
                self._connects_measured += 1
        else:
            talk = self.sc.amd.machine_agent_time if self.sc.amd is not None else 6.0
        self.strategy.on_live_answer(t, False)
        self._agent_call[agent] = cid
        self._talk_start[agent] = t
        self._busy_start[agent] = t
        self._push(t + talk, _TALK_END, agent)

    def _expire(self, cid: int) -> None:
        call = self._calls.get(cid)
        if call is None or not call.waiting:
            return
        call.waiting = False
        self._n_waiting -= 1
        if call.nature == _HUMAN:
            self.records.append(LiveAnswer(call.answer_ts, call.greeting_end_ts, None, True,
                                           call.verdict, str(cid)))
        self.strategy.on_live_answer(self.now, True)
        del self._calls[cid]
        self._push(self.now + self.sc.abandon_message, _RELEASE, cid)

    def _talk_end(self, agent: int) -> None:
        t = self.now
        start = self._talk_start.pop(agent)
        self._talk_time += self._measured(start, t)
        self.est.service.observe_talk(t - start)
        self._calls.pop(self._agent_call[agent], None)
        self._agent_call[agent] = -1
        self.lines -= 1
        self._wrap_start[agent] = t
        self._push(t + self.sc.wrap.sample(self.rng), _WRAP_END, agent)

    def _wrap_end(self, agent: int) -> None:
        t = self.now
        self.est.service.observe_wrap(t - self._wrap_start.pop(agent))
        self._busy_time += self._measured(self._busy_start[agent], t)
        while self._waiting:
            cid = self._waiting.popleft()
            call = self._calls.get(cid)
            if call is not None and call.waiting:
                self._connect(agent, cid, call)
                return
        self._idle.append(agent)

    # -- main loop ---------------------------------------------------------------
    def run(self) -> SimResult:
        tick = self.strategy.tick_s
        if tick is not None:
            self._push(0.0, _TICK, 0)
        self._pace()
        events = self._events
        end = self.sc.duration
        while events:
            t, _, kind, ref = heapq.heappop(events)
            if t > end:
                break
            self.now = t
            if kind == _TICK:
                assert tick is not None
                self._push(t + tick, _TICK, 0)
                self._pace()
            elif kind == _RESOLVE:
                self._resolve(ref)
                if self.strategy.on_call_events or tick is None:
                    self._pace()
            elif kind == _VERDICT:
                self._verdict(ref)
                if self.strategy.on_call_events or tick is None:
                    self._pace()
            elif kind == _EXPIRE:
                self._expire(ref)
            elif kind == _TALK_END:
                self._talk_end(ref)
            elif kind == _WRAP_END:
                self._wrap_end(ref)
                if self.strategy.on_call_events or tick is None:
                    self._pace()
            else:
                self.lines -= 1
        self.now = end
        for agent, start in self._talk_start.items():
            self._talk_time += self._measured(start, end)
            self._busy_time += self._measured(self._busy_start[agent], end)
        for agent in self._wrap_start:
            self._busy_time += self._measured(self._busy_start[agent], end)
        return self._result()

    def _result(self) -> SimResult:
        sc = self.sc
        agent_hours = sc.agents * (sc.duration - sc.warmup) / 3600.0
        agent_seconds = agent_hours * 3600.0
        defs = definitions_for(sc)
        abandon = {d.name: abandonment_rate(self.records, d).rate for d in defs}
        fcc = defs[0]
        quarter = AbandonDefinition("15min", 900.0, sc.grace, ClockStart.GREETING_END)
        buckets = period_rates(self.records, quarter)
        over = sum(1 for r in buckets.values() if r.rate > sc.pacing.cap)
        live = [r for r in self.records if fcc.counts_as_live(r)]
        return SimResult(
            strategy=self.strategy.name,
            seed=self.seed,
            occupancy=self._busy_time / agent_seconds,
            talk_fraction=self._talk_time / agent_seconds,
            talk_min_per_agent_hour=self._talk_time / 60.0 / agent_hours,
            dials_per_agent_hour=self._dials_measured / agent_hours,
            connects_per_agent_hour=self._connects_measured / agent_hours,
            peak_lines=self.peak_lines,
            abandon=abandon,
            worst_hour=worst_window_rate(self.records, fcc, 3600.0, 0.0, sc.duration),
            buckets_over_cap=over / max(len(buckets), 1),
            live_answers=len(live),
            abandoned=sum(1 for r in live if fcc.is_abandoned(r)),
            records=self.records,
        )


def simulate(scenario: Scenario, strategy: Strategy, seed: int) -> SimResult:
    """Run one simulated day."""
    return Simulation(scenario, strategy, seed).run()


__all__ = ["FCC_30_DAY", "SimResult", "Simulation", "definitions_for", "simulate"]
