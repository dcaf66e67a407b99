"""Pacing rules in isolation: safety properties that must hold for any snapshot."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccengine.dialer.estimators import Estimates
from ccengine.dialer.pacing import (
    FixedRatio,
    PacingSnapshot,
    Predictive,
    Progressive,
    VicidialAdaptive,
    make_strategy,
)


def _trained_estimates(seed: int = 0) -> Estimates:
    """Estimates fed with S0-like history so the predictive tables are realistic."""
    rng = np.random.default_rng(seed)
    est = Estimates()
    for _ in range(3000):
        u = rng.random()
        if u < 0.3:
            est.ring.observe(True, 2 + rng.gamma(2, 4))
        else:
            est.ring.observe(False, 20.0 if u < 0.8 else 5.0 if u < 0.9 else 3.0)
    for _ in range(600):
        est.service.observe_talk(float(rng.lognormal(np.log(180) - np.log(2) / 2, np.sqrt(np.log(2)))))
        est.service.observe_wrap(30.0)
    return est


EST = _trained_estimates()

ages = st.lists(st.floats(0, 600, allow_nan=False), max_size=60)
snapshots = st.builds(
    PacingSnapshot,
    now=st.floats(0, 30_000),
    idle_agents=st.integers(0, 60),
    talk_ages=ages,
    wrap_ages=st.lists(st.floats(0, 60), max_size=30),
    ring_ages=st.lists(st.floats(0, 90), max_size=150),
    waiting_calls=st.integers(0, 10),
    lines_in_use=st.integers(0, 200),
    max_lines=st.none() | st.integers(1, 250),
)

ALL = ["progressive", "ratio:2", "ratio:3.33", "vicidial", "predictive:0.02", "predictive-open:0.01"]


@settings(max_examples=150, deadline=None)
@given(snap=snapshots, name=st.sampled_from(ALL))
def test_never_negative_and_respects_line_limit(snap: PacingSnapshot, name: str) -> None:
    n = make_strategy(name).decide(snap, EST)
    assert n >= 0
    if snap.max_lines is not None:
        assert snap.lines_in_use + n <= max(snap.max_lines, snap.lines_in_use)


@settings(max_examples=60, deadline=None)
@given(ring=st.lists(st.floats(0, 60), max_size=50), waiting=st.integers(0, 5),
       name=st.sampled_from(ALL))
def test_never_dials_without_logged_in_agents(ring: list[float], waiting: int, name: str) -> None:
    snap = PacingSnapshot(100.0, 0, (), (), ring, waiting)
    assert make_strategy(name).decide(snap, EST) == 0


@settings(max_examples=100, deadline=None)
@given(snap=snapshots)
def test_predictive_falls_back_to_progressive_below_threshold(snap: PacingSnapshot) -> None:
    strategy = Predictive(min_agents=11)
    expected = Progressive().decide(snap, EST)
    if snap.logged_in < 11:
        assert strategy.decide(snap, EST) == expected
    else:  # never less than progressive, which is abandonment-free by construction
        assert strategy.decide(snap, EST) >= expected


def test_progressive_holds_one_agent_per_call() -> None:
    snap = PacingSnapshot(0.0, 7, talk_ages=[10.0] * 3, ring_ages=[1.0, 2.0], waiting_calls=1)
    assert Progressive().decide(snap, EST) == 4


def test_fixed_ratio_counts_lines_per_idle_agent() -> None:
    snap = PacingSnapshot(0.0, 5, ring_ages=[1.0] * 4)
    assert FixedRatio(2.0).decide(snap, EST) == 6
    with pytest.raises(ValueError):
        FixedRatio(0.5)


def test_predictive_dials_ahead_of_wrap_ups_but_not_when_swamped() -> None:
    pred = Predictive(closed_loop=False, theta=0.02)
    # 20 agents about to leave wrap-up, nothing ringing: dial ahead of them
    ahead = PacingSnapshot(0.0, 0, talk_ages=[30.0] * 30, wrap_ages=[28.0] * 20)
    assert pred.decide(ahead, EST) >= 20
    # same agents but 150 calls that have rung past the no-answer timer: all live soon
    swamped = PacingSnapshot(0.0, 0, talk_ages=[30.0] * 30, wrap_ages=[28.0] * 20,
                             ring_ages=[21.0] * 150)
    assert pred.decide(swamped, EST) == 0


def test_ring_age_changes_the_forecast() -> None:
    pred = Predictive(closed_loop=False, theta=0.02)
    young = PacingSnapshot(0.0, 10, talk_ages=[60.0] * 40, ring_ages=[0.5] * 12)
    old = PacingSnapshot(0.0, 10, talk_ages=[60.0] * 40, ring_ages=[21.0] * 12)
    # young calls are mostly no-answers: more room to dial than with 12 surely-live calls
    assert pred.decide(young, EST) > pred.decide(old, EST)


@settings(max_examples=40, deadline=None)
@given(snap=snapshots, extra=st.integers(1, 5))
def test_more_waiting_never_dials_more_and_more_idle_never_dials_less(
        snap: PacingSnapshot, extra: int) -> None:
    pred = Predictive(closed_loop=False, theta=0.02)
    n = pred.decide(snap, EST)
    busier = PacingSnapshot(snap.now, snap.idle_agents, snap.talk_ages, snap.wrap_ages,
                            snap.ring_ages, snap.waiting_calls + extra)
    freer = PacingSnapshot(snap.now, snap.idle_agents + extra, snap.talk_ages, snap.wrap_ages,
                           snap.ring_ages, snap.waiting_calls)
    marg = pred.marginal_abandon(snap, EST, 10)
    assert np.all((marg >= 0) & (marg <= 1))
    if snap.max_lines is None:
        assert pred.decide(busier, EST) <= n <= pred.decide(freer, EST)


def test_pi_controller_tightens_after_abandonment_and_loosens_after_none() -> None:
    hot = Predictive(target=0.02)
    cold = Predictive(target=0.02)
    for i in range(400):
        hot.on_live_answer(float(i), i % 10 == 0)  # 10% abandoned
        cold.on_live_answer(float(i), False)
    assert hot.theta(400.0) < 0.02 < cold.theta(400.0)


def test_vicidial_level_stays_clamped() -> None:
    vd = VicidialAdaptive(max_level=3.0)
    for t in range(0, 600):
        vd.decide(PacingSnapshot(float(t), 40, talk_ages=[1.0] * 10), EST)
    assert vd.level == pytest.approx(3.0)
    for t in range(600, 700):
        vd.on_live_answer(float(t), True)
        vd.decide(PacingSnapshot(float(t), 0, talk_ages=[1.0] * 50), EST)
    assert vd.level == pytest.approx(1.0)


@pytest.mark.parametrize("spec", ["bogus", "ratio", "predictive:x", "progressive:2"])
def test_make_strategy_rejects_bad_names(spec: str) -> None:
    with pytest.raises(ValueError):
        make_strategy(spec)
