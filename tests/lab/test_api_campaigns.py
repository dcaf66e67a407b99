"""A blended campaign steered over the engine's API on the lab PBX: started by file name from the
campaigns folder, refused a second start, paused (no dial while paused), resumed, stopped (the
runner ends), every step audited."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from ccengine.api.security import LoginPolicy
from ccengine.api.users import UserStore
from ccengine.audit.chain import AuditTrail
from ccengine.dialer.schema import CampaignRow

from .conftest_dialer import HUMAN, called_number, zone_with_local_hour
from .test_campaign import attempts_of, wait_until
from .test_campaign_blended import QUEUES

pytestmark = pytest.mark.lab


async def test_campaign_started_paused_resumed_and_stopped_over_the_api(  # type: ignore[no-untyped-def]
        engine_factory, peer, lab, workdir):
    two = QUEUES.split("agents:\n")[0] + "agents:\n" + "".join(
        f"  - {{id: {a}, name: {a}, skills: {{general: 5}}}}\n" for a in ("agent23", "agent24"))
    engine = engine_factory(queues=two, menu={"1": "general"})
    folder = workdir / "campaigns"  # the engine's campaigns_dir: "campaigns" next to its settings file
    folder.mkdir()
    zone = zone_with_local_hour(12)
    phones = [called_number(HUMAN, 1, 20, 970 + i) for i in range(30)]
    (folder / "contacts.csv").write_text("id,phone,timezone\n" + "".join(
        f"r{i},{p},{zone}\n" for i, p in enumerate(phones)))
    (folder / "reminders.yaml").write_text(yaml.safe_dump({
        "name": "lab-api-reminders", "mode": "progressive", "queue": "general",
        "caller_id": "4420700006", "contacts": "contacts.csv", "max_attempts": 1,
        "message": "This is Lab Bank. We will call you back. Goodbye."}))
    engine.start()
    await peer.agent_talk_time(2, 2)
    users = UserStore(engine.db, LoginPolicy(5, 60.0))
    users.add("floor", "supervisor")
    token = users.create_token("floor")
    base = f"https://127.0.0.1:{engine.settings.http_port}/api/v1/campaigns"
    trust = ssl.create_default_context(cafile=str(Path(engine.settings.paths.state_dir) / "tls" / "api.crt"))
    db_path = workdir / "ccengine.db"

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async def post(path: str, payload: Any) -> tuple[int, Any]:
            async with http.post(base + path, json=payload, ssl=trust) as resp:
                return resp.status, await resp.json()

        status, started = await post("", {"file": "reminders.yaml"})
        assert status == 201, started
        campaign_id = started["id"]
        status, problem = await post("", {"file": "reminders.yaml"})
        assert status == 409 and "already running" in problem["error"]
        await wait_until(lambda: len(attempts_of(db_path)) >= 3, 40, "three dials")
        assert (await post(f"/{campaign_id}/pause", {"reason": "lab"}))[0] == 200
        await asyncio.sleep(1.5)  # the runner polls its row every second
        paused = len(attempts_of(db_path))
        await asyncio.sleep(5)
        assert len(attempts_of(db_path)) == paused, "dialed while paused"
        assert (await post(f"/{campaign_id}/resume", {}))[0] == 200
        await wait_until(lambda: len(attempts_of(db_path)) > paused, 20, "dialing to resume")
        assert (await post(f"/{campaign_id}/stop", {}))[0] == 200

        def ended() -> bool:
            with Session(engine.db) as session:
                row = session.get(CampaignRow, campaign_id)
                return row is not None and row.ended_at is not None

        await wait_until(ended, 40, "the runner to end the stopped campaign")
        status, problem = await post(f"/{campaign_id}/resume", {})
        assert status == 409 and "stopped" in problem["error"]
    with Session(engine.db) as session:
        [row] = session.scalars(select(CampaignRow)).all()
    assert row.state == "stopped"
    assert 3 < len(attempts_of(db_path)) < len(phones)
    actions = [(e.action, e.outcome) for e in AuditTrail(engine.db).entries() if e.action.startswith("campaign.")]
    assert actions == [("campaign.start", "success"), ("campaign.start", "denied"), ("campaign.pause", "success"),
                       ("campaign.resume", "success"), ("campaign.stop", "success"), ("campaign.resume", "denied")]
