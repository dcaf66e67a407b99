"""An IVR tree with ``record: true`` on the lab PBX: the call is recorded from answer, card digits
typed in the IVR are silence in the sealed recording, and no card number is stored anywhere."""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
import sqlite3
import wave
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from ccengine.lab.traffic import Customer, dtmf_script
from ccengine.recording.pcimask import find_card_numbers
from ccengine.recording.vault import Vault

from .conftest import ROOT, pbx_channels

pytestmark = pytest.mark.lab

QUEUES = (ROOT / "config" / "lab-queues.yaml").read_text()
CARD, CVV = "4111111111111111", "739"
# identifiers and digests (UUIDs, 32-hex event ids, SHA-256 hex) hold digit runs that can pass Luhn
IDENTIFIER = re.compile(r"\b(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32,})\b",
                        re.IGNORECASE)

TREE = """
version: 1
id: recorded-cards
start: main
record: true
nodes:
  main:
    type: menu
    prompt: "Welcome to Lab Bank. To block a card, press 2."
    choices: {"2": card_number}
    fallback: adviser
  card_number:
    type: collect
    var: card
    secure: true
    validate: luhn
    min_length: 13
    max_length: 19
    prompt: "Please enter your card number, then the hash key."
    next: card_cvv
    fallback: adviser
  card_cvv:
    type: collect
    var: cvv
    secure: true
    min_length: 3
    max_length: 4
    prompt: "Now the security code on the back of the card, then the hash key."
    next: card_block
    fallback: adviser
  card_block:
    type: route
    queue: cards
    intent: card_block
    say: "Thank you. A card specialist will block your card now."
  adviser:
    type: route
    queue: general
"""


