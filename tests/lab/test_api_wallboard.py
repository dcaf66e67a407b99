"""The engine's API on the lab: the wallboard in real headless Chromium shows a real call placed
on the lab PBX, from the engine's own HTTPS server, and follows it to its end."""

from __future__ import annotations

import ssl
from datetime import UTC
from pathlib import Path

import aiohttp
import pytest

from ccengine.api.security import LoginPolicy
from ccengine.api.users import UserStore
from ccengine.lab.traffic import Customer

from ..browser import Browser
from .conftest import ROOT

pytestmark = pytest.mark.lab
ARTIFACTS = ROOT / "var" / "test" / "artifacts"


async def test_wallboard_shows_a_lab_call_within_a_second(engine_factory, peer, lab):  # type: ignore[no-untyped-def]
    engine = engine_factory(agents=2, menu={"1": "general"})
    engine.start()
    users = UserStore(engine.db, LoginPolicy(5, 60.0))
    users.add("floor", "supervisor")
    token = users.create_token("floor")
    base = f"https://127.0.0.1:{engine.settings.http_port}"
    # the engine serves TLS with its generated lab certificate
    trust = ssl.create_default_context(cafile=str(Path(engine.settings.paths.state_dir) / "tls" / "api.crt"))
    async with aiohttp.ClientSession() as http, \
            http.get(base + "/api/v1/agents", ssl=trust, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert {a["id"] for a in await resp.json()} == {"agent1", "agent2"}
    await peer.agent_talk_time(4, 4)
    browser = Browser()
    try:
        await browser.get(f"{base}/wallboard#token={token}")
        await browser.wait_for("document.getElementById('link').textContent === 'live'", 20, "a live stream")
        await peer.call(Customer(number="5559600", digit="1", prompt_wait=1.5, patience=60))
        call_id = await browser.wait_for("document.querySelector('#calls tbody tr')?.dataset.id", 30, "the call")
        shown_at_ms = int(await browser.run(
            "return document.querySelector('#calls tbody tr').dataset.shownAt"))
        offered = [e for e in engine.events("call.offered") if e.call_id == call_id]
        assert len(offered) == 1 and offered[0].data["caller_number"] == "5559600"
        occurred = offered[0].occurred_at.replace(tzinfo=offered[0].occurred_at.tzinfo or UTC)
        shown_after = shown_at_ms / 1000 - occurred.timestamp()
        assert shown_after < 1.0, f"the wallboard showed the call {shown_after:.3f} s after it reached the engine"
        await browser.wait_for("document.querySelector('#calls tbody').textContent.includes('talking')", 30,
                               "the call answered by an agent")
        agents = await browser.text("#agents tbody")
        assert "on call" in agents
        await browser.screenshot(ARTIFACTS / "wallboard-lab.png")
        await browser.wait_for("!document.querySelector('#calls tbody tr')", 40, "the call's end")
        await browser.wait_for("document.querySelector('#queues tbody td:nth-child(5)').textContent === '1'", 20,
                               "today's answered count")
    finally:
        browser.close()
