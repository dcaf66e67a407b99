"""Online estimators: they must learn S0-like data and follow a change."""

from __future__ import annotations

import numpy as np
import pytest

from ccengine.dialer.estimators import DecayingHistogram, RingEstimator, ServiceEstimator


def _feed(est: RingEstimator, rng: np.random.Generator, p: float, n: int) -> None:
    for _ in range(n):
        if rng.random() < p:
            est.observe(True, 2 + rng.gamma(2, 4))
        else:
            est.observe(False, 20.0 if rng.random() < 5 / 7 else 4.0)


def test_answer_probability_is_learned_and_follows_a_drop() -> None:
    rng = np.random.default_rng(1)
    est = RingEstimator(memory=600)
    _feed(est, rng, 0.30, 3000)
    assert est.answer_probability() == pytest.approx(0.30, abs=0.04)
    _feed(est, rng, 0.15, 3000)
    assert est.answer_probability() == pytest.approx(0.15, abs=0.03)


def test_ring_age_conditioning() -> None:
    rng = np.random.default_rng(2)
    est = RingEstimator()
    _feed(est, rng, 0.30, 5000)
    table = est.answer_within_table(np.array([0.0, 21.0]), np.array([60.0]))
    # a fresh call goes live with about p; one past the 20 s no-answer timer almost surely
    assert table[0, 0] == pytest.approx(0.30, abs=0.04)
    assert table[1, 0] > 0.95
    # probabilities grow with the horizon
    row = est.answer_within_table(np.array([3.0]), np.arange(0.0, 40.0))[0]
    assert np.all(np.diff(row) >= -1e-12) and row[0] == pytest.approx(0.0, abs=1e-9)


def test_new_call_density_sums_to_answer_cdf() -> None:
    rng = np.random.default_rng(3)
    est = RingEstimator()
    _feed(est, rng, 0.3, 2000)
    h = np.arange(0.0, 100.0)
    assert est.live_ring_density(h).sum() == pytest.approx(1.0, abs=0.01)
    assert est.new_call_answer_within(h)[-1] == pytest.approx(est.answer_probability(), abs=0.01)


def test_wrap_and_talk_free_tables() -> None:
    rng = np.random.default_rng(4)
    est = ServiceEstimator()
    for _ in range(2000):
        est.observe_wrap(30.0)
        est.observe_talk(float(rng.exponential(120.0)))
    wrap = est.wrap_free_table(np.array([25.0]), np.array([2.0, 6.0]))[0]
    assert wrap[0] < 0.05 and wrap[1] > 0.95
    talk = est.talk_free_table(np.array([60.0]), np.array([20.0, 40.0, 90.0]))[0]
    assert talk[0] == 0.0  # cannot finish talk *and* a 30 s wrap within 20 s
    # memoryless talk: P(done within 60 s of talk) = 1 - exp(-60/120)
    assert talk[2] == pytest.approx(1 - np.exp(-60 / 120), abs=0.05)
    assert est.mean_handle_time() == pytest.approx(150.0, rel=0.08)


def test_histogram_forgets() -> None:
    h = DecayingHistogram(1.0, 10, decay=0.99)
    for _ in range(1000):
        h.observe(2.5)
    for _ in range(1000):
        h.observe(7.5)
    assert h.mean() == pytest.approx(7.5, abs=0.1)
    assert h.survival(np.array([5.0]))[0] > 0.99