def card_numbers(text: str) -> list[str]:
    """Luhn-valid 13-19 digit runs, plus the test card however it is spelled out; identifiers and
    digests are not card numbers."""
    text = IDENTIFIER.sub("<id>", text)
    return find_card_numbers(text) + ([CARD] if CARD in re.sub(r"\D", "", text) else [])


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_a_recorded_ivr_masks_card_entry_and_keeps_no_card_number(  # type: ignore[no-untyped-def]
        engine_factory, peer, lab, workdir):
    tree = workdir / "recorded-cards.yaml"
    tree.write_text(TREE)
    engine = engine_factory(queues=QUEUES, ivr={"tree": str(tree)})
    engine.start()
    await peer.agent_talk_time(3, 3)
    await peer.call(Customer(number="5553101", digit="", prompt_wait=1.5, patience=60,
                             script=dtmf_script("2", 1.5, f"{CARD}#", 1.5, f"{CVV}#")))
    await engine.wait_for(lambda: engine.count_events("call.recording_sealed") == 1, 120, "the sealed recording")
    engine.stop()  # flush everything to the database and the log

    [call] = engine.calls()
    assert call.disposition == "completed" and call.queue == "cards", (call.disposition, call.queue)
    steps = [(e.data["node"], e.data["exit"]) for e in engine.events("call.ivr_step")]
    assert ("card_number", "next") in steps and ("card_cvv", "next") in steps, steps
    windows = [(at(e.data["started_at"]), at(e.data["ended_at"])) for e in engine.events("call.secure_input")]
    assert len(windows) == 2

    # one recording for the whole call, started at answer: the IVR is in it
    [started] = engine.events("call.recording_started")
    [ivr_started] = engine.events("call.ivr_started")
    assert started.occurred_at <= ivr_started.occurred_at
    [sealed] = engine.events("call.recording_sealed")
    rid = sealed.data["recording_id"]
    vault = Vault(engine.settings.recording.vault_dir, create=False)
    assert vault.verify() == []
    manifest = vault.manifest(rid).manifest
    assert manifest.call_ids == (call.id,)
    assert manifest.started_at <= windows[0][0] and manifest.ended_at >= windows[-1][1]
    assert call.bridged_at is not None and manifest.ended_at >= call.bridged_at.replace(tzinfo=UTC)

    # every secure-input window is masked, in the manifest and as silence in the stored audio
    assert len(manifest.mask_windows) >= 1
    for start, end in windows:
        offsets = ((start - manifest.started_at).total_seconds(), (end - manifest.started_at).total_seconds())
        assert any(w.seconds[0] <= offsets[0] and w.seconds[1] >= offsets[1] for w in manifest.mask_windows), (
            offsets, manifest.mask_windows)
    stored = io.BytesIO()
    vault.export(rid, stored, masked=False)  # the bytes as sealed, not masked again on the way out
    stored.seek(0)
    with wave.open(stored) as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, channels)
    audio = len(samples) / rate
    [ivr_done] = engine.events("call.ivr_finished")
    ivr_end = (ivr_done.occurred_at.replace(tzinfo=UTC) - manifest.started_at).total_seconds()
    call_end = (call.ended_at.replace(tzinfo=UTC) - manifest.started_at).total_seconds()
    assert ivr_end + 1.0 < audio <= call_end + 0.5, (ivr_end, audio, call_end)  # the IVR, then the agent
    spans = [(math.floor(w.seconds[0] * rate), min(len(samples), math.ceil(w.seconds[1] * rate)))
             for w in manifest.mask_windows]
    for a, b in spans:
        assert b > a and not samples[a:b].any(), (a, b)
    first, last = min(a for a, _ in spans), max(b for _, b in spans)
    # right outside the windows there is sound: the menu prompt until "2" is pressed (it starts the
    # card entry), and the caller's hold music, which starts as soon as the security code is sent
    assert np.abs(samples[max(0, first - rate) : first]).max() > 500, "the menu prompt before card entry"
    assert np.abs(samples[last : last + rate]).max() > 500, "the caller right after card entry"

    # no card number anywhere: database (every table), engine log, events, recordings (decrypted)
    database = Path(engine.settings.database.url.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as db:
        tables = [name for (name,) in db.execute("select name from sqlite_master where type = 'table'")]
        assert "events" in tables and "calls" in tables
        for table in tables:
            rows = db.execute(f'select * from "{table}"').fetchall()  # table names from the schema itself
            assert card_numbers(repr(rows)) == [], table
    for path in database.parent.glob("ccengine.db*"):
        assert CARD.encode() not in path.read_bytes(), path
    assert card_numbers((engine.workdir / "engine.log").read_text(errors="replace")) == []
    assert card_numbers(json.dumps([e.data for e in engine.events()])) == []
    for summary in vault.recordings():
        out = io.BytesIO()
        vault.export(summary.manifest.recording_id, out, masked=False)
        assert card_numbers(out.getvalue().decode("latin-1")) == []
        assert card_numbers(json.dumps(vault.manifest(summary.manifest.recording_id).to_json())) == []
    assert not list((workdir / "recordings").rglob("*.wav")), "no plaintext recording left behind"
    await asyncio.sleep(1)
    assert await pbx_channels(lab) == []


async def test_an_engine_restart_keeps_the_recording_and_its_masks(  # type: ignore[no-untyped-def]
        engine_factory, peer, lab, workdir):
    tree = workdir / "recorded-cards.yaml"
    tree.write_text(TREE)
    engine = engine_factory(queues=QUEUES, ivr={"tree": str(tree)})
    engine.start()
    await peer.agent_talk_time(12, 12)
    await peer.call(Customer(number="5553102", digit="", prompt_wait=1.5, patience=60,
                             script=dtmf_script("2", 1.5, f"{CARD}#", 1.5, f"{CVV}#")))
    await engine.wait_for(lambda: engine.count_events("call.answered") == 1, 60, "the agent to answer")
    engine.kill()  # the IVR part, card entry included, is behind us; the engine is gone mid-call
    await asyncio.sleep(1.5)
    engine.start()
    [resynced] = engine.events("engine.resynced")[-1:]
    assert resynced.data["calls_recovered"] == 1
    await engine.wait_for(lambda: engine.count_events("call.recording_sealed") == 1, 60, "the sealed recording")

    [call] = engine.calls()
    assert call.disposition == "completed", call.disposition
    [started] = engine.events("call.recording_started")  # the recording went on: no second one
    [sealed] = engine.events("call.recording_sealed")
    assert sealed.data["recording_id"] == started.data["recording_id"]
    vault = Vault(engine.settings.recording.vault_dir, create=False)
    assert vault.verify() == []
    manifest = vault.manifest(sealed.data["recording_id"]).manifest
    windows = [(at(e.data["started_at"]), at(e.data["ended_at"])) for e in engine.events("call.secure_input")]
    assert len(windows) == 2 and manifest.mask_windows
    for start, end in windows:
        offsets = ((start - manifest.started_at).total_seconds(), (end - manifest.started_at).total_seconds())
        assert any(w.seconds[0] <= offsets[0] and w.seconds[1] >= offsets[1] for w in manifest.mask_windows), (
            offsets, manifest.mask_windows)
    stored = io.BytesIO()
    vault.export(sealed.data["recording_id"], stored, masked=False)
    stored.seek(0)
    with wave.open(stored) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    for w in manifest.mask_windows:
        a, b = math.floor(w.seconds[0] * rate), math.ceil(w.seconds[1] * rate)
        assert b > a and not samples.reshape(-1, 2)[a:b].any()
    assert not list((workdir / "recordings").rglob("*.wav")), "no plaintext recording left behind"
    await asyncio.sleep(1)
    assert await pbx_channels(lab) == []
