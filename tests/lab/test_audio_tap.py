"""The live audio tap on the lab PBX: scripted espeak-ng speech from `peer` on both sides of real calls.

The customer on `peer` and the agent's softphone each play a sound file laid
out on one timeline (turns, a planned silence); the engine taps both
directions of the bridged call (snoop + externalMedia RTP) and its analysers
publish events, which the store keeps. Calls run in parallel to keep the
suite short.
"""

from __future__ import annotations

import asyncio
import io
import ssl
import wave
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import yaml
from sqlalchemy import text

from ccengine.api.security import LoginPolicy
from ccengine.api.users import UserStore
from ccengine.config import load_settings
from ccengine.lab.traffic import Customer
from ccengine.recording.vault import Vault
from tests.unit.test_audio_analysers import ANGRY, CALM, RATE, Pcm, say, silence

from .conftest import pbx_channels
from .test_api_supervision import eventually

pytestmark = pytest.mark.lab

LEAD_S = 1.5  # both scripts start when the agent answers; the tap joins a fraction of a second later
AGENT_VOICE, CUSTOMER_VOICE = "en-us", "en-us+f3"
CARD = "4111111111111111"

ANALYTICS = """
codec: slin
vad: {mode: 2, silence_event_s: 5.0}
phrases:
  recorded: {text: this call is recorded, kind: disclosure, speaker: agent, deadline_s: 30}
default: {analysers: []}
queues:
  general: {analysers: [vad, agitation, keywords, cards], phrases: [recorded]}
"""


