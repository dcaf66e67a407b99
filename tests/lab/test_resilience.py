"""The engine survives the PBX restarting under it, and its own sudden death."""

from __future__ import annotations

import asyncio

import pytest

from ccengine.lab.traffic import Customer

from .conftest import pbx_channels

pytestmark = pytest.mark.lab


def talking(engine, count: int):  # type: ignore[no-untyped-def]
    return lambda: sum(1 for c in engine.calls() if c.state == "talking") >= count


async def test_pbx_restart_mid_traffic_reconnects_resyncs_and_serves(engine_factory, peer, lab):  # type: ignore[no-untyped-def]
    engine = engine_factory(agents=3)
    engine.start()
    await peer.agent_talk_time(15, 20)
    for i in range(3):
        await peer.call(Customer(number=f"555300{i}", prompt_wait=0.5, patience=60))
    await engine.wait_for(talking(engine, 2), 30, "calls to be talking")

    await asyncio.to_thread(lab.restart, "pbx")
    await engine.wait_for(lambda: engine.count_events("engine.resynced") >= 2, 30, "the engine to resync")
    await engine.wait_for(lambda: all(c.ended_at for c in engine.calls()), 30, "in-flight calls to be closed")

    def links() -> list[tuple[str, bool]]:
        return [(e.data["link"], e.data["up"]) for e in engine.events("engine.pbx_link")]

    await engine.wait_for(lambda: links().count(("ami", True)) >= 2, 15, "AMI to reconnect")
    assert ("ari", False) in links() and links().count(("ari", True)) >= 2
    assert ("ami", False) in links()

    await peer.agent_talk_time(2, 3)
    await peer.call(Customer(number="5553100", prompt_wait=0.5, patience=60))
    await engine.wait_for(
        lambda: any(c.caller_number == "5553100" and c.disposition == "completed" for c in engine.calls()),
        40, "a new call to complete after the restart")
    agents = {e.agent_id: e.data["state"] for e in engine.events("agent.state_changed")}
    assert set(agents.values()) <= {"ready", "wrapup"}


async def test_engine_sigkill_mid_call_is_recovered_on_restart(engine_factory, peer, lab):  # type: ignore[no-untyped-def]
    engine = engine_factory(agents=1)
    engine.start()
    await peer.set_global("AGENT_TALK_agent1", "12")
    try:
        await peer.call(Customer(number="5554000", prompt_wait=0.5, patience=90))
        await engine.wait_for(talking(engine, 1), 30, "the call to be talking")
        await engine.wait_for(lambda: engine.count_events("call.recording_started") == 1, 5, "recording")
        engine.kill()
        await asyncio.sleep(1.5)
        assert len(await pbx_channels(lab)) == 2, "the call must go on without the engine"
        [call] = engine.calls()
        assert call.ended_at is None

        engine.start()
        [resynced] = engine.events("engine.resynced")[-1:]
        assert resynced.data["calls_recovered"] == 1
        await engine.wait_for(lambda: engine.calls()[0].ended_at is not None, 30, "the call's end")
    finally:
        await peer.set_global("AGENT_TALK_agent1", "")

    [call] = engine.calls()
    assert call.disposition == "completed" and call.ended_by == "agent"
    talk = (call.ended_at - call.answered_at).total_seconds()
    assert 11.0 <= talk <= 14.0, talk
    await engine.wait_for(lambda: engine.count_events("call.recording_stopped") == 1, 5, "recording closed")
    stopped = engine.events("call.recording_stopped")
    assert len(stopped) == 1 and stopped[0].data["duration_seconds"] == pytest.approx(talk, abs=1.0)
    await asyncio.sleep(0.5)
    assert await pbx_channels(lab) == []
