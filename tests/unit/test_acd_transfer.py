"""A transfer in the ACD: the first agent's part ends in wrap-up, the call is offered to a named
agent (only when ready and qualified for what the call needs) or re-queued, and a directed offer
that rings out falls back to the queue like any other."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccengine.acd.router import Reservation, RoutingError
from ccengine.acd.service import Acd

from .test_ivr_acd_handoff import make


def connect(acd: Acd, offers: list[Reservation]) -> Reservation:
    reservation = offers[-1]
    acd.ringing(reservation)
    acd.answered(reservation)
    return reservation


async def test_directed_offer_to_a_named_agent(tmp_path: Path) -> None:
    acd, offers, _now = make(tmp_path)
    for agent in ("plain", "expert"):
        acd.login(agent, ready=False)
    acd.ready("plain")
    acd.enqueue("c1", "first", extra_skills={"general": 2})
    first = connect(acd, offers)
    assert first.agent_id == "plain"
    # the expert is not ready: refused, and nothing about the call changed
    assert acd.direct_refusal("expert", "first") == "agent expert is not ready (not_ready)"
    acd.ready("expert")
    assert acd.direct_refusal("expert", "first", extra_skills={"wealth": 9}) == (
        "agent expert lacks the skills the call needs in queue first")
    assert acd.direct_refusal("nobody", "first") == "unknown agent nobody"
    assert acd.direct_refusal("expert", "first", extra_skills={"general": 2}) is None
    # the first agent's part ends (this queue has no wrap-up), then the call is reserved for the expert
    acd.finished("plain", "c1", 30.0)
    assert acd.agents["plain"].state == "ready" and acd.agents["plain"].call_id is None
    acd.direct("c1", "first", "expert", extra_skills={"general": 2})
    assert [o.agent_id for o in offers] == ["plain", "expert"]
    assert acd.agents["expert"].state == "reserved" and acd.agents["expert"].call_id == "c1"
    with pytest.raises(RoutingError, match="already exists"):
        acd.direct("c1", "first", "plain")
    connect(acd, offers)
    assert acd.agents["expert"].state == "on_call"


async def test_directed_offer_not_answered_waits_in_the_queue(tmp_path: Path) -> None:
    acd, offers, _now = make(tmp_path)
    acd.rona_pause = None
    acd.login("expert")
    acd.direct("c1", "second", "expert")
    acd.ringing(offers[-1])
    acd.missed(offers[-1])  # the named agent did not answer
    assert acd.agents["expert"].state == "not_ready"
    assert acd.position("c1") == 1  # waiting in the queue like any call
    acd.login("plain")
    assert [o.agent_id for o in offers] == ["expert", "plain"]
