"""Forced recording on the lab PBX: outside stops and mutes are undone, the result is sealed."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from ccengine.audit.chain import AuditTrail
from ccengine.lab.traffic import Customer
from ccengine.pbx.asterisk.ami import AmiClient
from ccengine.recording.vault import Vault

from .conftest import pbx_channels

pytestmark = pytest.mark.lab


async def _ami(settings) -> AmiClient:  # type: ignore[no-untyped-def]
    async def ignore(_up: bool, _reason: str) -> None:
        return None

    client = AmiClient(settings.pbx.ami.host, settings.pbx.ami.port, settings.pbx.ami.username,
                       settings.pbx.ami.secret, events="off")
    await asyncio.wait_for(client.start(ignore), 15)
    return client


async def _channel_name(ami: AmiClient, uniqueid: str) -> str:
    rows = await ami.action({"Action": "CoreShowChannels"}, as_list=True)
    return next(str(r["Channel"]) for r in rows if r.get("Event") == "CoreShowChannel"
                and r.get("Uniqueid") == uniqueid)


async def test_outside_stop_and_mute_are_undone_and_the_recording_sealed(  # type: ignore[no-untyped-def]
        engine_factory, peer, lab):
    engine = engine_factory(agents=1)
    engine.start()
    await peer.set_global("AGENT_TALK_agent1", "9")
    ami = await _ami(engine.settings)
    try:
        await peer.call(Customer(number="5553001", digit="1", prompt_wait=0.5, patience=60))
        await engine.wait_for(lambda: engine.count_events("call.recording_started") == 1, 30, "recording")
        [offered] = engine.events("call.offered")
        customer = await _channel_name(ami, offered.data["channel_id"])
        # the agent keys the usual one-touch recording codes: nothing is mapped, nothing stops
        [agent_leg] = [r for r in await peer.ami.action({"Action": "CoreShowChannels"}, as_list=True)
                       if r.get("Event") == "CoreShowChannel" and str(r.get("Exten", "")).startswith("agent")]
        for digit in "*3*1":
            await peer.ami.action({"Action": "PlayDTMF", "Channel": str(agent_leg["Channel"]), "Digit": digit})
        await asyncio.sleep(1.0)
        # a privileged operator stops the recording, then mutes the restarted one
        await ami.action({"Action": "StopMixMonitor", "Channel": customer})
        await engine.wait_for(lambda: engine.count_events("recording.tamper_attempt") == 1, 5, "the restart")
        await asyncio.sleep(1.0)
        await ami.action({"Action": "MixMonitorMute", "Channel": customer, "Direction": "both", "State": "1"})
        await engine.wait_for(lambda: engine.count_events("recording.tamper_attempt") == 2, 5, "the unmute")
        await engine.wait_for(lambda: engine.count_events("call.recording_sealed") == 1, 40, "the sealed recording")
    finally:
        await peer.set_global("AGENT_TALK_agent1", "")
        await ami.close()

    [call] = engine.calls()
    assert call.disposition == "completed"
    stopped, muted = (e.data for e in engine.events("recording.tamper_attempt"))
    assert stopped["action"] == "stopped" and stopped["segment"] == 1 and stopped["gap_seconds"] <= 1.0
    assert muted["action"] == "muted" and muted["segment"] == 1
    [sealed] = engine.events("call.recording_sealed")
    assert sealed.data["segments"] == 2
    vault = Vault(engine.settings.recording.vault_dir, create=False)
    assert vault.verify(sealed.data["recording_id"]) == []
    manifest = vault.manifest(sealed.data["recording_id"]).manifest
    assert [s.reason for s in manifest.segments] == ["start", "restart_after_stop"]
    gap = (manifest.segments[1].started_at - manifest.segments[0].ended_at).total_seconds()
    assert 0 <= gap <= 1.0, gap
    out = io.BytesIO()
    vault.export(sealed.data["recording_id"], out)
    out.seek(0)
    with wave.open(out) as wav:
        audio = wav.getnframes() / wav.getframerate()
    talk = (call.ended_at - call.bridged_at).total_seconds()
    assert abs(audio - talk) <= 1.5, (audio, talk)  # one timeline: the gap is kept as silence

    # a supervisor listens on their phone (agent5's softphone stays on the line for 30 s)
    await peer.set_global("AGENT_TALK_agent5", "30")
    try:
        played = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "ccengine.cli.main", "-c", str(engine.config), "recordings", "play",
            sealed.data["recording_id"], "--to", "PJSIP/agent5", "--actor", "supervisor1"],
            capture_output=True, text=True, timeout=90)
    finally:
        await peer.set_global("AGENT_TALK_agent5", "")
    assert played.returncode == 0, played.stdout + played.stderr
    on_line = float(played.stdout.split("(")[1].split(" s on the line")[0])
    assert audio - 1.0 <= on_line <= audio + 3.0, (on_line, audio)  # the whole recording, then hang-up
    assert not list((engine.settings.paths.state_dir / "playback").iterdir()), "no plaintext left behind"
    trail = AuditTrail.from_url(engine.settings.database.url, create=False)
    [entry] = [e for e in trail.entries() if e.action == "recording.playback"]
    assert entry.actor == "supervisor1" and entry.target == sealed.data["recording_id"]
    assert entry.outcome == "success" and trail.verify() == []
    await asyncio.sleep(1)
    assert await pbx_channels(lab) == []


QUEUES = """
version: 1
skills: [{id: general}, {id: cards}]
calendars:
  always: {timezone: UTC, open: {mon-sun: ["00:00-24:00"]}}
