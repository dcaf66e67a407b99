"""Skills-based ACD on the lab PBX: routing by skill, ring-no-answer, overflow, announcements, hot reload."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import wave
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ccengine.acd.definitions import load_queue_config
from ccengine.acd.stats import agent_stats, queue_stats, skill_stats
from ccengine.lab.traffic import Customer
from ccengine.store.schema import QueueLogRow

from .conftest import ROOT, pbx_channels

pytestmark = pytest.mark.lab

HEADER = """
version: 1
skills:
  - {id: general}
  - {id: cards}
  - {id: fraud}
calendars:
  always: {timezone: UTC, open: {mon-sun: ["00:00-24:00"]}}
"""


def all_ended(engine, expected: int):  # type: ignore[no-untyped-def]
    def check() -> bool:
        calls = engine.calls()
        return len(calls) >= expected and all(c.ended_at is not None for c in calls)
    return check


def verbs(engine, call_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    with Session(engine.db) as session:
        rows = session.scalars(select(QueueLogRow.verb).where(QueueLogRow.call_id == call_id)
                               .order_by(QueueLogRow.id))
        return [verb for verb in rows if not verb.startswith("AGENT_")]


async def test_forty_calls_three_queues_eight_agents_answered_by_qualified_agents(  # type: ignore[no-untyped-def]
        engine_factory, peer, lab):
    queues = (ROOT / "config" / "lab-queues.yaml").read_text()
    engine = engine_factory(queues=queues, menu={"1": "general", "2": "cards", "3": "fraud"})
    engine.start()
    await peer.agent_talk_time(2, 4)
    digits = ["1", "2", "3", "1", "2", "3", "1", "2"]
    for i in range(40):
        await peer.call(Customer(number=f"55560{i:02d}", digit=digits[i % len(digits)], prompt_wait=0.6,
                                 patience=150))
        await asyncio.sleep(0.15)
    await engine.wait_for(all_ended(engine, 40), 150, "all 40 calls to end")

    calls = engine.calls()
    assert [c.disposition for c in calls].count("completed") == 40, Counter(c.disposition for c in calls)
    config = load_queue_config(engine.settings.acd.queues)
    answered = engine.events("call.answered")
    assert len(answered) == 40
    for event in answered:
        queue = config.queues[event.data["queue"]]
        skills = config.agents[event.data["agent_id"]].skills
        for skill, level in queue.required_skills.items():
            assert skills.get(skill, 0) >= level, (event.data, skill)
    # every call either was answered in the queue its digit chose, or moved there by an overflow rule
    overflowed = {e.call_id: e.data for e in engine.events("call.overflowed")}
    chosen = {e.call_id: e.data["queue"] for e in engine.events("call.queued")}
    for event in answered:
        if event.call_id in overflowed:
            assert overflowed[event.call_id]["to_queue"] == event.data["queue"]
        else:
            assert chosen[event.call_id] == event.data["queue"]
    since = datetime.now(UTC) - timedelta(hours=1)
    stats = {s.queue: s for s in queue_stats(engine.db, config, since)}
    assert sum(s.answered for s in stats.values()) == 40
    assert sum(s.offered for s in stats.values()) == 40
    assert all(s.abandoned == 0 for s in stats.values())
    assert sum(a.answered for a in agent_stats(engine.db, since)) == 40
    skills = skill_stats(list(stats.values()), config)
    assert skills["fraud"].answered == stats["fraud"].answered  # only the fraud queue needs fraud
    assert skills["general"].answered == stats["general"].answered
    assert skills["cards"].offered == stats["cards"].offered
    await asyncio.sleep(1)
    assert await pbx_channels(lab) == []


async def test_ring_no_answer_then_overflow_to_another_queue(engine_factory, peer, lab):  # type: ignore[no-untyped-def]
    queues = HEADER + """
queues:
  - id: fraud
    required_skills: {fraud: 5}
    strategy: best_skill
    hours: always
    overflow: [{after: 5s, queue: general}]
    announcements: {position: false, estimated_wait: false}
  - id: general
    required_skills: {general: 1}
    hours: always
    announcements: {position: false, estimated_wait: false}
agents:
  - {id: agent1, name: Absent fraud expert, skills: {fraud: 9}}
  - {id: agent2, name: Generalist, skills: {general: 5}}
