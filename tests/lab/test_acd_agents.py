"""Agent control on the running engine, business hours, maximum wait and last-agent affinity (lab PBX)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest

from ccengine.lab.traffic import Customer

from .conftest import ROOT
from .test_acd import HEADER, all_ended, verbs

pytestmark = pytest.mark.lab

TWO_AGENTS = HEADER + """
queues:
  - id: general
    required_skills: {general: 1}
    hours: always
    affinity_window: 1h
    announcements: {position: false, estimated_wait: false}
agents:
  - {id: agent1, name: One, skills: {general: 5}}
  - {id: agent2, name: Two, skills: {general: 5}}
"""


def cli(engine, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([sys.executable, "-m", "ccengine.cli.main", "-c", str(engine.config), *args],
                          capture_output=True, text=True, cwd=ROOT)


async def test_agents_go_not_ready_with_a_reason_and_log_out(engine_factory, peer, lab):  # type: ignore[no-untyped-def]
    engine = engine_factory(queues=TWO_AGENTS, menu={"1": "general"})
    engine.start()
    await peer.agent_talk_time(2, 2)
    refused = cli(engine, "agents", "not-ready", "agent1", "--reason", "nap")
    assert refused.returncode == 1 and "reason must be one of" in refused.stderr
    done = cli(engine, "agents", "not-ready", "agent1", "--reason", "lunch")
    assert done.returncode == 0 and "not_ready lunch" in done.stdout
    await peer.call(Customer(number="5559400", digit="1", prompt_wait=0.5, patience=60))
    await engine.wait_for(all_ended(engine, 1), 30, "the first call")
    assert engine.calls()[0].agent_id == "agent2", "a not-ready agent gets no call"

    assert cli(engine, "agents", "ready", "agent1").returncode == 0
    assert cli(engine, "agents", "logout", "agent2").returncode == 0
    listing = cli(engine, "agents", "list").stdout
    assert "agent1" in listing and "agent2      logged_out" in listing
    await peer.call(Customer(number="5559401", digit="1", prompt_wait=0.5, patience=60))
    await engine.wait_for(all_ended(engine, 2), 30, "the second call")
    assert engine.calls()[1].agent_id == "agent1"
    states = [(e.agent_id, e.data["state"], e.data["reason"]) for e in engine.events("agent.state_changed")]
    assert ("agent1", "not_ready", "lunch") in states and ("agent2", "logged_out", "logout") in states
    assert cli(engine, "agents", "ready", "nobody").returncode == 1


async def test_returning_caller_gets_the_last_agent(engine_factory, peer, lab):  # type: ignore[no-untyped-def]
    engine = engine_factory(queues=TWO_AGENTS, menu={"1": "general"})
    engine.start()
    await peer.agent_talk_time(2, 2)
    await peer.call(Customer(number="5559500", digit="1", prompt_wait=0.5, patience=60))
    await engine.wait_for(all_ended(engine, 1), 30, "the first call")
    first_agent = engine.calls()[0].agent_id
    await engine.wait_for(
        lambda: [e.data["state"] for e in engine.events("agent.state_changed") if e.agent_id == first_agent][-1]
        == "ready", 10, "the first agent to be ready again")
    # longest idle would now pick the other agent; affinity brings the caller back to the first
    await peer.call(Customer(number="5559500", digit="1", prompt_wait=0.5, patience=60))
    await engine.wait_for(all_ended(engine, 2), 30, "the second call")
    assert engine.calls()[1].agent_id == first_agent
    await peer.call(Customer(number="5559501", digit="1", prompt_wait=0.5, patience=60))
    await engine.wait_for(all_ended(engine, 3), 30, "a stranger's call")
    assert engine.calls()[2].agent_id != first_agent, "without affinity the longest idle agent answers"


async def test_closed_queue_and_maximum_wait_end_the_call_politely(engine_factory, peer, lab):  # type: ignore[no-untyped-def]
    today = datetime.now(UTC).date().isoformat()
    queues = HEADER + f"""
  shut:
    timezone: UTC
    open: {{mon-sun: ["00:00-24:00"]}}
    holidays: [{{date: {today}, name: Closure}}]
queues:
  - id: general
    required_skills: {{general: 1}}
    hours: always
    max_wait: 3s
    on_max_wait: disconnect
    announcements: {{position: false, estimated_wait: false}}
  - id: cards
    required_skills: {{cards: 1}}
    hours: shut
agents:
  - {{id: agent1, name: One, skills: {{general: 5, cards: 5}}}}
"""
    engine = engine_factory(queues=queues, menu={"1": "general", "2": "cards"})
    engine.start()
    assert cli(engine, "agents", "not-ready", "agent1", "--reason", "meeting").returncode == 0
    await peer.call(Customer(number="5559600", digit="2", prompt_wait=0.5, patience=60))
    await peer.call(Customer(number="5559601", digit="1", prompt_wait=0.5, patience=60))
    await engine.wait_for(all_ended(engine, 2), 40, "both calls to end")
    by_number = {c.caller_number: c for c in engine.calls()}
    closed, waited = by_number["5559600"], by_number["5559601"]
    assert closed.disposition == "closed" and closed.ended_by == "system" and closed.queued_at is None
    assert waited.disposition == "timed_out" and waited.agent_id is None
    assert 3 <= (waited.ended_at - waited.queued_at).total_seconds() <= 15
    assert verbs(engine, waited.id) == ["ENTERQUEUE", "EXITWITHTIMEOUT"]
