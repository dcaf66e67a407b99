"""Blending: a campaign's agents come from the ACD, shared with inbound calls.

A real :class:`Acd` (the lab's queue file) is driven with random interleavings
of inbound calls and campaign requests through :class:`AcdSeats`. An
independent model records who holds which call from the offers alone and
fails if any agent is offered a second call (inbound or outbound) before the
first is over.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import pytest

from ari_apps.seats import AcdSeats
from ccengine.acd.definitions import load_queue_config
from ccengine.acd.router import Reservation
from ccengine.acd.service import Acd
from ccengine.core.events import Event

QUEUES = Path(__file__).parents[2] / "config" / "lab-queues.yaml"


class Model:
    def __init__(self) -> None:
        self.holder: dict[str, str] = {}  # agent → call it was offered and still holds
        self.offers = 0
        self.kinds: Counter[str] = Counter()

    def offered(self, agent: str, call: str) -> None:
        assert agent not in self.holder, f"{agent} offered {call} while holding {self.holder[agent]}"
        self.holder[agent] = call
        self.offers += 1
        self.kinds["out" if call.startswith("out") else "in"] += 1

    def free(self, agent: str, call: str) -> None:
        assert self.holder.get(agent) == call, (agent, call, self.holder.get(agent))
        del self.holder[agent]


def make_acd() -> tuple[Acd, list[Event]]:
    events: list[Event] = []
    acd = Acd(load_queue_config(QUEUES), events.append, rona_pause=None)
    acd.login_all()
    return acd, events


@pytest.mark.parametrize("seed", range(6))
async def test_inbound_and_outbound_never_hold_one_agent(seed: int) -> None:
    rng = random.Random(seed)
    acd, _ = make_acd()
    model = Model()
    seats = AcdSeats(acd, "general")
    inbound: dict[str, Reservation] = {}  # offered, not yet answered
    outbound: dict[str, str] = {}  # call → agent, offered, not yet answered
    connected: dict[str, tuple[str, bool]] = {}  # call → (agent, outbound?)
    waiting_out: set[str] = set()

    def on_inbound(reservation: Reservation) -> None:
        model.offered(reservation.agent_id, reservation.contact_id)
        inbound[reservation.contact_id] = reservation

    def on_outbound(call: str, agent: str) -> None:
        model.offered(agent, call)
        waiting_out.discard(call)
        outbound[call] = agent

    acd.offer = on_inbound
    seats.on_offer = on_outbound
    for serial in range(1500):
        step = rng.random()
        if step < 0.12:
            acd.enqueue(f"in{serial}", rng.choice(["general", "cards", "fraud"]))
        elif step < 0.35:
            call = f"out{serial}"
            wait = rng.random() < 0.7
            agent = seats.take(call, wait=wait)
            if agent is not None:
                on_outbound(call, agent)
            elif wait:
                waiting_out.add(call)
        elif step < 0.55 and (inbound or outbound):
            call = rng.choice(sorted([*inbound, *outbound]))
            if call in inbound:
                reservation = inbound.pop(call)
                acd.answered(reservation)
                connected[call] = (reservation.agent_id, False)
            else:
                agent = outbound.pop(call)
                seats.ringing(agent, call)
                seats.answered(agent, call)
                connected[call] = (agent, True)
        elif step < 0.7 and connected:
            call = rng.choice(sorted(connected))
            agent, is_out = connected.pop(call)
            model.free(agent, call)
            if is_out:
                seats.ended(agent, call)
            else:
                acd.finished(agent, call)
        elif step < 0.8 and (inbound or outbound or waiting_out):
            call = rng.choice(sorted([*inbound, *outbound, *waiting_out]))
            if call in inbound:  # the caller hangs up, or the agent does not answer
                reservation = inbound.pop(call)
                model.free(reservation.agent_id, call)
                if rng.random() < 0.5:
                    acd.abandon(call)
                else:
                    acd.missed(reservation)
            elif call in outbound:
                agent = outbound.pop(call)
                model.free(agent, call)
                if rng.random() < 0.5:
                    seats.release(agent, call)  # the customer hung up (or the grace ran out)
                else:
                    seats.unreachable(agent, call)
            else:
                waiting_out.discard(call)
                seats.cancel(call)
        else:  # wrap-up over, or back from not ready
            idle = [a for a, v in acd.agents.items() if v.state in ("wrapup", "not_ready")]
            if idle:
                acd.ready(rng.choice(sorted(idle)), "test")
        await asyncio.sleep(0)  # deliver deferred campaign offers
        counts = seats.counts(False)
        ready = [a for a in acd.config.qualified_agents("general") if acd.agents[a].state == "ready"]
        assert counts.idle == counts.free_now == len(ready)
        for agent in ready:
            assert agent not in model.holder
    assert model.offers > 200
    assert model.kinds["in"] > 40 and model.kinds["out"] > 40, model.kinds


async def test_a_waiting_campaign_call_gets_the_next_free_agent_before_inbound_callers() -> None:
    acd, _ = make_acd()
    offers: list[tuple[str, str]] = []
    inbound: list[Reservation] = []
    acd.offer = inbound.append
    seats = AcdSeats(acd, "general")
    seats.on_offer = lambda call, agent: offers.append((call, agent))
    general = acd.config.qualified_agents("general")
    for agent in set(acd.agents) - set(general):
        acd.not_ready(agent, "break")  # only agents the campaign shares are staffed
    taken = [seats.take(f"busy{i}", wait=False) for i in range(len(general))]
    assert sorted(a for a in taken if a) == sorted(general)
    assert seats.take("none", wait=False) is None and acd.router.contact_state("none") is None
    assert seats.take("out1", wait=True) is None  # waits in the general queue
    first = taken[0]
    assert first is not None
    seats.release(first, "busy0")  # that agent is free again: the waiting campaign call gets it
    await asyncio.sleep(0)
    assert offers == [("out1", first)]
    assert acd.agents[first].state == "reserved" and acd.agents[first].call_id == "out1"
    # an answered campaign call within its 2 s grace outranks even a fraud caller (priority 50)
    # who was waiting first; the caller gets the next agent
    acd.enqueue("in1", "fraud")
    assert seats.take("out2", wait=True) is None
    fraud_agents = [a for a in taken[1:] if a and a in acd.config.qualified_agents("fraud")]
    assert len(fraud_agents) == 2
    seats.release(fraud_agents[0], f"busy{taken.index(fraud_agents[0])}")
    await asyncio.sleep(0)
    assert offers == [("out1", first), ("out2", fraud_agents[0])] and inbound == []
    seats.release(fraud_agents[1], f"busy{taken.index(fraud_agents[1])}")
    assert [r.contact_id for r in inbound] == ["in1"] and inbound[0].agent_id == fraud_agents[1]
    assert seats.take("out3", wait=True) is None
    seats.cancel("out3")
    assert acd.router.contact_state("out3") is None


def test_unknown_queue_is_refused() -> None:
    acd, _ = make_acd()
    with pytest.raises(ValueError, match="unknown queue 'nope'"):
        AcdSeats(acd, "nope")


class Lines:
    """The engine's persistent lines as the seats see them: one line per agent, one call at a time."""

    def __init__(self, up: set[str]):
        self.carrying: dict[str, str | None] = dict.fromkeys(up)
        self.held: list[str] = []

    def take(self, agent_id: str, call_id: str) -> str | None:
        if agent_id not in self.carrying or self.carrying[agent_id] is not None:
            return None
        self.carrying[agent_id] = call_id
        return f"line-{agent_id}"

    def zip_tone(self, channel_id: str) -> None:
        return None

    async def hold(self, channel_id: str) -> None:
        self.held.append(channel_id)
        self.carrying[channel_id.removeprefix("line-")] = None


