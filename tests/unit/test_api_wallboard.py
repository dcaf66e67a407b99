"""The wallboard page in real headless Chromium against a real API server: snapshot over
REST, then live updates over the event stream (the lab test adds real calls)."""

from __future__ import annotations

from pathlib import Path

from ccengine.core.events import AgentStateChanged, CallAnswered, CallEnded, CallOffered, CallQueued, Event

from ..browser import Browser
from .api_support import running_api

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test" / "artifacts"


async def test_wallboard_follows_the_stream(tmp_path: Path) -> None:
    async with running_api(tmp_path, tls=True) as api:
        api.ctx.acd.login("agent1", ready=True)  # type: ignore[union-attr]
        await api.writer.flush()
        browser = Browser()
        try:
            await browser.get(f"{api.url}/wallboard#token={api.tokens['supervisor']}")
            await browser.wait_for("document.getElementById('link').textContent === 'live'", 15, "a live stream")
            assert "ready" in await browser.text("#agents tbody")
            api.bus.publish(Event.of(CallOffered(caller_number="5551234", dialed="100", channel_id="ch1"),
                                     call_id="call-0001"))
            api.bus.publish(Event.of(CallQueued(queue="general", position=1), call_id="call-0001", queue="general"))
            await browser.wait_for("document.querySelector('#calls tr[data-id=\"call-0001\"]')", 15, "the call")
            queues = await browser.text("#queues tbody")
            assert queues.startswith("general 1"), queues
            assert "5551234 queued general" in await browser.text("#calls tbody")
            api.bus.publish(Event.of(AgentStateChanged(state="on_call", previous="ready"), agent_id="agent1",
                                     call_id="call-0001"))
            api.bus.publish(Event.of(CallAnswered(queue="general", agent_id="agent1", wait_seconds=2.0),
                                     call_id="call-0001", agent_id="agent1", queue="general"))
            await browser.wait_for("document.querySelector('#calls tbody').textContent.includes('talking')", 15,
                                   "the answered call")
            assert "on call" in await browser.text("#agents tbody")
            assert (await browser.text("#queues tbody")).startswith("general 0")
            await browser.screenshot(ARTIFACTS / "wallboard-unit.png")
            api.bus.publish(Event.of(CallEnded(disposition="completed", ended_by="customer"), call_id="call-0001",
                                     agent_id="agent1", queue="general"))
            await browser.wait_for("!document.querySelector('#calls tr[data-id=\"call-0001\"]')", 15, "the call end")
            # a bad token shows nothing: the page's REST snapshot is refused
            await browser.get("about:blank")  # a new fragment alone would not reload the page
            await browser.get(f"{api.url}/wallboard#token=cce_wrong")
            await browser.wait_for("document.getElementById('link').textContent.startsWith('error')", 15,
                                   "the refusal")
            assert "/api/v1/queues: 401" in await browser.text("#link")
            assert await browser.text("#calls tbody") == ""
        finally:
            browser.close()
