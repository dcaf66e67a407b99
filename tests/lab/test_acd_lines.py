"""Agents on persistent lines (lab PBX): one INVITE per agent for many calls, a dropped line,
recordings of the calls only, and lines kept across an engine restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from ccengine.lab.lab import Lab
from ccengine.lab.traffic import Customer, PeerDriver

from .conftest import hang_up_lines, pbx_channels
from .test_acd import HEADER, all_ended

pytestmark = pytest.mark.lab

LINES = HEADER + """
teams:
  - {id: desk, connection: persistent}
queues:
  - id: general
    required_skills: {general: 1}
    hours: always
    announcements: {position: false, estimated_wait: false}
agents:
  - {id: agent1, name: One, skills: {general: 5}, teams: [desk]}
  - {id: agent2, name: Two, skills: {general: 5}, connection: persistent}
"""


@pytest_asyncio.fixture(autouse=True)
async def no_lines_left(lab: Lab) -> AsyncIterator[None]:
    """A stopped engine leaves its lines up for its successor to adopt: hang them up between tests."""
    yield
    await hang_up_lines(lab)


class Invites:
    """Calls the peer's softphones received (one Newchannel per INVITE), per agent."""

    def __init__(self, peer: PeerDriver):
        self.peer = peer
        self.by_agent: dict[str, int] = {}
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            event = await self.peer.ami.queue.get()
            exten = str(event.get("Exten", ""))
            if event.get("Event") == "Newchannel" and exten.startswith("agent"):
                self.by_agent[exten] = self.by_agent.get(exten, 0) + 1

    def close(self) -> None:
        self._task.cancel()


def states(engine, agent_id: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(e.data["state"], e.data["reason"]) for e in engine.events("agent.state_changed")
            if e.agent_id == agent_id]


def ready(engine, *agents: str) -> Callable[[], bool]:  # type: ignore[no-untyped-def]
    return lambda: all(states(engine, a) and states(engine, a)[-1][0] == "ready" for a in agents)


async def peer_line(peer: PeerDriver, agent_id: str) -> str:
    reply = await peer.ami.action({"Action": "Getvar", "Variable": f"LINE_{agent_id}"})
    return str(reply.get("Value", ""))


async def test_consecutive_calls_ride_one_line_per_agent_and_only_calls_are_recorded(  # type: ignore[no-untyped-def]
        engine_factory, peer, lab):
    invites = Invites(peer)
    engine = engine_factory(queues=LINES, menu={"1": "general"})
    engine.start()
    await engine.wait_for(ready(engine, "agent1", "agent2"), 30, "both lines to be up")
    try:
        for batch in range(3):
            for i in range(2):
                await peer.call(Customer(number=f"55571{batch}{i}", digit="1", prompt_wait=0.5, patience=4))
            await engine.wait_for(all_ended(engine, 2 * (batch + 1)), 40, f"batch {batch}")
            await engine.wait_for(ready(engine, "agent1", "agent2"), 20, "agents back on hold")
        # the agent ends a call with the release key; the line stays for the next call
        await peer.call(Customer(number="5557200", digit="1", prompt_wait=0.5, patience=60))
        await engine.wait_for(lambda: len(engine.events("call.answered")) == 7, 30, "the seventh call")
        agent = engine.events("call.answered")[-1].data["agent_id"]
        await asyncio.sleep(2)
        await peer.ami.action({"Action": "PlayDTMF", "Channel": await peer_line(peer, agent), "Digit": "#"})
        await engine.wait_for(all_ended(engine, 7), 20, "the released call")
        await engine.wait_for(lambda: engine.count_events("call.recording_stopped") == 7, 20, "recordings")
    finally:
        invites.close()

    calls = engine.calls()
    assert [c.disposition for c in calls] == ["completed"] * 7
    released = calls[-1]
    assert released.ended_by == "agent" and released.end_cause == "released by the agent"
    assert invites.by_agent == {"agent1": 1, "agent2": 1}, "one INVITE per agent, not per call"
    offers = engine.events("call.agent_offered")
    assert all(o.data["line"] for o in offers) and len({o.data["channel_id"] for o in offers}) == 2
    assert engine.count_events("call.agent_no_answer") == 0
    # the line waited on hold for many seconds, but each recording covers its call only
    answered = {e.call_id: e.occurred_at for e in engine.events("call.answered")}
    stopped = {e.call_id: e.data for e in engine.events("call.recording_stopped")}
    for call in calls:
        talk = (call.ended_at - answered[call.id]).total_seconds()
        assert abs(stopped[call.id]["duration_seconds"] - talk) < 1.0, (stopped[call.id], talk)
    assert all(stopped[c.id]["duration_seconds"] < 5 for c in calls[:6])
    agent1 = states(engine, "agent1")
    assert agent1[:3] == [("not_ready", "login"), ("not_ready", "line_connecting"), ("ready", "line_up")]
    assert ("ringing", "") in agent1 and ("on_call", "") in agent1