async def test_a_campaign_call_rides_a_persistent_agents_line_never_a_second_invite(tmp_path: Path) -> None:
    """An agent with ``connection: persistent`` is reached over their line (or skipped when it is
    busy), never rung; an agent without one is rung as before."""
    from ari_apps.seats import NoLine

    path = tmp_path / "q.yaml"
    path.write_text("""
version: 1
skills: [{id: general}]
queues:
  - {id: general, required_skills: {general: 1}}
agents:
  - {id: lined, name: On a line, skills: {general: 5}, connection: persistent}
  - {id: rung, name: Rung, skills: {general: 5}}
""")
    acd = Acd(load_queue_config(path), lambda _e: None, rona_pause=None)
    acd.login_all()
    acd.line_up("lined")
    lines = Lines({"lined"})
    seats = AcdSeats(acd, "general", lines=lines)
    assert acd.agents["lined"].state == "ready"
    assert seats.line("rung", "out1") is None  # ring the phone
    assert seats.line("lined", "out1") == "line-lined"
    with pytest.raises(NoLine):
        seats.line("lined", "out2")  # the line carries out1: skip the agent, do not ring the phone
    await seats.hold_line("line-lined")
    assert lines.held == ["line-lined"] and seats.line("lined", "out3") == "line-lined"
    with pytest.raises(NoLine):
        AcdSeats(acd, "general").line("lined", "out4")  # no lines known: never ring a persistent agent
