"""Blending on the lab PBX: inbound calls and a predictive campaign share the ACD's agents.

The campaign names the ACD queue ``general``; ``ccengine campaign start``
hands it to the running engine, which takes agents for answered campaign
calls through its router. While it dials, customers call in on the same
queue. Checked from the store: every contact and every inbound call ends
properly, and no agent is ever held by two calls: neither in the ACD's own
state history nor in the talk intervals measured on the switch's side.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from ccengine.dialer.schema import AttemptRow, CampaignRow, ContactRow, LiveAnswerRow
from ccengine.lab.traffic import Customer

from .conftest import ROOT
from .conftest_dialer import BUSY, HUMAN, NO_ANSWER, called_number, campaign_cli, zone_with_local_hour
from .test_acd import HEADER
from .test_campaign import attempts_of, wait_until

pytestmark = pytest.mark.lab

AGENTS = [f"agent{i}" for i in range(11, 19)]
QUEUES = HEADER + """
queues:
  - id: general
    required_skills: {general: 1}
    hours: always
    wrap_up: 1s
    announcements: {position: false, estimated_wait: false}
agents:
""" + "".join(f"  - {{id: {a}, name: {a}, skills: {{general: 5}}}}\n" for a in AGENTS)
INBOUND = 12


def _utc(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


async def test_inbound_and_campaign_share_agents_without_double_booking(  # type: ignore[no-untyped-def]
        engine_factory, peer, lab, workdir):
    engine = engine_factory(queues=QUEUES, menu={"1": "general"})
    engine.start()
    await peer.agent_talk_time(3, 5)
    zone = zone_with_local_hour(12)
    phones = ([called_number(HUMAN, 1 + i % 3, 5, 900 + i) for i in range(30)]
              + [called_number(NO_ANSWER, 0, 0, 940 + i) for i in range(5)]
              + [called_number(BUSY, 1, 0, 950 + i) for i in range(5)])
    (workdir / "contacts.csv").write_text("id,phone,timezone\n" + "".join(
        f"b{i},{p},{zone}\n" for i, p in enumerate(phones)))
    (workdir / "campaign.yaml").write_text(yaml.safe_dump({
        "name": "lab-blended", "mode": "predictive", "target": 0.02, "queue": "general",
        "caller_id": "4420700003", "contacts": "contacts.csv", "max_attempts": 1, "amd": False,
        "message": "This is Lab Bank calling about your account. We will call you back. Goodbye.",
        "ring_timeout": 15}))

    # refused up front: a standalone campaign ringing the engine's agents, a queue the ACD lacks
    standalone = yaml.safe_load((workdir / "campaign.yaml").read_text())
    standalone.pop("queue")
    (workdir / "standalone.yaml").write_text(yaml.safe_dump({**standalone, "agents": ["agent11", "agent40"]}))
    refused = campaign_cli(engine.config, "start", str(workdir / "standalone.yaml"))
    assert refused.returncode == 1 and "agent11 belong to the running engine" in refused.stderr, refused.stderr
    (workdir / "nowhere.yaml").write_text(yaml.safe_dump({**standalone, "queue": "nowhere"}))
    refused = campaign_cli(engine.config, "start", str(workdir / "nowhere.yaml"))
    assert refused.returncode == 1 and "unknown queue 'nowhere'" in refused.stderr, refused.stderr

    async def inbound() -> None:
        await asyncio.sleep(3)
        for i in range(INBOUND):
            await peer.call(Customer(number=f"55593{i:02d}", digit="1", prompt_wait=0.5, patience=120))
            await asyncio.sleep(2.5)

    started = time.monotonic()
    callers = asyncio.create_task(inbound())
    run = await asyncio.to_thread(campaign_cli, engine.config, "start", str(workdir / "campaign.yaml"), "--until-idle",
                                  timeout=180)
    await callers
    (workdir / "campaign.out").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "started in the engine" in run.stdout and "lab-blended: completed" in run.stdout, run.stdout[-2000:]
    await engine.wait_for(lambda: sum(1 for c in engine.calls() if c.ended_at) == INBOUND, 90,
                          "the inbound calls to end")
    elapsed = time.monotonic() - started

    with Session(engine.db) as session:
        [campaign] = session.scalars(select(CampaignRow)).all()
        contacts = list(session.scalars(select(ContactRow)))
        attempts = {a.id: a for a in session.scalars(select(AttemptRow))}
        answers = list(session.scalars(select(LiveAnswerRow)))
    assert campaign.state == "completed"
    assert all(c.status == "closed" and c.final_reason for c in contacts)
    assert {a.phone for a in attempts.values()} == set(phones)
    assert all(a.outcome for a in attempts.values())
    calls = engine.calls()
    assert len(calls) == INBOUND and all(c.disposition == "completed" and c.agent_id for c in calls), \
        [(c.caller_number, c.disposition, c.agent_id) for c in calls]

    # the ACD's own record: an agent is only ever reserved from ready, whatever the call's origin
    last: dict[str, str] = {}
    outbound_reservations = 0
    for event in engine.events("agent.state_changed"):
        state, agent = event.data["state"], str(event.agent_id)
        if state == "reserved":
            assert event.data["previous"] == "ready", (agent, event.call_id, event.data)
            outbound_reservations += event.call_id in attempts
        last[agent] = state
    connected = [a for a in attempts.values() if a.outcome == "connected"]
    assert outbound_reservations >= len(connected) >= 10
    # eight agents are too few to predict: pacing is progressive, and on shared agents each call
    # holds its agent from the dial, so an inbound call cannot take it before the answer
    assert not [a.id for a in attempts.values() if a.outcome == "abandoned"]

    # the switch's side: talk intervals per agent, inbound and outbound, never overlap
    intervals: dict[str, list[tuple[float, float, str]]] = {}
    for c in calls:
        assert c.answered_at and c.ended_at and c.agent_id
        intervals.setdefault(c.agent_id, []).append((_utc(c.answered_at), _utc(c.ended_at), f"in {c.id}"))
    for answer in answers:
        attempt = attempts[answer.attempt_id]
        if answer.agent_connect_ts is not None:
            assert attempt.agent_id and attempt.ended_at
            intervals.setdefault(attempt.agent_id, []).append(
                (_utc(answer.agent_connect_ts), _utc(attempt.ended_at), f"out {attempt.id}"))
        else:
            assert answer.message_played, attempt.id
    for agent, spans in intervals.items():
        spans.sort()
        for (_s1, end1, first), (start2, _e2, second) in itertools.pairwise(spans):
            assert start2 >= end1, f"{agent} on {second} before {first} ended"
    inbound_agents = {c.agent_id for c in calls}
    outbound_agents = {a.agent_id for a in connected}
    assert inbound_agents & outbound_agents, "the two kinds of calls shared no agent"
    print(f"blended: {len(phones)} contacts, {INBOUND} inbound, {len(connected)} outbound connected, "
          f"{elapsed:.0f} s, agents shared {len(inbound_agents & outbound_agents)}")


async def test_blended_progressive_campaign_pauses_resumes_and_stops(  # type: ignore[no-untyped-def]
        engine_factory, peer, lab, workdir):
    """Progressive through the ACD (an agent reserved per dial); steered from other shells."""
    two = QUEUES.split("agents:\n")[0] + "agents:\n" + "".join(
        f"  - {{id: {a}, name: {a}, skills: {{general: 5}}}}\n" for a in ("agent19", "agent20"))
    engine = engine_factory(queues=two, menu={"1": "general"})
    engine.start()
    await peer.agent_talk_time(2, 2)
    zone = zone_with_local_hour(12)
    phones = [called_number(HUMAN, 1, 20, 960 + i) for i in range(30)]
    (workdir / "contacts.csv").write_text("id,phone,timezone\n" + "".join(
        f"r{i},{p},{zone}\n" for i, p in enumerate(phones)))
    (workdir / "campaign.yaml").write_text(yaml.safe_dump({
        "name": "lab-blended-reminders", "mode": "progressive", "queue": "general",
        "caller_id": "4420700005", "contacts": "contacts.csv", "max_attempts": 1,
        "message": "This is Lab Bank. We will call you back. Goodbye."}))
    db_path = workdir / "ccengine.db"
    log = (workdir / "campaign.out").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "ccengine.cli.main", "-c", str(engine.config), "campaign",
                             "start", str(workdir / "campaign.yaml")], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        await wait_until(lambda: len(attempts_of(db_path)) >= 3, 40, "three dials")
        assert campaign_cli(engine.config, "pause", "lab-blended-reminders").returncode == 0
        await asyncio.sleep(1.5)  # the runner polls its row every second
        paused = len(attempts_of(db_path))
        await asyncio.sleep(5)
        assert len(attempts_of(db_path)) == paused, "dialed while paused"
        assert campaign_cli(engine.config, "resume", "lab-blended-reminders").returncode == 0
        await wait_until(lambda: len(attempts_of(db_path)) > paused, 20, "dialing to resume")
        assert campaign_cli(engine.config, "stop", "lab-blended-reminders").returncode == 0
        await asyncio.to_thread(proc.wait, 40)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = (workdir / "campaign.out").read_text()
    assert proc.returncode == 0 and "lab-blended-reminders: stopped" in output, output[-2000:]
    attempts = attempts_of(db_path)
    assert 3 < len(attempts) < len(phones)
    assert {a.outcome for a in attempts} == {"connected"} and {a.agent_id for a in attempts} <= {"agent19", "agent20"}
    # progressive through the ACD: the agent is reserved when the number is dialed, never two at once
    held: dict[str, str] = {}
    for event in engine.events("agent.state_changed"):
        agent, state = str(event.agent_id), event.data["state"]
        if state == "reserved":
            assert agent not in held, (agent, held[agent], event.call_id)
            held[agent] = str(event.call_id)
        elif state in ("ready", "not_ready", "logged_out"):
            held.pop(agent, None)
    status = campaign_cli(engine.config, "status", "lab-blended-reminders")
    assert "stopped" in status.stdout and "abandoned 0" in status.stdout, status.stdout