"""
    engine = engine_factory(queues=queues, acd={"rona_pause": None}, menu={"3": "fraud"},
                            default_queue="general", ring_timeout=3)
    engine.start()
    await peer.set_global("AGENT_ABSENT_agent1", "1")
    try:
        await peer.call(Customer(number="5557001", digit="3", prompt_wait=0.5, patience=90))
        await engine.wait_for(all_ended(engine, 1), 60, "the call to end")
    finally:
        await peer.set_global("AGENT_ABSENT_agent1", "")

    [call] = engine.calls()
    assert call.disposition == "completed" and call.agent_id == "agent2" and call.queue == "general"
    [missed] = engine.events("call.agent_no_answer")
    assert missed.data["agent_id"] == "agent1"
    agent1 = [e.data for e in engine.events("agent.state_changed") if e.agent_id == "agent1"]
    assert {"state": "not_ready", "previous": "ringing", "reason": "ring_no_answer"} in agent1
    assert agent1[-1]["state"] == "not_ready", "rona_pause null: agent1 stays not ready"
    [overflow] = engine.events("call.overflowed")
    assert overflow.data["from_queue"] == "fraud" and overflow.data["to_queue"] == "general"
    assert overflow.data["waited_seconds"] >= 5
    assert verbs(engine, call.id) == ["ENTERQUEUE", "RINGING", "RINGNOANSWER", "REQUEUE", "OVERFLOW", "RINGING",
                                      "CONNECT", "COMPLETEAGENT"]
    config = load_queue_config(engine.settings.acd.queues)
    stats = {s.queue: s for s in queue_stats(engine.db, config, datetime.now(UTC) - timedelta(hours=1))}
    assert stats["fraud"].overflowed_out == 1 and stats["fraud"].offered == 0
    assert stats["general"].offered == 1 and stats["general"].answered == 1
    assert [a.ring_no_answer for a in agent_stats(engine.db, datetime.now(UTC) - timedelta(hours=1))
            if a.agent == "agent1"] == [1]


async def test_hot_reload_mid_traffic_adds_agents_and_keeps_calls(engine_factory, peer, lab):  # type: ignore[no-untyped-def]
    queues = HEADER + """
queues:
  - id: general
    required_skills: {general: 1}
    hours: always
    announcements: {position: true, estimated_wait: false, first_after: 2s, repeat_every: 4s}
agents:
  - {id: agent1, name: One, skills: {general: 5}}
"""
    engine = engine_factory(queues=queues, menu={"1": "general"})
    engine.start()
    await peer.agent_talk_time(8, 8)
    for i in range(4):
        await peer.call(Customer(number=f"555800{i}", digit="1", prompt_wait=0.5, patience=120))
    await engine.wait_for(lambda: len(engine.events("call.announced")) >= 2, 30, "position announcements")
    announced = engine.events("call.announced")
    assert {e.data["position"] for e in announced} <= {1, 2, 3}

    engine.queues_file.write_text(queues + """  - {id: agent2, name: Two, skills: {general: 5}}
  - {id: agent3, name: Three, skills: {general: 5}}
""")
    result = subprocess.run([sys.executable, "-m", "ccengine.cli.main", "-c", str(engine.config),
                             "queues", "reload"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    await engine.wait_for(all_ended(engine, 4), 60, "all calls to end")

    calls = engine.calls()
    assert [c.disposition for c in calls] == ["completed"] * 4
    assert {"agent2", "agent3"} <= {c.agent_id for c in calls}, "new agents took waiting calls"

    # a broken file is refused and the running definitions stay
    engine.queues_file.write_text(queues.replace("required_skills: {general: 1}", "required_skills: {nope: 1}"))
    result = subprocess.run([sys.executable, "-m", "ccengine.cli.main", "-c", str(engine.config),
                             "queues", "reload"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1 and "nope" in result.stderr
    await peer.agent_talk_time(2, 2)
    await peer.call(Customer(number="5558100", digit="1", prompt_wait=0.5, patience=60))
    await engine.wait_for(all_ended(engine, 5), 40, "a call after the refused reload")
    assert engine.calls()[-1].disposition == "completed"


async def test_callback_keeps_the_place_and_calls_the_customer_back(engine_factory, peer, lab):  # type: ignore[no-untyped-def]
    queues = HEADER + """
queues:
  - id: general
    required_skills: {general: 1}
    hours: always
    overflow: [{after: 3s, action: callback}]
    announcements: {position: false, estimated_wait: false}
agents:
  - {id: agent1, name: One, skills: {general: 5}}