async def test_a_dropped_line_makes_the_agent_not_ready_and_gets_no_calls(  # type: ignore[no-untyped-def]
        engine_factory, peer, lab):
    engine = engine_factory(queues=LINES, menu={"1": "general"})
    engine.start()
    await engine.wait_for(ready(engine, "agent1", "agent2"), 30, "both lines to be up")
    await peer.ami.action({"Action": "Hangup", "Channel": await peer_line(peer, "agent1")})
    await engine.wait_for(lambda: states(engine, "agent1")[-1] == ("not_ready", "line_down"), 15,
                          "agent1 not ready after the line dropped")
    for i in range(3):
        await peer.call(Customer(number=f"555730{i}", digit="1", prompt_wait=0.5, patience=3))
        await engine.wait_for(all_ended(engine, i + 1), 30, f"call {i}")
        await engine.wait_for(ready(engine, "agent2"), 20, "agent2 back on hold")
    assert {c.agent_id for c in engine.calls()} == {"agent2"}
    assert {e.data["agent_id"] for e in engine.events("call.agent_offered")} == {"agent2"}
    assert [c.disposition for c in engine.calls()] == ["completed"] * 3
    await asyncio.sleep(1)
    channels = {c["id"] for c in await pbx_channels(lab)}
    assert len(channels) == 1 and all(str(c).startswith("line-") for c in channels), "only agent2's line is left"


async def test_lines_survive_an_engine_restart(engine_factory, peer, lab):  # type: ignore[no-untyped-def]
    invites = Invites(peer)
    engine = engine_factory(queues=LINES, menu={"1": "general"})
    engine.start()
    await engine.wait_for(ready(engine, "agent1", "agent2"), 30, "both lines to be up")
    lines = {c["id"] for c in await pbx_channels(lab)}
    await peer.call(Customer(number="5557400", digit="1", prompt_wait=0.5, patience=8))
    await engine.wait_for(lambda: engine.count_events("call.answered") == 1, 30, "the call to be answered")
    engine.kill()  # mid-call: the call and both lines are left on the PBX
    engine.start()
    await engine.wait_for(all_ended(engine, 1), 30, "the recovered call to end")
    await engine.wait_for(ready(engine, "agent1", "agent2"), 30, "both agents ready on their old lines")
    await peer.call(Customer(number="5557401", digit="1", prompt_wait=0.5, patience=3))
    started = time.monotonic()
    await engine.wait_for(all_ended(engine, 2), 30, "a call after the restart")
    invites.close()
    first, second = engine.calls()
    assert first.disposition == "completed" and second.disposition == "completed", (first, second)
    assert time.monotonic() - started < 30
    assert invites.by_agent == {"agent1": 1, "agent2": 1}, "no line was called again"
    assert {c["id"] for c in await pbx_channels(lab)} == lines
    [offer] = [e for e in engine.events("call.agent_offered") if e.call_id == second.id]
    assert offer.data["channel_id"] in lines
