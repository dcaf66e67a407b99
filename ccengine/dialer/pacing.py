"""Pacing: how many outbound calls to launch *now*.

Pure domain code. A strategy sees a :class:`PacingSnapshot` (agent states
with how long they have been in them, the ring age of every call in flight,
answered calls waiting for an agent) plus the learned :class:`Estimates`, and
returns a non-negative count. It is told the outcome of every live answer
(``on_live_answer``) so closed-loop strategies can steer on measured
abandonment. The live campaign runner and the simulator drive the very same
objects, so what is benchmarked is what runs.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .abandonment import RollingAbandonment
from .estimators import Estimates

FloatArray = npt.NDArray[np.float64]
Ages = Sequence[float] | FloatArray


@dataclass(frozen=True, slots=True)
class PacingSnapshot:
    """What the dialer knows at one instant.

    ``talk_ages``/``wrap_ages`` hold, per agent in that state, the seconds
    spent in it so far; ``ring_ages`` holds, per outbound call not yet
    resolved, the seconds since it was launched (for AMD campaigns a call
    stays here until the human verdict). Paused agents are simply absent.
    """

    now: float
    idle_agents: int
    talk_ages: Ages = ()
    wrap_ages: Ages = ()
    ring_ages: Ages = ()
    waiting_calls: int = 0
    lines_in_use: int = 0
    max_lines: int | None = None

    @property
    def logged_in(self) -> int:
        return self.idle_agents + len(self.talk_ages) + len(self.wrap_ages)

    @property
    def in_flight(self) -> int:
        """Calls that may still need an agent: ringing or answered and waiting."""
        return len(self.ring_ages) + self.waiting_calls


def _bounded(n: int, snap: PacingSnapshot) -> int:
    """Common safety rules every strategy obeys, whatever its arithmetic says."""
    if snap.logged_in <= 0:
        return 0
    if snap.max_lines is not None:
        n = min(n, snap.max_lines - snap.lines_in_use)
    return max(n, 0)


class Strategy:
    """Base class: open-loop, decisions only on events (no periodic tick)."""

    name = "strategy"
    #: seconds between re-evaluations with no event; ``None`` means events only
    tick_s: float | None = None
    #: re-evaluate on every call resolution and freed agent too (cheap rules
    #: want this; the predictive forecast anticipates them, so its tick
    #: suffices). Read before every event, so a strategy may flip it.
    on_call_events = True
    #: the last decision was progressive pacing (one call per free agent) although the strategy
    #: is not: a dialer whose agents are shared (blending) then holds the agent for each call
    paces_progressively = False

    def decide(self, snap: PacingSnapshot, est: Estimates) -> int:
        raise NotImplementedError

    def on_live_answer(self, ts: float, abandoned: bool) -> None:
        """Outcome of one live answer (abandoned or connected in time)."""


class Progressive(Strategy):
    """One call per free agent, the agent held for it: never abandons."""

    name = "progressive"

    def decide(self, snap: PacingSnapshot, est: Estimates) -> int:
        return _bounded(snap.idle_agents - snap.in_flight, snap)


class FixedRatio(Strategy):
    """'Power' dialing: ``ratio`` lines per idle agent. Abandonment is uncontrolled."""

    def __init__(self, ratio: float) -> None:
        if ratio < 1.0:
            raise ValueError("ratio must be >= 1")
        self.ratio = ratio
        self.name = f"ratio:{ratio:g}"

    def decide(self, snap: PacingSnapshot, est: Estimates) -> int:
        return _bounded(math.floor(self.ratio * snap.idle_agents + 1e-9) - snap.in_flight, snap)


class VicidialAdaptive(Strategy):
    """Emulation of VICIdial's adaptive dial level (ADAPT_AVERAGE), as a baseline.

    Our reading of ``AST_VDadapt.pl``: once a second sample ready agents,
    waiting calls and agents; every 15 s move the level by
    ``diff / avg_agents`` with ``diff = avg_ready - avg_waiting``, clamp to
    [1, max_level]; halve it when the last minute dropped over half of more
    than 20 calls, or when today's drop rate is over the cap. Target lines =
    level x (ready + in-call agents), minus calls already live.
    """

    tick_s = 1.0

    def __init__(self, cap: float = 0.03, max_level: float = 3.0, intensity: float = 1.0,
                 diff_target: float = 0.0, adapt_every_s: float = 15.0) -> None:
        self.name = "vicidial"
        self.cap = cap
        self.max_level = max_level
        self.intensity = intensity
        self.diff_target = diff_target
        self.adapt_every_s = adapt_every_s
        self.level = 1.0
        self._samples: deque[tuple[int, int, int]] = deque(maxlen=15)
        self._last_sample = -math.inf
        self._last_adapt = -math.inf
        self._minute: deque[tuple[float, bool]] = deque()
        self._today_answers = 0
        self._today_drops = 0

    def on_live_answer(self, ts: float, abandoned: bool) -> None:
        self._minute.append((ts, abandoned))
        self._today_answers += 1
        self._today_drops += abandoned

    def _adapt(self, now: float) -> None:
        while self._minute and self._minute[0][0] < now - 60.0:
            self._minute.popleft()
        if self._samples:
            ready = sum(s[0] for s in self._samples) / len(self._samples)
            waiting = sum(s[1] for s in self._samples) / len(self._samples)
            agents = sum(s[2] for s in self._samples) / len(self._samples)
            if agents > 0:
                diff = ready - waiting + self.diff_target
                self.level *= 1.0 + self.intensity * diff / agents
        minute_calls = len(self._minute)
        minute_drops = sum(1 for _, d in self._minute if d)
        if minute_calls > 20 and minute_drops > 0.5 * minute_calls:
            self.level /= 2.0
        if self._today_answers > 50 and self._today_drops > self.cap * self._today_answers:
            self.level /= 2.0
        self.level = min(max(self.level, 1.0), self.max_level)

    def decide(self, snap: PacingSnapshot, est: Estimates) -> int:
        now = snap.now
        if now - self._last_sample >= 1.0:
            self._last_sample = now
            self._samples.append((snap.idle_agents, snap.waiting_calls, snap.logged_in))
        if now - self._last_adapt >= self.adapt_every_s:
            self._last_adapt = now
            self._adapt(now)
        in_call = len(snap.talk_ages)
        target = math.floor(self.level * (snap.idle_agents + in_call) + 1e-9)
        return _bounded(target - snap.in_flight - in_call, snap)


def _normal_cdf_exact(x: FloatArray) -> FloatArray:
    """Phi(x) via the Abramowitz-Stegun 7.1.26 erf (|error| < 1.5e-7), numpy only."""
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
                + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    out: FloatArray = 0.5 * (1.0 + np.sign(x) * erf)
    return out


_CDF_Z = np.linspace(-8.0, 8.0, 3201)
_CDF_TABLE = _normal_cdf_exact(_CDF_Z)


def _normal_cdf(x: FloatArray) -> FloatArray:
    """Tabulated Phi: one ``np.interp`` call, since pacing runs every second."""
    out: FloatArray = np.interp(x, _CDF_Z, _CDF_TABLE)
    return out


@dataclass
class PIController:
    """PI loop on log(threshold), driven by measured vs. target abandonment.

    Working in the log domain makes the gain act on *relative* error, so
    the same tuning works at a 1% or a 3% setpoint. ``guard`` watches the
    trailing hour: if it gets close to the cap, the threshold is pushed down
    hard regardless of the integral, which clips the worst rolling hour.
    """

    target: float
    cap: float = 0.03
    kp: float = 0.6
    ki: float = 0.004
    min_answers: int = 60
    guard: float = 0.026
    guard_gain: float = 6.0
    tracker: RollingAbandonment = field(default_factory=lambda: RollingAbandonment(300, 3600.0))
    integral: float = 0.0
    _u_max: float = 3.0
    _u_min: float = -5.0

    def record(self, ts: float, abandoned: bool) -> None:
        self.tracker.record(ts, abandoned)
        if self.tracker.recent_count >= self.min_answers:
            self.integral += self.ki * self._error()
            self.integral = min(max(self.integral, self._u_min), self._u_max)

    def _error(self) -> float:
        measured = self.tracker.recent_abandoned / max(self.tracker.recent_count, 1)
        return (self.target - measured) / self.target

    def output(self, now: float) -> float:
        """Multiplier for the base threshold."""
        if self.tracker.recent_count < self.min_answers:
            return 1.0
        u = self.kp * self._error() + self.integral
        answers, abandoned = self.tracker.window_counts(now)
        if answers >= self.min_answers:
            hour_rate = abandoned / answers
            if hour_rate > self.guard:
                u -= self.guard_gain * (hour_rate - self.guard) / (self.cap - self.guard)
        return math.exp(min(max(u, self._u_min), self._u_max))


class Predictive(Strategy):
    """Predictive pacing: dial while the *marginal* call is unlikely to be abandoned.

    For a horizon grid s = 0..H seconds it forecasts, with means and
    variances of sums of Bernoullis:

    * demand D(s): live answers by now+s from calls already ringing, each
      with a probability conditional on its ring age, plus answered calls
      already waiting;
    * supply F(s+grace): idle agents plus agents whose wrap-up (known age)
      or talk+wrap (learned distribution, conditional on talk age) ends by
      then.

    The n-th new call, answered at a time drawn from the live ring-time
    distribution, is abandoned (or pushes a later answer into abandonment)
    if demand including it overtakes supply at that time or later. The
    largest n whose marginal probability stays under a threshold theta is
    dialed; a PI loop moves theta so measured abandonment tracks ``target``.
    A marginal rule (rather than an average over the whole pipeline) spends
    the abandonment budget where it buys the most agent time. Below
    ``min_agents`` logged-in agents the variance is too large to predict
    safely, so it degrades to progressive; so it does until ``warmup``
    call outcomes have been seen, because the priors may be far from this
    list's answer rate (a list answering at 60% against a 25% prior would
    otherwise open with a burst of abandons).
    """

    tick_s = 1.0
    on_call_events = False

    def __init__(self, target: float = 0.02, cap: float = 0.03, min_agents: int = 11,
                 grace_s: float = 2.0, horizon_s: float = 45.0, closed_loop: bool = True,
                 theta: float | None = None, max_ratio: float = 3.0,
                 controller: PIController | None = None, tick_s: float = 2.0,
                 horizon_step_s: float = 1.0, warmup: int = 0) -> None:
        if not 0 < target < 1:
            raise ValueError("target must be in (0, 1)")
        self.name = f"predictive:{target:g}" if closed_loop else f"predictive-open:{target:g}"
        self.target = target
        self.min_agents = min_agents
        self.grace_s = grace_s
        self.tick_s = tick_s
        self.horizons = np.arange(0.0, horizon_s + horizon_step_s, horizon_step_s)
        self.theta_base = target if theta is None else theta
        self.max_ratio = max_ratio
        self.warmup = warmup
        self.controller = controller if controller is not None else PIController(target, cap)
        self.closed_loop = closed_loop
        self._ring_version = -1
        self._service_version = -1
        self._chunks: dict[tuple[int, int], tuple[FloatArray, FloatArray]] = {}
        self._ring_bin = 0.25
        self._ring_ages = np.arange(0.0, 120.0, self._ring_bin)
        self._talk_ages = np.arange(0.0, 1200.0, 1.0)
        self._wrap_bin = 0.5
        self._wrap_ages = np.arange(0.0, 300.0, self._wrap_bin)
        self._ring_table = np.zeros((0, 0))
        self._talk_table = np.zeros((0, 0))
        self._wrap_table = np.zeros((0, 0))
        self._new_answer = np.zeros(0)
        self._new_density = np.zeros(0)
        self.last_theta = self.theta_base

    def on_live_answer(self, ts: float, abandoned: bool) -> None:
        self.controller.record(ts, abandoned)

    def _refresh(self, est: Estimates) -> None:
        """Rebuild the conditional tables when the estimates have moved on."""
        h = self.horizons
        if est.ring.version != self._ring_version:
            self._ring_version = est.ring.version
            ring = est.ring.answer_within_table(self._ring_ages, h)
            # each row: signed contribution to demand - supply, then its variance
            self._ring_table = np.hstack((ring, ring * (1.0 - ring)))
            self._new_answer = est.ring.new_call_answer_within(h)
            density = est.ring.live_ring_density(h)
            self._new_density = density / max(float(density.sum()), 1e-12)
            self._chunks = {}
        if est.service.version != self._service_version:
            self._service_version = est.service.version
            supply_h = h + self.grace_s
            talk = est.service.talk_free_table(self._talk_ages, supply_h)
            wrap = est.service.wrap_free_table(self._wrap_ages, supply_h)
            self._talk_table = np.hstack((-talk, talk * (1.0 - talk)))
            self._wrap_table = np.hstack((-wrap, wrap * (1.0 - wrap)))

    def theta(self, now: float) -> float:
        if not self.closed_loop:
            return self.theta_base
        return min(self.theta_base * self.controller.output(now), 0.5)

    def _forecast(self, snap: PacingSnapshot, est: Estimates) -> tuple[FloatArray, FloatArray]:
        """Mean and variance of demand(s) - supply(s + grace) on the horizon grid."""
        self._refresh(est)
        k = self.horizons.size
        acc = np.zeros(2 * k)
        for ages, table, width in ((snap.ring_ages, self._ring_table, self._ring_bin),
                                   (snap.wrap_ages, self._wrap_table, self._wrap_bin),
                                   (snap.talk_ages, self._talk_table, 1.0)):
            if len(ages) == 0:
                continue
            idx = (np.asarray(ages, dtype=np.float64) * (1.0 / width)).astype(np.intp)
            np.minimum(idx, table.shape[0] - 1, out=idx)
            acc += table[idx].sum(axis=0)
        # tables hold [+-P | P(1-P)]: supply columns were stored negated
        mean = acc[:k] + float(snap.waiting_calls - snap.idle_agents)
        var = acc[k:] + 0.05
        return mean, var

    def _marginals(self, mean: FloatArray, var: FloatArray, first: int, last: int) -> FloatArray:
        """Marginal abandonment probability of new calls number first+1 .. last."""
        extra = self._chunks.get((first, last))
        if extra is None:
            c = self._new_answer
            others = np.arange(first, last, dtype=np.float64)[:, None]
            extra = (others * c[None, :] + 0.5, others * (c * (1.0 - c))[None, :])
            self._chunks[(first, last)] = extra
        p_over = _normal_cdf((mean + extra[0]) / np.sqrt(var + extra[1]))
        # a unit of extra demand at s stays until supply catches up: look ahead
        worst_ahead = np.maximum.accumulate(p_over[:, ::-1], axis=1)[:, ::-1]
        marginal: FloatArray = worst_ahead @ self._new_density
        return marginal

    def marginal_abandon(self, snap: PacingSnapshot, est: Estimates, n_max: int) -> FloatArray:
        """Marginal abandonment probability of the 1st..n_max-th new call."""
        mean, var = self._forecast(snap, est)
        return self._marginals(mean, var, 0, n_max)

    def decide(self, snap: PacingSnapshot, est: Estimates) -> int:
        progressive = snap.idle_agents - snap.in_flight
        # progressive must redial the moment a line frees; prediction plans ahead
        self.on_call_events = snap.logged_in < self.min_agents or est.ring.observations < self.warmup
        self.paces_progressively = self.on_call_events
        if self.on_call_events:
            return _bounded(progressive, snap)
        limit = math.floor(self.max_ratio * snap.logged_in) - snap.in_flight - len(snap.talk_ages)
        if limit <= 0:
            return _bounded(progressive, snap)
        theta = self.theta(snap.now)
        self.last_theta = theta
        mean, var = self._forecast(snap, est)
        n = 0
        chunk = 4
        while n < limit:
            size = min(chunk, limit - n)
            passed = self._marginals(mean, var, n, n + size) <= theta
            ok = size if bool(passed.all()) else int(np.argmin(passed))
            n += ok
            if ok < size:
                break
            chunk *= 2
        return _bounded(max(n, progressive), snap)


STRATEGY_HELP = ("progressive | ratio:K (power dialing, K lines per idle agent) | "
                 "vicidial[:CAP] | predictive[:TARGET] | predictive-open[:THETA]")


def make_strategy(spec: str, *, cap: float = 0.03, min_agents: int = 11,
                  grace_s: float = 2.0) -> Strategy:
    """Build a strategy from a CLI/scenario name such as ``predictive:0.02``."""
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    try:
        value = float(arg) if arg else None
    except ValueError:
        raise ValueError(f"bad strategy parameter in {spec!r}") from None
    if kind == "progressive" and value is None:
        return Progressive()
    if kind in ("ratio", "power") and value is not None:
        return FixedRatio(value)
    if kind == "vicidial":
        return VicidialAdaptive(cap=value if value is not None else cap)
    if kind == "predictive":
        return Predictive(target=value if value is not None else 0.02, cap=cap,
                          min_agents=min_agents, grace_s=grace_s)
    if kind == "predictive-open":
        theta = value if value is not None else 0.01
        return Predictive(target=theta, cap=cap, min_agents=min_agents, grace_s=grace_s,
                          closed_loop=False, theta=theta)
    raise ValueError(f"unknown strategy {spec!r}; expected {STRATEGY_HELP}")