@dataclass
class Script:
    """Two tracks on one timeline; remembers each speaker's talk time and where silences begin."""

    agent: list[Pcm] = field(default_factory=lambda: [silence(LEAD_S)])
    customer: list[Pcm] = field(default_factory=lambda: [silence(LEAD_S)])
    talk: dict[str, float] = field(default_factory=lambda: {"agent": 0.0, "customer": 0.0})
    silences: list[float] = field(default_factory=list)  # script time of each planned silence's start
    turns: list[tuple[str, float, float]] = field(default_factory=list)  # (who, start, seconds)
    t: float = LEAD_S
    customer_tail: float = 4.0  # customer audio after the agent's track ends; 0: the customer goes quiet early

    def say(self, who: str, line: str, gap: float = 0.6, voice: str | None = None,
            prosody: dict[str, int] | None = None) -> Script:
        pcm = say(line, voice or (AGENT_VOICE if who == "agent" else CUSTOMER_VOICE), **(prosody or {}))
        seconds = len(pcm) / RATE
        self.talk[who] += seconds
        self.turns.append((who, self.t, seconds))
        mine, other = (self.agent, self.customer) if who == "agent" else (self.customer, self.agent)
        mine += [pcm, silence(gap)]
        other.append(silence(seconds + gap))
        self.t += seconds + gap
        return self

    def pause(self, seconds: float, after_gap: float = 0.6) -> Script:
        """Both silent for ``seconds`` after the last turn's gap (the silence starts with that gap)."""
        self.silences.append(self.t - after_gap)
        self.agent.append(silence(seconds - after_gap))
        self.customer.append(silence(seconds - after_gap))
        self.t += seconds - after_gap
        return self

    def write(self, folder: Path, name: str) -> tuple[str, str]:
        """Agent track (the agent hangs up at its end) and customer track (then the customer sends nothing)."""
        folder.mkdir(parents=True, exist_ok=True)
        agent = np.concatenate([*self.agent, silence(1.0)])
        last = max((start + seconds for who, start, seconds in self.turns if who == "customer"), default=LEAD_S)
        customer = np.concatenate([*self.customer, silence(1.0 + self.customer_tail)])
        if not self.customer_tail:
            customer = customer[:int((last + 0.3) * RATE)]
        paths = []
        for who, pcm in (("agent", agent), ("customer", customer)):
            path = folder / f"{name}-{who}.wav"
            with wave.open(str(path), "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(RATE)
                wav.writeframes(pcm.astype("<i2").tobytes())
            paths.append(str(path.with_suffix("")))
        return paths[0], paths[1]


def with_analytics(engine, document: str) -> None:  # type: ignore[no-untyped-def]
    """Point the test engine's settings at an analytics file (the tap is off unless configured)."""
    path = engine.workdir / "analytics.yaml"
    path.write_text(document)
    settings = yaml.safe_load(engine.config.read_text())
    settings["analytics"] = str(path)
    engine.config.write_text(yaml.safe_dump(settings))
    engine.settings = load_settings(engine.config)


async def place(peer, script: Script, folder: Path, number: str) -> None:  # type: ignore[no-untyped-def]
    agent, customer = script.write(folder, number)
    await peer.agent_script(number, agent)
    await peer.call(Customer(number=number, digit="1", prompt_wait=0.5, patience=90, speech=customer))


def by_call(engine, event_type: str) -> dict[str, list]:  # type: ignore[no-untyped-def,type-arg]
    out: dict[str, list] = {}  # type: ignore[type-arg]
    for e in engine.events(event_type):
        out.setdefault(e.call_id, []).append(e)
    return out


def summaries_for(engine, expected: int):  # type: ignore[no-untyped-def]
    def check() -> bool:
        return bool(engine.count_events("call.analytics.summary") >= expected)
    return check


async def test_scripted_calls_give_talk_time_silence_agitation_disclosure_and_card_events(  # type: ignore[no-untyped-def]
        engine_factory, peer, lab):
    engine = engine_factory(agents=4)
    with_analytics(engine, ANALYTICS)
    engine.start()
    folder = engine.workdir / "scripts"
    turns = (Script()
             .say("agent", "Good morning, this call is recorded. How can I help you today?")
             .say("customer", "Hello. I would like to check the balance of my savings account.")
             .say("agent", "Of course. Let me look that up for you.")
             .pause(8.0)
             .say("agent", "Your balance is two thousand and forty dollars.")
             .say("customer", "Great, that is all I needed. Goodbye."))
    calm_voice = {"amplitude": 60, "speed": 150, "pitch": 40}
    omitted = Script().say("agent", "Good morning, thank you for calling the bank. How can I help?")
    for line in CALM[:5]:
        omitted.say("customer", line, gap=0.5, prosody=calm_voice)
    agitated = Script().say("agent", "Good morning, this call is recorded. How can I help?")
    for line in CALM[:4]:
        agitated.say("customer", line, gap=0.5, prosody=calm_voice)
    for line in ANGRY:
        agitated.say("customer", line, gap=0.5, prosody={"amplitude": 180, "speed": 230, "pitch": 85})
    card = (Script().say("agent", "Good morning, this call is recorded. How can I help?")
            # pocketsphinx's digits are voice-dependent: this voice is the one calibrated offline (unit tests)
            .say("customer", "My card number is four one one one, one one one one, one one one one, one one one one.",
                 voice="en-us")
            .say("agent", "Thank you. I will block this card for you now."))
    card.customer_tail = 0  # their phone goes quiet while the agent talks (the lab PBX still sends silence frames)
    scripts = {"5558101": turns, "5558102": omitted, "5558103": agitated, "5558104": card}
    for number, script in scripts.items():
        await place(peer, script, folder, number)
        await asyncio.sleep(0.2)
    await engine.wait_for(summaries_for(engine, len(scripts)), 90, "every call's analytics summary")

    calls = {c.caller_number: c for c in engine.calls()}
    assert {n: calls[n].disposition for n in scripts} == dict.fromkeys(scripts, "completed")
    ids = {n: calls[n].id for n in scripts}
    summary = {e.call_id: e.data for e in engine.events("call.analytics.summary")}
    for number in scripts:
        s = summary[ids[number]]
        assert sorted(s["directions"]) == ["agent", "customer"], s
        assert s["dropped_frames"] == 0 and s["utterances_skipped"] == 0 and s["frames"] > 0, s

    # two speakers, scripted turns: talk time per direction within 5 %, the planned silence on time
    s = summary[ids["5558101"]]
    for who in ("agent", "customer"):
        assert abs(s[f"{who}_talk_s"] - turns.talk[who]) / turns.talk[who] < 0.05, (who, s, turns.talk)
    silences = by_call(engine, "call.analytics.silence").get(ids["5558101"], [])
    assert len(silences) == 1, [e.data for e in silences]
    answered = next(e for e in engine.events("call.answered") if e.call_id == ids["5558101"])
    planned = answered.occurred_at + timedelta(seconds=turns.silences[0] + 5.0)
    assert abs((silences[0].occurred_at - planned).total_seconds()) <= 1.0, (silences[0].occurred_at, planned)
    assert s["longest_silence_s"] >= 8.0
    s = summary[ids["5558104"]]
    assert abs(s["agent_talk_s"] - card.talk["agent"]) / card.talk["agent"] < 0.05, (s, card.talk)

    # agitation: only the customer who escalates
    agitation = by_call(engine, "call.analytics.agitation")
    assert set(agitation) == {ids["5558103"]}, {k: [e.data for e in v] for k, v in agitation.items()}
    [event] = agitation[ids["5558103"]]
    assert event.data["direction"] == "customer" and event.data["loudness_z"] > 1.0

    # the disclosure: heard where said, flagged where omitted
    keywords = by_call(engine, "call.analytics.keyword")
    for number in ("5558101", "5558103", "5558104"):
        assert [(e.data["phrase"], e.data["direction"]) for e in keywords.get(ids[number], [])] == [
            ("this call is recorded", "agent")], number
    assert ids["5558102"] not in keywords
    missing = by_call(engine, "call.analytics.disclosure_missing")
    assert set(missing) == {ids["5558102"]}
    assert summary[ids["5558102"]]["disclosures_missing"] == ["this call is recorded"]

    # a spoken card number: an event, and the digits nowhere (events, every table, the engine's log)
    cards = by_call(engine, "call.analytics.card_number_spoken")
    assert set(cards) == {ids["5558104"]}
    [spoken] = [e.data for e in cards[ids["5558104"]]]
    assert spoken["digits_count"] == 16 and spoken["last4"] == ""
    # the window a PCI mask would silence covers the digits: it opens at the utterance's detected onset,
    # which on a loaded machine lags the script's clock by up to half a second; the first digit comes
    # after "My card number is" (over 1 s of speech), so opening within 0.8 s still covers every digit
    [(start, seconds)] = [(t, d) for who, t, d in card.turns if who == "customer"]
    assert spoken["at"] <= start + 0.8 and spoken["ends_at"] >= start + seconds - 1.0, (spoken, start, seconds)
    # ... and the recording is silenced over it (a PCI mask window), the rest of the call kept
    await engine.wait_for(lambda: engine.count_events("call.recording_sealed") >= len(scripts), 30, "sealed recordings")
    [sealed] = [e.data for e in engine.events("call.recording_sealed") if e.call_id == ids["5558104"]]
    exported = io.BytesIO()
    Vault(engine.settings.recording.vault_dir, create=False).export(sealed["recording_id"], exported)
    exported.seek(0)
    with wave.open(exported, "rb") as wav:
        rate = wav.getframerate()
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    digits = stereo[int((start + 1.5) * rate):int((start + seconds - 0.5) * rate)]  # after "my card number is"
    assert not digits.any(), rms_db(digits[:, 0])
    [(greeting, length)] = [(t, d) for who, t, d in card.turns if who == "agent"][:1]
    assert rms_db(stereo[int(greeting * rate):int((greeting + length) * rate), 1]) > -40  # the agent still heard
    needles = [CARD, "4111 1111", "4111-1111"]
    with engine.db.connect() as conn:
        tables = [r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))]
        dump = "\n".join(str(row) for t in tables for row in conn.execute(text(f'SELECT * FROM "{t}"')))
    log_text = (engine.workdir / "engine.log").read_text()
    for needle in needles:
        assert needle not in dump and needle not in log_text, needle
    assert not [c for c in await pbx_channels(lab) if str(c.get("name", "")).startswith(("Snoop/", "UnicastRTP/"))]