"""
    engine = engine_factory(queues=queues, menu={"1": "general"})
    engine.start()
    await peer.agent_talk_time(15, 15)
    # the first caller keeps the only agent busy; the second accepts the callback offer.
    # Its number tells the lab's called-party plan to answer after 1 s and talk 20 s.
    await peer.call(Customer(number="5559001", digit="1", prompt_wait=0.5, patience=60))
    await asyncio.sleep(1.0)
    callback_number = "1012059002"
    await peer.call(Customer(number=callback_number, digit="1", prompt_wait=0.5, patience=30,
                             press="1", press_after=10))
    await engine.wait_for(lambda: len(engine.events("call.callback_requested")) == 1, 30, "callback accepted")
    await engine.wait_for(all_ended(engine, 2), 90, "both calls to end")

    first, second = engine.calls()
    assert first.caller_number == "5559001" and first.disposition == "completed"
    assert second.caller_number == callback_number and second.disposition == "completed"
    assert second.agent_id == "agent1" and second.answered_at > first.ended_at
    [requested] = engine.events("call.callback_requested")
    assert requested.call_id == second.id and requested.data == {"queue": "general", "position": 1}
    [dialed] = engine.events("call.callback_dialed")
    legs = [e.data["channel_id"] for e in engine.events("call.offered") if e.call_id == second.id]
    assert dialed.data["channel_id"] not in legs, "the customer was reached on a new leg"
    assert "ABANDON" not in verbs(engine, second.id)
    await asyncio.sleep(1)
    assert await pbx_channels(lab) == []


async def test_callback_promise_survives_an_engine_crash(engine_factory, peer, lab):  # type: ignore[no-untyped-def]
    """The caller accepted a callback and hung up; the engine is SIGKILLed before any agent is
    free. The restarted engine still owes the call: it dials the customer once the agent frees up."""
    queues = HEADER + """
queues:
  - id: general
    required_skills: {general: 1}
    hours: always
    overflow: [{after: 2s, action: callback}]
    announcements: {position: false, estimated_wait: false}
agents:
  - {id: agent1, name: One, skills: {general: 5}}
"""
    engine = engine_factory(queues=queues, menu={"1": "general"})
    engine.start()
    await peer.agent_talk_time(25, 25)  # the first caller keeps agent1 busy across the crash
    await peer.call(Customer(number="5559011", digit="1", prompt_wait=0.5, patience=60))
    await asyncio.sleep(1.0)
    callback_number = "1012059012"  # the called-party plan answers after 1 s and talks 20 s
    await peer.call(Customer(number=callback_number, digit="1", prompt_wait=0.5, patience=30,
                             press="1", press_after=6))
    await engine.wait_for(lambda: len(engine.events("call.callback_requested")) == 1, 30, "callback accepted")
    [waiting] = [c for c in engine.calls() if c.caller_number == callback_number]
    for _ in range(100):  # the caller heard the thanks and was released: only the first call's two legs left
        if len(await pbx_channels(lab)) == 2:
            break
        await asyncio.sleep(0.1)
    assert len(await pbx_channels(lab)) == 2
    assert [c.state for c in engine.calls() if c.id == waiting.id] == ["callback"]
    engine.kill()
    engine.start()
    await engine.wait_for(all_ended(engine, 2), 90, "both calls to end")

    first, second = engine.calls()
    assert first.disposition == "completed"
    assert second.id == waiting.id and second.disposition == "completed", second.end_cause
    assert second.agent_id == "agent1" and second.answered_at > first.ended_at
    [dialed] = engine.events("call.callback_dialed")
    assert dialed.call_id == second.id
    assert "ABANDON" not in verbs(engine, second.id)
    await asyncio.sleep(1)
    assert await pbx_channels(lab) == []


async def test_voicemail_on_overflow_and_when_closed(engine_factory, peer, lab):  # type: ignore[no-untyped-def]
    today = datetime.now(UTC).date()
    queues = HEADER + f"""
  holiday: {{timezone: UTC, open: {{mon-sun: ["00:00-24:00"]}},
            holidays: [{{date: "{today}"}}, {{date: "{today + timedelta(days=1)}"}}]}}
queues:
  - id: general
    required_skills: {{general: 1}}
    hours: always
    overflow: [{{after: 2s, action: voicemail}}]
    voicemail_max: 30s
    announcements: {{position: false, estimated_wait: false}}
  - id: cards
    required_skills: {{cards: 1}}
    hours: holiday
    when_closed: voicemail
agents:
  - {{id: agent1, name: One, skills: {{general: 5, cards: 5}}}}