queues:
  - {id: general, required_skills: {general: 1}, hours: always, recording_failure: end,
     announcements: {position: false, estimated_wait: false}}
  - {id: cards, required_skills: {cards: 1}, hours: always, recording_failure: hold,
     announcements: {position: false, estimated_wait: false}}
agents:
  - {id: agent1, name: One, skills: {general: 5}}
  - {id: agent2, name: Two, skills: {cards: 5}}
"""


async def test_recording_folder_read_only_mid_call_fails_closed(  # type: ignore[no-untyped-def]
        engine_factory, peer, lab):
    engine = engine_factory(queues=QUEUES, menu={"1": "general", "2": "cards"})
    engine.start()
    await peer.set_global("AGENT_TALK_agent1", "20")
    await peer.set_global("AGENT_TALK_agent2", "16")
    folder = None
    try:
        await peer.call(Customer(number="5553101", digit="1", prompt_wait=0.5, patience=60))
        await peer.call(Customer(number="5553102", digit="2", prompt_wait=0.5, patience=60))
        await engine.wait_for(lambda: engine.count_events("call.recording_started") == 2, 30, "both recorded")
        await asyncio.sleep(1.0)
        folder = Path(engine.events("call.recording_started")[0].data["path"]).parent
        subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        await engine.wait_for(lambda: engine.count_events("recording.failed") == 2, 5, "both failures seen")
        await asyncio.sleep(3.0)  # the held call stays on hold while the folder refuses writes
        assert engine.count_events("recording.resumed") == 0
        subprocess.run(["umount", str(folder)], check=True)
        folder = None
        await engine.wait_for(lambda: engine.count_events("recording.resumed") == 1, 5, "the held call resumed")
        await engine.wait_for(lambda: engine.count_events("call.recording_sealed") == 2, 40, "both sealed")
    finally:
        if folder is not None:
            subprocess.run(["umount", str(folder)], check=False)
        await peer.set_global("AGENT_TALK_agent1", "")
        await peer.set_global("AGENT_TALK_agent2", "")

    calls = {c.caller_number: c for c in engine.calls()}
    ended, held = calls["5553101"], calls["5553102"]
    failures = {e.call_id: e.data for e in engine.events("recording.failed")}
    assert failures[ended.id]["policy"] == "end" and "Read-only" in failures[ended.id]["reason"]
    assert failures[held.id]["policy"] == "hold"
    assert ended.disposition == "failed" and ended.ended_by == "system"
    assert (ended.ended_at - ended.bridged_at).total_seconds() < 15, "ended by the policy, not by the agent"
    [resumed] = engine.events("recording.resumed")
    assert resumed.call_id == held.id and resumed.data["held_seconds"] >= 3.0
    assert held.disposition == "completed"
    sealed = {e.call_id: e.data for e in engine.events("call.recording_sealed")}
    vault = Vault(engine.settings.recording.vault_dir, create=False)
    manifest = vault.manifest(sealed[held.id]["recording_id"]).manifest
    assert [s.reason for s in manifest.segments] == ["start", "restart_after_failure"]
    assert vault.verify() == []
    await asyncio.sleep(1)
    assert await pbx_channels(lab) == []