def rms_db(pcm: Pcm) -> float:
    x = pcm.astype(np.float64) / 32768.0
    return float(10 * np.log10(np.mean(x * x) + 1e-12))


async def test_overloaded_analysers_drop_and_count_frames_call_and_recording_intact(  # type: ignore[no-untyped-def]
        engine_factory, peer, lab):
    engine = engine_factory(agents=1)
    # every 20 ms of audio costs the analysers 30 ms: they must fall behind, whatever the machine
    with_analytics(engine, "codec: slin\nqueue_frames: 10\noverload_drill_s: 0.03\n"
                           "default: {analysers: [vad, agitation]}\n")
    engine.start()
    script = (Script()
              .say("agent", "Good morning, thank you for calling. How can I help you today?")
              .say("customer", "Hello. I would like to check the balance of my savings account.")
              .say("agent", "Of course. Your balance is two thousand and forty dollars."))
    await place(peer, script, engine.workdir / "scripts", "5558201")
    await engine.wait_for(summaries_for(engine, 1), 60, "the call's analytics summary")
    await engine.wait_for(lambda: engine.count_events("call.recording_stopped") >= 1, 10, "the recording")

    [call] = engine.calls()
    assert call.disposition == "completed" and call.ended_by == "agent"
    [summary] = [e.data for e in engine.events("call.analytics.summary")]
    assert summary["frames"] > 0 and summary["dropped_frames"] > 0.2 * summary["frames"], summary
    # the call lasted as scripted: the agent hung up at the end of the track, not earlier or later
    agent_track = script.t + 1.0
    [ended] = engine.events("call.ended")
    talk = ended.data["talk_seconds"]
    assert talk is not None and abs(talk - agent_track) < 1.5, (talk, agent_track)
    [stopped] = engine.events("call.recording_stopped")
    assert abs(stopped.data["duration_seconds"] - talk) < 1.5, stopped.data
    await engine.wait_for(lambda: engine.count_events("call.recording_sealed") == 1, 10, "the sealed recording")
    [sealed] = engine.events("call.recording_sealed")
    exported = io.BytesIO()
    Vault(engine.settings.recording.vault_dir, create=False).export(sealed.data["recording_id"], exported)
    exported.seek(0)
    with wave.open(exported, "rb") as wav:
        rate = wav.getframerate()
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    sides = {"customer": stereo[:, 0], "agent": stereo[:, 1]}  # the sealed file keeps the parties apart
    # each party is on its side of the recording where the script has them speak (the middle of each turn)
    for who, start, seconds in script.turns:
        mid = start + seconds / 2
        window = sides[who][int((mid - 0.5) * rate):int((mid + 0.5) * rate)]
        assert rms_db(window) > -40, (who, mid, rms_db(window))
    who, start, seconds = script.turns[-1]
    after = slice(int((start + seconds + 0.2) * rate), int((start + seconds + 0.6) * rate))
    assert max(rms_db(sides["customer"][after]), rms_db(sides["agent"][after])) < -50


