"""Real calls through the lab PBX: customer on `peer` → IVR → queue → agent → recording → hang-up."""

from __future__ import annotations

import asyncio
import io
import itertools
import wave
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ccengine.lab.traffic import Customer
from ccengine.recording.vault import Vault
from ccengine.store.schema import RecordingRow

from .conftest import pbx_channels

pytestmark = pytest.mark.lab


def all_ended(engine, expected: int):  # type: ignore[no-untyped-def]
    def check() -> bool:
        calls = engine.calls()
        return len(calls) >= expected and all(c.ended_at is not None for c in calls)
    return check


async def test_call_end_to_end_is_stored_and_recorded(engine_factory, peer, lab):  # type: ignore[no-untyped-def]
    engine = engine_factory(agents=1)
    engine.start()
    await peer.set_global("AGENT_TALK_agent1", "4")
    try:
        await peer.call(Customer(number="5551001", digit="1", prompt_wait=1.0, patience=60))
        await engine.wait_for(all_ended(engine, 1), 40, "the call to end")
    finally:
        await peer.set_global("AGENT_TALK_agent1", "")

    [call] = engine.calls()
    assert call.caller_number == "5551001"
    assert call.disposition == "completed" and call.ended_by == "agent"
    assert call.menu_digit == "1" and call.agent_id == "agent1" and call.queue == "general"
    stamps = [call.offered_at, call.menu_at, call.queued_at, call.agent_offered_at, call.answered_at,
              call.bridged_at, call.ended_at]
    assert all(s is not None for s in stamps), stamps
    assert stamps == sorted(stamps), "timestamps out of order"
    await engine.wait_for(lambda: engine.calls()[0].wrapup_ended_at is not None, 10, "wrap-up to end")

    def recording_closed() -> bool:
        with Session(engine.db) as session:
            return session.scalars(select(RecordingRow.ended_at)).first() is not None

    await engine.wait_for(recording_closed, 10, "the recording to be closed")
    await engine.wait_for(lambda: engine.count_events("call.recording_sealed") == 1, 10, "the recording sealed")
    with Session(engine.db) as session:
        [recording] = session.scalars(select(RecordingRow)).all()
    path = Path(recording.path)
    assert path.is_relative_to(engine.workdir) and not path.exists(), "sealing removes the plaintext"
    [sealed] = engine.events("call.recording_sealed")
    assert sealed.data["recording_id"] == recording.id and sealed.data["segments"] == 1
    vault = Vault(engine.settings.recording.vault_dir, create=False)
    assert vault.verify(recording.id) == []
    exported = io.BytesIO()
    vault.export(recording.id, exported)
    exported.seek(0)
    with wave.open(exported) as wav:
        audio_seconds = wav.getnframes() / wav.getframerate()
        assert wav.getnchannels() == 2, "caller and agent are kept apart"
        frames = wav.readframes(wav.getnframes())
    caller, agent = np.frombuffer(frames, dtype="<i2").reshape(-1, 2).T
    assert np.abs(caller).max() > 0 and np.abs(agent).max() > 0, "each side holds its party's audio"
    assert not np.array_equal(caller, agent)
    talk = (call.ended_at - call.bridged_at).total_seconds()
    assert abs(audio_seconds - talk) <= 1.0, (audio_seconds, talk)
    assert 3.0 <= talk <= 6.0
    assert recording.duration_seconds == pytest.approx(audio_seconds, abs=0.05)
    assert max(frames) > 0, "recording holds only silence"
    assert await pbx_channels(lab) == []


async def test_twenty_concurrent_calls_five_agents_none_stuck(engine_factory, peer, lab):  # type: ignore[no-untyped-def]
    engine = engine_factory(agents=5)
    engine.start()
    impatient = {f"55520{i:02d}" for i in range(14, 20)}
    for i in range(20):
        number = f"55520{i:02d}"
        await peer.call(Customer(number=number, digit="1", prompt_wait=0.8,
                                 patience=8 if number in impatient else 90))
        await asyncio.sleep(0.1)
    await engine.wait_for(all_ended(engine, 20), 120, "all 20 calls to end")

    calls = engine.calls()
    assert len(calls) == 20
    by_disposition = defaultdict(list)
    for call in calls:
        by_disposition[call.disposition].append(call)
    assert set(by_disposition) <= {"completed", "abandoned"}, by_disposition.keys()
    for call in by_disposition["completed"]:
        assert call.agent_id and call.answered_at and call.bridged_at
    for call in by_disposition["abandoned"]:
        # only a customer whose patience ran out may abandon, and only while waiting
        assert call.caller_number in impatient, call.caller_number
        assert call.answered_at is None and call.ended_by == "customer"
    assert len(by_disposition["completed"]) >= 14
    # an agent never talks to two customers at once
    per_agent = defaultdict(list)
    for call in by_disposition["completed"]:
        per_agent[call.agent_id].append((call.answered_at, call.ended_at))
    for agent, spans in per_agent.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"{agent} double-booked"
    await asyncio.sleep(1)
    assert await pbx_channels(lab) == []
