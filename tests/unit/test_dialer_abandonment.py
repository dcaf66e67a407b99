"""Regulator definitions recomputed from stored live-answer records."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccengine.dialer.abandonment import (
    FCC_30_DAY,
    OFCOM_24H,
    AbandonDefinition,
    AmdVerdict,
    ClockStart,
    LiveAnswer,
    RollingAbandonment,
    abandonment_rate,
    period_rates,
    worst_window_rate,
)


def test_clock_starts_at_greeting_end_or_answer() -> None:
    rec = LiveAnswer(answer_ts=100.0, greeting_end_ts=101.5, agent_connect_ts=103.0)
    assert not FCC_30_DAY.is_abandoned(rec)  # 1.5 s after the greeting
    from_answer = AbandonDefinition("x", 86400.0, clock_start=ClockStart.ANSWER)
    assert from_answer.is_abandoned(rec)  # 3 s after the answer
    assert FCC_30_DAY.is_abandoned(LiveAnswer(100.0, 100.0, None, message_played=True))


def test_ofcom_adds_amd_false_positive_estimate() -> None:
    recs = [LiveAnswer(0.0, 0.0, 1.0, amd_verdict=AmdVerdict.HUMAN) for _ in range(96)]
    recs += [LiveAnswer(0.0, 0.0, None, True, AmdVerdict.MACHINE) for _ in range(50)]
    fcc = abandonment_rate(recs, FCC_30_DAY)
    assert (fcc.live, fcc.abandoned, fcc.rate) == (96, 0, 0.0)
    ofcom = abandonment_rate(recs, OFCOM_24H)  # assumes 4% of humans get a machine verdict
    assert ofcom.estimated_false_positives == pytest.approx(4.0)
    assert ofcom.rate == pytest.approx(4.0 / 100.0)


def test_period_rates_split_by_day() -> None:
    day = 86400.0
    recs = [LiveAnswer(10.0, 10.0, None), LiveAnswer(20.0, 20.0, 21.0),
            LiveAnswer(day + 5, day + 5, day + 6)]
    rates = period_rates(recs, AbandonDefinition("daily", period_s=day))
    assert rates[0.0].rate == pytest.approx(0.5) and rates[day].rate == 0.0


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_ofcom_days_run_midnight_to_midnight_uk_time() -> None:
    """23:30 UTC on a summer evening is already the next day in London (BST), and the day the
    clocks go forward lasts 23 hours."""
    before, after = at("2026-06-30T22:30:00+00:00"), at("2026-06-30T23:30:00+00:00")
    assert OFCOM_24H.window_start(before) == at("2026-06-29T23:00:00+00:00")
    assert OFCOM_24H.window_start(after) == at("2026-06-30T23:00:00+00:00")
    rates = period_rates([LiveAnswer(before, before, None), LiveAnswer(after, after, after + 1)], OFCOM_24H)
    assert [r.abandoned for r in rates.values()] == [1, 0]
    spring = OFCOM_24H.window_start(at("2026-03-29T12:00:00+00:00"))
    assert spring == at("2026-03-29T00:00:00+00:00")
    assert OFCOM_24H.window_start(at("2026-03-30T12:00:00+00:00")) - spring == 23 * 3600
    assert FCC_30_DAY.window_start(after) == (after // (30 * 86400)) * 30 * 86400


def _brute_worst(times: list[float], flags: list[bool], w: float, lo: float, hi: float) -> float:
    best = 0.0
    for t in times:
        for a, b in ((t, t + w), (t - w, t)):
            if a < lo or b > hi:
                continue
            inside = [f for s, f in zip(times, flags, strict=True)
                      if (a <= s < b if (a, b) == (t, t + w) else a < s <= b)]
            if inside:
                best = max(best, sum(inside) / len(inside))
    return best


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1000), st.booleans()), min_size=1, max_size=40))
def test_worst_window_matches_brute_force(events: list[tuple[float, bool]]) -> None:
    recs = [LiveAnswer(t, t, None if ab else t + 0.5) for t, ab in events]
    times = [t for t, _ in events]
    flags = [ab for _, ab in events]
    got = worst_window_rate(recs, FCC_30_DAY, 100.0, 0.0, 1000.0)
    assert got == pytest.approx(_brute_worst(times, flags, 100.0, 0.0, 1000.0))


def test_rolling_tracker() -> None:
    tr = RollingAbandonment(max_answers=3, window_s=10.0)
    for t, ab in [(0.0, True), (1.0, False), (2.0, False), (3.0, True)]:
        tr.record(t, ab)
    assert (tr.recent_count, tr.recent_abandoned) == (3, 1)
    assert tr.window_counts(5.0) == (4, 2)
    assert tr.window_counts(10.5) == (3, 1)
    assert tr.window_counts(11.5) == (2, 1)
