"""Agent-requested secure payment on the lab PBX: the agent asks through the API, the caller keys a
card (a wrong number first) while the agent waits on hold, and the card is nowhere afterwards: not in
the database, the engine's log, the events or the sealed recording, which is silent for exactly the
capture and audible around it."""

from __future__ import annotations

import asyncio
import io
import re
import sqlite3
import ssl
import wave
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from ccengine.api.security import LoginPolicy
from ccengine.api.users import UserStore
from ccengine.audit.chain import AuditTrail
from ccengine.lab.traffic import Customer, dtmf_script
from ccengine.recording.pcimask import find_card_numbers
from ccengine.recording.vault import Vault

from .conftest import hang_up_lines, pbx_channels
from .test_api_supervision import ari

pytestmark = pytest.mark.lab

CARD, WRONG_CARD, EXPIRY, CVV = "4111111111111111", "4111111111111112", "1230", "737"
CALLER = "5557001"


HEX_ID = re.compile(r"\b(?=[0-9a-fA-F-]*[a-fA-F])[0-9a-fA-F-]{16,}\b")


def card_traces(text: str) -> list[str]:
    """Card numbers (Luhn), the literal test cards, and the security code next to card-like digits.
    Hexadecimal ids and hashes (event ids, digests) are left out of the Luhn scan: a 13-digit stretch
    of one passes Luhn by chance every few runs, and no card number is written as part of one."""
    found = [f"luhn:{pan[-4:]}" for pan in find_card_numbers(HEX_ID.sub("<id>", text))]
    found += [f"literal:{card[-4:]}" for card in (CARD, WRONG_CARD) if card in text]
    found += [f"cvv:{m.start()}" for m in re.finditer(rf"(?:1111|{EXPIRY})\D{{0,40}}{CVV}", text)]
    return found


def database_text(path: Path) -> str:
    """Every row of every table, every column, as text."""
    with sqlite3.connect(path) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert {"calls", "events", "legs", "recordings"} <= set(tables), tables
        out = []
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):  # table names from sqlite_master
                out.append(" | ".join(v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row))
    return "\n".join(out)


def stored_audio(vault: Vault, recording_id: str) -> tuple[bytes, np.ndarray, int]:
    """The decrypted WAV as stored (no masking on the way out), its stereo samples and rate."""
    stored = io.BytesIO()
    vault.export(recording_id, stored, masked=False)
    stored.seek(0)
    with wave.open(stored) as wav:
        assert wav.getnchannels() == 2, "caller and agent apart"
        rate = wav.getframerate()
        audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    return stored.getvalue(), audio, rate


def assert_no_card_anywhere(engine: Any, recording: bytes) -> None:
    """Database (every table, every column), engine log, events, decrypted recording."""
    assert card_traces(database_text(Path(engine.settings.database.url.removeprefix("sqlite:///")))) == []
    assert card_traces((engine.workdir / "engine.log").read_text(errors="replace")) == []
    assert card_traces("\n".join(str(e.data) for e in engine.events())) == []
    assert card_traces(recording.decode("latin-1")) == []
    assert card_traces(f"{CARD} {EXPIRY} {CVV}") != [], "the scan finds what it looks for"
    assert card_traces('{"pan": "4222222222222"}') == ["luhn:2222"]
    assert card_traces("a28cead190a8478ebcb2058641137928") == [], "an event id is no card number"