async def test_engine_killed_mid_tap_restart_clears_tap_channels_and_the_call_goes_on(  # type: ignore[no-untyped-def]
        engine_factory, peer, lab):
    engine = engine_factory(agents=1)
    with_analytics(engine, "codec: slin\ndefault: {analysers: [vad]}\n")
    engine.start()
    script = (Script()
              .say("agent", "Good morning, thank you for calling. How can I help you today?")
              .pause(4.0)
              .say("customer", "Hello. I would like to check the balance of my savings account.")
              .say("agent", "Of course. Your balance is two thousand and forty dollars."))
    await place(peer, script, engine.workdir / "scripts", "5558301")

    def taps() -> list[str]:
        return [str(c["name"]) for c in channels if str(c.get("name", "")).startswith(("Snoop/", "UnicastRTP/"))]

    for _ in range(100):
        channels = await pbx_channels(lab)
        if len(taps()) == 4:
            break
        await asyncio.sleep(0.1)
    assert len(taps()) == 4, [c.get("name") for c in channels]  # snoop + externalMedia per direction
    # the store must know the call is talking before the kill (the writer batches for 50 ms)
    await engine.wait_for(lambda: engine.count_events("call.recording_started") == 1, 5, "the stored bridge")
    engine.kill()
    await asyncio.sleep(1.0)
    engine.start()
    [resynced] = engine.events("engine.resynced")[-1:]
    assert resynced.data["calls_recovered"] == 1 and resynced.data["channels"] == 6  # 2 call legs + 4 taps
    await engine.wait_for(lambda: engine.count_events("call.recording_stopped") >= 1, 40, "the call's end")

    [call] = engine.calls()
    assert call.disposition == "completed" and call.ended_by == "agent"
    [ended] = engine.events("call.ended")
    assert abs(ended.data["talk_seconds"] - (script.t + 1.0)) < 1.5, ended.data  # ended as scripted
    [stopped] = engine.events("call.recording_stopped")
    assert abs(stopped.data["duration_seconds"] - ended.data["talk_seconds"]) < 1.5
    channels = await pbx_channels(lab)
    assert channels == [], [c.get("name") for c in channels]  # the orphaned taps were hung up at resync


