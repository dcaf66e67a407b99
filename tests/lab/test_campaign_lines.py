"""A blended campaign on agents with persistent lines (lab PBX): campaign calls ride the line.

The agents' phones are called once, by the engine (``connection: persistent``);
every answered campaign call must then be put through that open line, like an
inbound call is: a second INVITE would ring a phone that is already on a call.
"""

from __future__ import annotations

import asyncio

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from ccengine.dialer.schema import AttemptRow, CampaignRow, ContactRow, LiveAnswerRow

from .conftest_dialer import HUMAN, NO_ANSWER, called_number, campaign_cli, zone_with_local_hour
from .test_acd import HEADER
from .test_acd_lines import (
    Invites,
    no_lines_left,  # noqa: F401  (autouse: hangs the lines up after the test)
    ready,
    states,
)

pytestmark = pytest.mark.lab

AGENTS = ("agent21", "agent22")
LINES = HEADER + """
queues:
  - id: general
    required_skills: {general: 1}
    hours: always
    wrap_up: 1s
    announcements: {position: false, estimated_wait: false}
agents:
""" + "".join(f"  - {{id: {a}, name: {a}, skills: {{general: 5}}, connection: persistent}}\n" for a in AGENTS)


async def test_campaign_calls_ride_the_agents_persistent_lines(  # type: ignore[no-untyped-def]
        engine_factory, peer, lab, workdir):
    invites = Invites(peer)
    engine = engine_factory(queues=LINES, menu={"1": "general"})
    engine.start()
    try:
        await engine.wait_for(ready(engine, *AGENTS), 30, "both lines to be up")
        zone = zone_with_local_hour(12)
        humans = [called_number(HUMAN, 1, 3, 700 + i) for i in range(8)]
        phones = humans + [called_number(NO_ANSWER, 0, 0, 720 + i) for i in range(2)]
        (workdir / "contacts.csv").write_text("id,phone,timezone\n" + "".join(
            f"l{i},{p},{zone}\n" for i, p in enumerate(phones)))
        (workdir / "campaign.yaml").write_text(yaml.safe_dump({
            "name": "lab-lines", "mode": "predictive", "queue": "general", "caller_id": "4420700007",
            "contacts": "contacts.csv", "max_attempts": 1, "amd": False, "ring_timeout": 15,
            "message": "This is Lab Bank. We will call you back. Goodbye."}))
        run = await asyncio.to_thread(campaign_cli, engine.config, "start", str(workdir / "campaign.yaml"),
                                      "--until-idle", timeout=150)  # the loop keeps reading the peer's events
        assert run.returncode == 0 and "lab-lines: completed" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
        await engine.wait_for(ready(engine, *AGENTS), 20, "both agents back on their lines' hold")
    finally:
        invites.close()

    with Session(engine.db) as session:
        [campaign] = session.scalars(select(CampaignRow)).all()
        contacts = list(session.scalars(select(ContactRow)))
        attempts = {a.id: a for a in session.scalars(select(AttemptRow))}
        answers = list(session.scalars(select(LiveAnswerRow)))
    assert campaign.state == "completed" and all(c.status == "closed" for c in contacts)
    connected = [a for a in attempts.values() if a.outcome == "connected"]
    assert {a.phone for a in connected} == set(humans), [(a.phone, a.outcome, a.cause) for a in attempts.values()]
    assert {a.agent_id for a in connected} <= set(AGENTS)
    assert all(a.agent_connect_ts is not None for a in answers)
    # the phones were called once each (their lines), never again for a campaign call
    assert invites.by_agent == {a: 1 for a in AGENTS}, invites.by_agent
    for agent in AGENTS:
        seen = states(engine, agent)
        assert ("on_call", "") in seen and not [s for s in seen if s[1] in ("line_down", "ring_no_answer")], seen