"""
    engine = engine_factory(queues=queues, menu={"1": "general", "2": "cards"})
    engine.start()
    await peer.agent_talk_time(15, 15)
    await peer.call(Customer(number="5559101", digit="1", prompt_wait=0.5, patience=60))  # keeps agent1 busy
    await asyncio.sleep(1.0)
    # waits, overflows to voicemail after 2 s, hears the prompt, talks (hold music), then presses #
    await peer.call(Customer(number="5559102", digit="1", prompt_wait=0.5, patience=60, press="#", press_after=16))
    # the cards queue is closed today: straight to voicemail; this caller simply hangs up
    await peer.call(Customer(number="5559103", digit="2", prompt_wait=0.5, patience=14))
    await engine.wait_for(all_ended(engine, 3), 90, "the three calls to end")

    calls = {c.caller_number: c for c in engine.calls()}
    assert calls["5559101"].disposition == "completed"
    assert calls["5559102"].disposition == "voicemail" and calls["5559102"].agent_id is None
    assert calls["5559103"].disposition == "voicemail"
    messages = {e.call_id: e.data for e in engine.events("call.voicemail_left")}
    overflow, closed = messages[calls["5559102"].id], messages[calls["5559103"].id]
    assert overflow["reason"] == "overflow" and overflow["mailbox"] == "general"
    assert closed["reason"] == "closed" and closed["mailbox"] == "cards"
    for message in (overflow, closed):
        assert message["duration_seconds"] > 1.0
        with wave.open(message["path"]) as wav:  # the caller's audio (their hold music) is in the file
            assert wav.getnframes() / wav.getframerate() > 1.0
    assert verbs(engine, calls["5559102"].id) == ["ENTERQUEUE", "EXITVOICEMAIL"]
    assert "ABANDON" not in verbs(engine, calls["5559103"].id)
    await asyncio.sleep(1)
    assert await pbx_channels(lab) == []


async def test_callback_promised_while_closed_is_placed_once_the_queue_opens(  # type: ignore[no-untyped-def]
        engine_factory, peer, lab):
    today = datetime.now(UTC).date()
    closed = HEADER + f"""
  closed: {{timezone: UTC, open: {{mon-sun: ["00:00-24:00"]}},
           holidays: [{{date: "{today}"}}, {{date: "{today + timedelta(days=1)}"}}]}}
queues:
  - id: general
    required_skills: {{general: 1}}
    hours: closed
    when_closed: callback
    closed_callback: {{window: 1h, attempts: 2, retry_after: 30s}}
    announcements: {{position: false, estimated_wait: false}}
agents:
  - {{id: agent1, name: One, skills: {{general: 5}}}}
"""
    engine = engine_factory(queues=closed, menu={"1": "general"})
    engine.start()
    await peer.agent_talk_time(4, 4)
    # the called-party plan answers this number after 1 s and talks 20 s
    number = "1012059301"
    await peer.call(Customer(number=number, digit="1", prompt_wait=0.5, patience=20, press="1", press_after=6))
    await engine.wait_for(lambda: engine.count_events("callback.scheduled") == 1, 40, "callback promised")
    await engine.wait_for(all_ended(engine, 1), 40, "the closed-hours call to end")
    [request] = engine.calls()
    assert request.disposition == "closed" and request.agent_id is None

    # the promise survives a restart: it is rebuilt from the event log
    engine.stop()
    engine.start()
    await asyncio.sleep(3)
    assert engine.count_events("callback.attempted") == 0, "dialed while the queue is still closed"

    engine.queues_file.write_text(closed.replace("hours: closed", "hours: always"))
    result = subprocess.run([sys.executable, "-m", "ccengine.cli.main", "-c", str(engine.config),
                             "queues", "reload"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    await engine.wait_for(lambda: engine.count_events("callback.finished") == 1, 60, "callback connected")
    await engine.wait_for(all_ended(engine, 2), 60, "the callback call to end")

    _, attempt = engine.calls()
    assert attempt.caller_number == number and attempt.agent_id == "agent1"
    assert attempt.disposition == "completed" and attempt.answered_at is not None
    [scheduled] = engine.events("callback.scheduled")
    assert scheduled.call_id == request.id and scheduled.data["number"] == number
    assert scheduled.data["attempts"] == 2 and scheduled.data["retry_seconds"] == 30
    [attempted] = engine.events("callback.attempted")
    assert attempted.call_id == attempt.id and attempted.data == {"callback_id": request.id, "attempt": 1}
    [finished] = engine.events("callback.finished")
    assert finished.call_id == request.id and finished.data == {"outcome": "connected", "attempts": 1}
    [dialed] = engine.events("call.callback_dialed")
    assert dialed.call_id == attempt.id
    assert verbs(engine, request.id) == ["CALLBACK_SCHEDULED", "CALLBACK_CONNECTED"]
    steps = verbs(engine, attempt.id)
    assert steps[0] == "CALLBACK_ATTEMPT" and "CONNECT" in steps and "ABANDON" not in steps, steps
    await asyncio.sleep(1)
    assert await pbx_channels(lab) == []
