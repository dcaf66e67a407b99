"""Abandoned-call bookkeeping under each regulator's definition.

Regulators disagree on the window (FCC: 30-day periods per campaign; Ofcom:
midnight-to-midnight day, with an estimate of AMD false positives added) and
on where the 2-second clock starts. So every live answer is stored raw
(:class:`LiveAnswer`) and rates are *recomputed* from the records under a
:class:`AbandonDefinition`, never kept as a single running counter.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, tzinfo
from enum import StrEnum
from zoneinfo import ZoneInfo

import numpy as np

DAY_S = 86_400.0


class AmdVerdict(StrEnum):
    """Asterisk AMD result; ``None`` on a record means AMD was off."""

    HUMAN = "human"
    MACHINE = "machine"
    NOTSURE = "notsure"


class ClockStart(StrEnum):
    """Where the connect deadline is measured from."""

    ANSWER = "answer"
    GREETING_END = "greeting_end"


@dataclass(frozen=True, slots=True)
class LiveAnswer:
    """One answered outbound call, stored so any regulator's rate can be recomputed.

    ``agent_connect_ts`` is ``None`` when no agent was ever connected (the
    called party got the information message or hung up).
    """

    answer_ts: float
    greeting_end_ts: float | None = None
    agent_connect_ts: float | None = None
    message_played: bool = False
    amd_verdict: AmdVerdict | None = None
    call_id: str = ""
    campaign: str = ""


@dataclass(frozen=True, slots=True)
class AbandonDefinition:
    """A regulator's rule: the grace, the clock start, the window and the cap.

    ``period_s`` is the length of successive fixed windows from the epoch (30
    days for FCC); with a ``timezone`` the windows are that zone's calendar days
    instead (Ofcom: midnight to midnight UK time, 23 or 25 hours on the days
    the clocks change). ``amd_false_positive_rate`` is the *assumed*
    P(machine verdict | human); when ``count_amd_false_positives`` is set,
    the expected number of humans hung up on by AMD is added to both the
    abandoned and the live counts, as Ofcom requires.
    """

    name: str
    period_s: float
    grace_s: float = 2.0
    clock_start: ClockStart = ClockStart.GREETING_END
    cap: float = 0.03
    count_amd_false_positives: bool = False
    amd_false_positive_rate: float = 0.0
    timezone: str | None = None

    @property
    def zone(self) -> tzinfo | None:
        return ZoneInfo(self.timezone) if self.timezone else None

    def window_start(self, ts: float) -> float:
        """Start (epoch seconds) of the window holding the instant ``ts``."""
        zone = self.zone
        if zone is None:
            return math.floor(ts / self.period_s) * self.period_s
        return datetime.combine(datetime.fromtimestamp(ts, zone).date(), time(), tzinfo=zone).timestamp()

    def is_abandoned(self, rec: LiveAnswer) -> bool:
        """True when ``rec`` counts as abandoned (a live answer not connected in time)."""
        if rec.amd_verdict is AmdVerdict.MACHINE:
            return False  # not a known live answer; handled by the FP estimate
        if rec.agent_connect_ts is None:
            return True
        start = rec.answer_ts
        if self.clock_start is ClockStart.GREETING_END and rec.greeting_end_ts is not None:
            start = rec.greeting_end_ts
        return rec.agent_connect_ts - start > self.grace_s

    def counts_as_live(self, rec: LiveAnswer) -> bool:
        return rec.amd_verdict is not AmdVerdict.MACHINE


FCC_30_DAY = AbandonDefinition("fcc-30d", period_s=30 * DAY_S)
OFCOM_24H = AbandonDefinition("ofcom-24h", period_s=DAY_S, count_amd_false_positives=True,
                              amd_false_positive_rate=0.04, timezone="Europe/London")


@dataclass(frozen=True, slots=True)
class RateResult:
    live: int
    abandoned: int
    estimated_false_positives: float

    @property
    def rate(self) -> float:
        denominator = self.live + self.estimated_false_positives
        if denominator <= 0:
            return 0.0
        return (self.abandoned + self.estimated_false_positives) / denominator


def abandonment_rate(records: Iterable[LiveAnswer], definition: AbandonDefinition) -> RateResult:
    """Rate over all ``records`` under ``definition``."""
    live = abandoned = human_verdicts = 0
    for rec in records:
        if definition.counts_as_live(rec):
            live += 1
            abandoned += definition.is_abandoned(rec)
        human_verdicts += rec.amd_verdict is AmdVerdict.HUMAN
    fp = 0.0
    if definition.count_amd_false_positives and definition.amd_false_positive_rate > 0:
        # humans that got the human verdict are (1 - f) of all humans screened
        f = definition.amd_false_positive_rate
        fp = human_verdicts * f / (1.0 - f)
    return RateResult(live, abandoned, fp)


def period_rates(records: Sequence[LiveAnswer], definition: AbandonDefinition) -> dict[float, RateResult]:
    """Rate in each of the regulator's windows, keyed by the window's start (epoch seconds)."""
    buckets: dict[float, list[LiveAnswer]] = {}
    for rec in records:
        buckets.setdefault(definition.window_start(rec.answer_ts), []).append(rec)
    return {k: abandonment_rate(v, definition) for k, v in sorted(buckets.items())}


def worst_window_rate(records: Sequence[LiveAnswer], definition: AbandonDefinition,
                      window_s: float = 3600.0, start_ts: float | None = None,
                      end_ts: float | None = None) -> float:
    """Worst abandonment rate over every full ``window_s`` window inside [start, end].

    The maximum of a ratio of counts over sliding windows is reached at a
    window with an answer on one of its edges, so it suffices to try windows
    starting and ending at each answer. Windows that do not fit entirely in
    the observed span are skipped, so short partial windows cannot dominate.
    """
    live = [r for r in records if definition.counts_as_live(r)]
    if not live:
        return 0.0
    live.sort(key=lambda r: r.answer_ts)
    ts = np.array([r.answer_ts for r in live])
    ab = np.array([definition.is_abandoned(r) for r in live], dtype=np.float64)
    lo = float(ts[0]) if start_ts is None else start_ts
    hi = float(ts[-1]) if end_ts is None else end_ts
    cum = np.concatenate(([0.0], np.cumsum(ab)))
    starts = ts[ts + window_s <= hi]
    ends = ts[ts - window_s >= lo]
    # windows [t, t + w) and (t - w, t]
    i0 = np.searchsorted(ts, starts, side="left")
    i1 = np.searchsorted(ts, starts + window_s, side="left")
    j1 = np.searchsorted(ts, ends, side="right")
    j0 = np.searchsorted(ts, ends - window_s, side="right")
    first = np.concatenate((i0, j0))
    last = np.concatenate((i1, j1))
    if first.size == 0:  # span shorter than a window: use the whole span
        return abandonment_rate(live, definition).rate
    n = (last - first).astype(np.float64)
    a = cum[last] - cum[first]
    rates = np.divide(a, n, out=np.zeros_like(a), where=n > 0)
    return float(rates.max())


class RollingAbandonment:
    """Live abandonment tracker for the pacing controller.

    Keeps outcomes of recent live answers, both the last ``max_answers`` and
    those within ``window_s``, because the controller reacts to the short
    count-based rate while guarding the time-based rolling-hour rate that
    regulators and reports look at.
    """

    def __init__(self, max_answers: int = 300, window_s: float = 3600.0) -> None:
        self.max_answers = max_answers
        self.window_s = window_s
        self._recent: deque[bool] = deque()
        self._recent_abandoned = 0
        self._timed: deque[tuple[float, bool]] = deque()
        self._timed_abandoned = 0
        self.total = 0
        self.total_abandoned = 0

    def record(self, ts: float, abandoned: bool) -> None:
        self.total += 1
        self.total_abandoned += abandoned
        self._recent.append(abandoned)
        self._recent_abandoned += abandoned
        if len(self._recent) > self.max_answers:
            self._recent_abandoned -= self._recent.popleft()
        self._timed.append((ts, abandoned))
        self._timed_abandoned += abandoned
        self._expire(ts)

    def _expire(self, now: float) -> None:
        while self._timed and self._timed[0][0] <= now - self.window_s:
            self._timed_abandoned -= self._timed.popleft()[1]

    @property
    def recent_count(self) -> int:
        return len(self._recent)

    @property
    def recent_abandoned(self) -> int:
        return self._recent_abandoned

    def window_counts(self, now: float) -> tuple[int, int]:
        """(answers, abandoned) within the last ``window_s`` seconds."""
        self._expire(now)
        return len(self._timed), self._timed_abandoned