async def ask_for_payment(engine: Any, call_id: str, token: str, order: dict[str, str]) -> tuple[int, dict[str, Any]]:
    base = f"https://127.0.0.1:{engine.settings.http_port}/api/v1"
    trust = ssl.create_default_context(cafile=str(Path(engine.settings.paths.state_dir) / "tls" / "api.crt"))
    async with aiohttp.ClientSession() as http, \
            http.post(f"{base}/calls/{call_id}/secure-payment", json=order, ssl=trust,
                      headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


async def test_agent_secure_payment_masks_and_leaks_nothing(engine_factory, peer, lab):  # type: ignore[no-untyped-def]
    engine = engine_factory(agents=2)
    engine.start()
    users = UserStore(engine.db, LoginPolicy(5, 60.0))
    users.add("ann", "agent", agent_id="agent1")
    users.add("bob", "agent", agent_id="agent2")
    tokens = {name: users.create_token(name) for name in ("ann", "bob")}
    script = dtmf_script(WRONG_CARD + "#", 3, CARD + "#", 2, EXPIRY, 2, CVV + "#")
    await peer.set_global("AGENT_TALK_agent1", "90")
    await peer.set_global("AGENT_ABSENT_agent2", "1")
    try:
        await peer.call(Customer(number=CALLER, digit="1", prompt_wait=0.5, patience=12, pay=script))
        await engine.wait_for(lambda: engine.count_events("call.recording_started") == 1, 40, "a recorded call")
        await asyncio.sleep(2.5)  # both parties audible before the capture
        [call] = engine.calls()
        assert call.agent_id == "agent1"

        order = {"amount": "49.90", "currency": "EUR", "reference": "INV-2026-0042"}
        assert (await ask_for_payment(engine, call.id, tokens["bob"], order))[0] == 404  # not bob's call
        status, reply = await ask_for_payment(engine, call.id, tokens["ann"], {**order, "reference": f"card-{CARD}"})
        assert status == 422 and "card number" in reply["error"]
        assert (await ask_for_payment(engine, call.id, tokens["ann"], {**order, "currency": "euro"}))[0] == 422
        status, reply = await ask_for_payment(engine, call.id, tokens["ann"], order)
        assert status == 202, reply
        assert (await ask_for_payment(engine, call.id, tokens["ann"], order))[0] == 409  # one capture at a time
        [bridged] = engine.events("call.bridged")
        bridge = await ari(lab, "GET", f"/bridges/{bridged.data['bridge_id']}")
        assert bridge["channels"] == [bridged.data["agent_channel_id"]], "the agent waits alone, out of earshot"
        await peer.set_global(f"PAY_{CALLER}", "1")
        await engine.wait_for(lambda: engine.count_events("call.payment_captured")
                              + engine.count_events("call.payment_failed") == 1, 90, "the payment's outcome")
        bridge = await ari(lab, "GET", f"/bridges/{bridged.data['bridge_id']}")
        assert len(bridge["channels"]) == 2, "the caller is back with the agent"
        await engine.wait_for(lambda: engine.count_events("call.recording_sealed") == 1, 60, "the sealed recording")
    finally:
        for name in ("AGENT_TALK_agent1", "AGENT_ABSENT_agent2", f"PAY_{CALLER}"):
            await peer.set_global(name, "")

    # the outcome: a token and the last four digits, nothing more
    assert engine.events("call.payment_failed") == []
    [started] = engine.events("call.payment_started")
    [captured] = engine.events("call.payment_captured")
    data = captured.data
    assert data["token"].startswith("tok_") and data["last4"] == CARD[-4:]
    assert (data["amount"], data["currency"], data["reference"]) == ("49.90", "EUR", "INV-2026-0042")
    assert data["payment_id"] == reply["payment_id"] == started.data["payment_id"]
    window_start = datetime.fromisoformat(data["window_started_at"])
    window_end = datetime.fromisoformat(data["window_ended_at"])
    assert 8 < (window_end - window_start).total_seconds() < engine.settings.payment.max_seconds
    [call] = engine.calls()
    assert call.disposition == "completed" and call.ended_by == "customer"
    assert call.ended_at is not None and (call.ended_at - window_end.replace(tzinfo=None)).total_seconds() > 3, \
        "the caller went back to the agent before hanging up"
    [audited] = [e for e in AuditTrail(engine.db).entries() if e.action == "call.secure_payment"
                 and e.outcome == "success"]
    assert audited.actor == "ann" and audited.target == call.id

    # the sealed recording: verified, its manifest lists the window, silent inside, audible around it
    recording_id = engine.events("call.recording_sealed")[0].data["recording_id"]
    vault = Vault(engine.settings.recording.vault_dir, create=False)
    assert vault.verify(recording_id) == []
    manifest = vault.manifest(recording_id).manifest
    [mask] = manifest.mask_windows
    assert mask.reason == "secure payment"
    offset = (window_start - manifest.started_at).total_seconds()
    assert abs(mask.start_ms / 1000 - (offset - 0.25)) < 0.01
    assert abs((mask.end_ms - mask.start_ms) / 1000 - ((window_end - window_start).total_seconds() + 0.5)) < 0.01
    stored, audio, rate = stored_audio(vault, recording_id)
    talk = (call.ended_at - call.bridged_at).total_seconds()
    assert abs(len(audio) / rate - talk) <= 1.5, (len(audio) / rate, talk)  # one timeline, capture included
    a, b = mask.start_ms * rate // 1000, mask.end_ms * rate // 1000
    assert b <= len(audio), "the window lies inside the recording"
    for channel, who in ((0, "caller"), (1, "agent")):
        assert not audio[a:b, channel].any(), f"{who} channel not digitally silent inside the window"
        before = rms(audio[max(0, a - 2 * rate):a, channel])
        after = rms(audio[b + rate // 2:b + 2 * rate, channel])
        assert before > 100 and after > 100, (who, before, after)

    assert_no_card_anywhere(engine, stored)
    await asyncio.sleep(1)
    assert await pbx_channels(lab) == []


async def test_caller_hanging_up_mid_capture_closes_the_window_at_the_hang_up(  # type: ignore[no-untyped-def]
        engine_factory, peer, lab):
    engine = engine_factory(agents=1)
    engine.start()
    users = UserStore(engine.db, LoginPolicy(5, 60.0))
    users.add("floor", "supervisor")
    caller = "5557002"
    await peer.set_global("AGENT_TALK_agent1", "90")
    try:  # the customer keys the card number, no "#", and hangs up a second later
        await peer.call(Customer(number=caller, digit="1", prompt_wait=0.5, patience=1, pay=CARD))
        await engine.wait_for(lambda: engine.count_events("call.recording_started") == 1, 40, "a recorded call")
        await asyncio.sleep(2.0)
        [call] = engine.calls()
        status, _ = await ask_for_payment(engine, call.id, users.create_token("floor"),
                                          {"amount": "5", "currency": "GBP", "reference": "INV-7"})
        assert status == 202
        await peer.set_global(f"PAY_{caller}", "1")
        await engine.wait_for(lambda: engine.count_events("call.recording_sealed") == 1, 90, "the sealed recording")
    finally:
        for name in ("AGENT_TALK_agent1", f"PAY_{caller}"):
            await peer.set_global(name, "")

    [failed] = engine.events("call.payment_failed")
    assert failed.data["reason"] == "hangup" and failed.data["last4"] is None
    assert engine.events("call.payment_captured") == []
    [call] = engine.calls()
    assert call.ended_by == "customer"
    window_end = datetime.fromisoformat(failed.data["window_ended_at"]).replace(tzinfo=None)
    assert call.ended_at is not None and abs((call.ended_at - window_end).total_seconds()) < 1.0
    recording_id = engine.events("call.recording_sealed")[0].data["recording_id"]
    vault = Vault(engine.settings.recording.vault_dir, create=False)
    assert vault.verify(recording_id) == []
    [mask] = vault.manifest(recording_id).manifest.mask_windows
    stored, audio, rate = stored_audio(vault, recording_id)
    a = mask.start_ms * rate // 1000
    assert mask.end_ms * rate // 1000 >= len(audio) - rate // 4, "masked to the end of the call"
    assert a > rate and not audio[a:].any() and audio[:a - rate // 2].any()
    assert_no_card_anywhere(engine, stored)
    await asyncio.sleep(1)
    assert await pbx_channels(lab) == []


PERSISTENT_AGENT = """
version: 1
skills: [{id: general}]
calendars:
  always: {timezone: UTC, open: {mon-sun: ["00:00-24:00"]}}
queues:
  - {id: general, required_skills: {general: 1}, hours: always, wrap_up: 0s}
agents:
  - {id: agent1, name: One, skills: {general: 5}, connection: persistent}
"""


@pytest.mark.parametrize("connection", ["per_call", "persistent"])
async def test_engine_killed_mid_capture_returns_the_caller_on_restart(  # type: ignore[no-untyped-def]
        engine_factory, peer, lab, connection):
    """The agent waits in the call's bridge (rung for the call, or on their persistent line) while
    the engine is killed mid-capture: the restarted engine finds the payment and brings them back."""
    engine = engine_factory(agents=1, queues=PERSISTENT_AGENT if connection == "persistent" else None,
                            menu={"1": "general"})
    engine.start()
    users = UserStore(engine.db, LoginPolicy(5, 60.0))
    users.add("floor", "supervisor")
    caller = "5557003"
    await peer.set_global("AGENT_TALK_agent1", "120")
    try:  # the customer keys the card number and stays on the line
        await peer.call(Customer(number=caller, digit="1", prompt_wait=0.5, patience=30, pay=CARD))
        await engine.wait_for(lambda: engine.count_events("call.recording_started") == 1, 40, "a recorded call")
        await asyncio.sleep(2.0)
        [call] = engine.calls()
        status, reply = await ask_for_payment(engine, call.id, users.create_token("floor"),
                                              {"amount": "12.00", "currency": "EUR", "reference": "INV-9"})
        assert status == 202
        await peer.set_global(f"PAY_{caller}", "1")
        await asyncio.sleep(3.0)  # halfway through the card number
        engine.kill()
        engine.start(timeout=90)
        await engine.wait_for(lambda: engine.count_events("call.payment_failed") == 1, 30, "the payment's end")
        await engine.wait_for(lambda: engine.count_events("call.recording_sealed") == 1, 90, "the sealed recording")
    finally:
        for name in ("AGENT_TALK_agent1", f"PAY_{caller}"):
            await peer.set_global(name, "")

    [failed] = engine.events("call.payment_failed")
    assert failed.data["payment_id"] == reply["payment_id"] and failed.data["reason"] == "error"
    assert "restarted" in failed.data["detail"]
    [call] = engine.calls()
    assert call.disposition == "completed" and call.ended_by == "customer"
    window_end = datetime.fromisoformat(failed.data["window_ended_at"]).replace(tzinfo=None)
    assert call.ended_at is not None and (call.ended_at - window_end).total_seconds() > 5, "back with the agent"
    recording_id = engine.events("call.recording_sealed")[0].data["recording_id"]
    vault = Vault(engine.settings.recording.vault_dir, create=False)
    assert vault.verify(recording_id) == []
    [mask] = vault.manifest(recording_id).manifest.mask_windows
    stored, audio, rate = stored_audio(vault, recording_id)
    a, b = mask.start_ms * rate // 1000, mask.end_ms * rate // 1000
    assert not audio[a:b].any()
    for channel in (0, 1):
        assert rms(audio[b + rate // 2:b + 3 * rate, channel]) > 100, "both audible once the caller is back"
    assert_no_card_anywhere(engine, stored)
    await asyncio.sleep(1)
    left = [str(c["id"]) for c in await pbx_channels(lab)]
    await hang_up_lines(lab)
    assert all(c.startswith("line-") for c in left) and len(left) == (connection == "persistent"), left