async def test_the_tap_follows_a_transfer_to_the_new_agents_leg(engine_factory, peer, lab):  # type: ignore[no-untyped-def]
    engine = engine_factory(agents=2)
    with_analytics(engine, "codec: slin\ndefault: {analysers: [vad]}\n")
    engine.start()
    users = UserStore(engine.db, LoginPolicy(5, 60.0))
    users.add("floor", "supervisor")
    token = users.create_token("floor")
    base = f"https://127.0.0.1:{engine.settings.http_port}/api/v1"
    trust = ssl.create_default_context(cafile=str(Path(engine.settings.paths.state_dir) / "tls" / "api.crt"))
    # Both softphones play this track when they answer: agent 1 until the transfer releases them (in its
    # trailing quiet), agent 2 to its end, when they hang up. The customer speaks once, to agent 1.
    script = (Script()
              .say("agent", "Good morning, this is the card services desk. How can I help you today?")
              .say("customer", "Hello. I would like to check the balance of my savings account."))
    script.agent.append(silence(4.0))
    line = script.talk["agent"]
    await place(peer, script, engine.workdir / "scripts", "5558401")
    await engine.wait_for(lambda: engine.count_events("call.bridged") == 1, 40, "the first agent on the call")
    [call] = engine.calls()
    await asyncio.sleep(script.t + 0.5)  # both have spoken; agent 1 is in the quiet at the end of the track
    target = "agent2" if call.agent_id == "agent1" else "agent1"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http, \
            http.post(f"{base}/calls/{call.id}/transfer", json={"kind": "agent", "target": target},
                      ssl=trust) as resp:
        assert resp.status == 202, await resp.text()
    await engine.wait_for(lambda: engine.count_events("call.bridged") == 2, 40, "the second agent on the call")
    second = engine.events("call.bridged")[-1].data["agent_channel_id"]

    async def snooped() -> list[str]:
        return [str(c["name"]) for c in await pbx_channels(lab) if str(c.get("name", "")).startswith("Snoop/")]

    # the new agent's leg is tapped again (Asterisk names a snoop channel after the channel it spies on)
    await eventually(lambda: _has_snoop_on(snooped, second), 10, "a snoop on the new agent's leg")
    await engine.wait_for(summaries_for(engine, 1), 60, "the call's analytics summary")

    [ended] = engine.calls()
    assert ended.agent_id == target and ended.disposition == "completed"
    [summary] = [e.data for e in engine.events("call.analytics.summary")]
    assert sorted(summary["directions"]) == ["agent", "customer"] and summary["dropped_frames"] == 0, summary
    # both agents said their line, and both count: the first before the transfer, the second after it
    assert abs(summary["agent_talk_s"] - 2 * line) / (2 * line) < 0.05, (summary, line)
    assert abs(summary["customer_talk_s"] - script.talk["customer"]) / script.talk["customer"] < 0.05, summary
    assert not await snooped()


async def _has_snoop_on(snooped, channel_id: str) -> bool:  # type: ignore[no-untyped-def]
    return any(name.startswith(f"Snoop/{channel_id}-") for name in await snooped())
