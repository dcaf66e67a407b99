"""Cold start of a live campaign: no prediction before the list has shown its answer rate.

A list answering at 60% against the estimators' 25% prior opened the lab's
300-contact campaign with 98 dials for 30 agents and 27 abandons; these pin
the guard that prevents it.
"""

from __future__ import annotations

import random

from ccengine.dialer.campaign import LIVE_WARMUP, Campaign
from ccengine.dialer.estimators import Estimates
from ccengine.dialer.pacing import PacingSnapshot, Predictive

IDLE = PacingSnapshot(now=0.0, idle_agents=30)


def observed(n: int) -> Estimates:
    est = Estimates()
    feed(est, n)
    return est


def test_predictive_stays_progressive_until_warm() -> None:
    strategy = Predictive(warmup=40)
    assert strategy.decide(IDLE, observed(0)) == 30
    assert strategy.decide(IDLE, observed(39)) == 30
    assert strategy.on_call_events
    warm = strategy.decide(IDLE, observed(40))
    assert warm > 30 and not strategy.on_call_events
    # the same cold estimates without the guard over-dial for this list: what the guard is for
    assert Predictive().decide(IDLE, observed(0)) > 1.5 * 30 / 0.6


def feed(est: Estimates, n: int, p_live: float = 0.6, seed: int = 1) -> None:
    rng = random.Random(seed)
    for _ in range(n):
        live = rng.random() < p_live
        est.ring.observe(live, rng.uniform(1, 4) if live else 15.0)


def test_live_campaigns_use_the_guard() -> None:
    campaign = Campaign.model_validate({
        "name": "p", "mode": "predictive", "target": 0.02, "agents": ["a1"], "caller_id": "4420700000",
        "contacts": "c.csv", "message": "Sorry we missed you."})
    strategy = campaign.strategy()
    assert isinstance(strategy, Predictive) and strategy.warmup == LIVE_WARMUP


def test_predictive_says_when_it_paces_progressively() -> None:
    """The runner holds shared (blended) agents per call exactly while this is true."""
    strategy = Predictive(warmup=40)
    strategy.decide(IDLE, observed(0))
    assert strategy.paces_progressively
    strategy.decide(IDLE, observed(40))
    assert not strategy.paces_progressively
    strategy.decide(PacingSnapshot(now=0.0, idle_agents=8), observed(40))  # below min_agents
    assert strategy.paces_progressively
