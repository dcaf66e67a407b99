"""Keeping recordings over the API: legal holds, purge and erasure under four-eyes, on a real
vault (real sealing and crypto-shredding), a real SQLite store and a real server."""

from __future__ import annotations

import asyncio
import io
import uuid
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ccengine.audit.chain import AuditTrail
from ccengine.core.events import CallOffered, CallRecordingSealed, Event
from ccengine.recording.keyring import KeyRingError
from ccengine.recording.vault import ManifestFields, Vault, VaultError

from .api_support import running_api


def _seal(vault: Vault, tmp_path: Path, call_id: str) -> str:
    recording_id = str(uuid.uuid4())
    path = tmp_path / f"{recording_id}.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x01\x00\x02\x00" * 8000)
    now = datetime.now(UTC)
    vault.seal(path, ManifestFields(recording_id, (call_id,), now - timedelta(seconds=1), now))
    return recording_id


async def test_holds_purge_and_erasure_follow_retention_and_four_eyes(tmp_path: Path) -> None:
    async with running_api(tmp_path, vault_dir=tmp_path / "vault") as api, aiohttp.ClientSession() as http:
        assert api.ctx.keeping is not None
        vault = api.ctx.keeping.vault

        old_call, new_call = str(uuid.uuid4()), str(uuid.uuid4())
        old, new = _seal(vault, tmp_path, old_call), _seal(vault, tmp_path, new_call)
        long_ago = datetime.now(UTC) - timedelta(days=400)
        for call_id, number in ((old_call, "5550101"), (new_call, "5550102")):
            api.bus.publish(Event.of(CallOffered(caller_number=number, caller_name="", dialed="100",
                                                 channel_id=f"ch-{number}"), call_id=call_id))
        api.bus.publish(Event.of(CallRecordingSealed(recording_id=old, chain_seq=0, plaintext_sha256="0" * 64,
                                                     segments=1, retention_policy="internal",
                                                     retain_until=long_ago + timedelta(days=365)), call_id=old_call))
        api.bus.publish(Event.of(CallRecordingSealed(recording_id=new, chain_seq=1, plaintext_sha256="0" * 64,
                                                     segments=1, retention_policy="mifid2",
                                                     retain_until=datetime(2031, 11, 26, tzinfo=UTC)),
                                 call_id=new_call))
        await asyncio.sleep(0.3)  # the writer's batch

        async def call(method: str, path: str, who: str, payload: dict[str, Any] | None = None
                       ) -> tuple[int, Any]:
            async with http.request(method, api.url + path, json=payload, headers=api.auth(who)) as resp:
                return resp.status, await resp.json()

        status, kept = await call("GET", f"/api/v1/recordings/{new}/retention", "auditor")
        assert status == 200 and kept["policy"] == "mifid2" and kept["retain_until"].startswith("2031-11-26")
        assert (await call("GET", f"/api/v1/recordings/{new}/retention", "agent"))[0] == 403

        # erasure while retention applies: refused at once, with the legal ground
        status, body = await call("POST", "/api/v1/approvals", "compliance",
                                  {"action": "recording.erase", "target": new})
        assert status == 409 and body["error"] == "retention policy mifid2 requires keeping it until 2031-11-26"

        # a legal hold on the old call's customer protects its expired recording from the purge
        status, hold = await call("POST", "/api/v1/holds", "compliance",
                                  {"kind": "caller", "target": "5550101", "reason": "case 2026-114"})
        assert status == 201
        status, due = await call("GET", "/api/v1/retention/due", "compliance")
        assert [(d["recording_id"], d["holds"]) for d in due] == [(old, ["case 2026-114"])]

        async def purge_approved_by(approver: str) -> dict[str, Any]:
            status, req = await call("POST", "/api/v1/approvals", "compliance",
                                     {"action": "recording.purge", "target": "expired"})
            assert status == 201
            assert (await call("POST", f"/api/v1/approvals/{req['id']}/execute", "compliance", {}))[0] == 409
            assert (await call("POST", f"/api/v1/approvals/{req['id']}/approve", "compliance", {}))[0] == 403
            assert (await call("POST", f"/api/v1/approvals/{req['id']}/approve", approver, {}))[0] == 200
            status, done = await call("POST", f"/api/v1/approvals/{req['id']}/execute", "compliance", {})
            assert status == 200
            return done

        done = await purge_approved_by("admin")
        assert done["destroyed"] == [] and done["refused"] == {old: "under legal hold (case 2026-114)"}

        # the hold is released by someone else than who placed it
        status, body = await call("DELETE", f"/api/v1/holds/{hold['id']}", "compliance")
        assert status == 403 and "four-eyes" in body["error"]
        assert (await call("DELETE", f"/api/v1/holds/{hold['id']}", "admin"))[0] == 200

        done = await purge_approved_by("admin")
        assert done["destroyed"] == [old] and done["refused"] == {}
        status, kept = await call("GET", f"/api/v1/recordings/{old}/retention", "compliance")
        assert kept["purged"] is True
        with pytest.raises((VaultError, KeyRingError)):  # crypto-shredded: no key, no plaintext
            vault.export(old, io.BytesIO())
        assert [f.check for f in vault.verify(old)] == ["shredded"]  # the chain still proves it existed
        vault.export(new, io.BytesIO())  # the protected one is intact

        # the regulator asks to keep the MiFID II recording longer: within 7 years only, four-eyes
        status, body = await call("POST", "/api/v1/approvals", "compliance", {
            "action": "retention.change", "target": new, "params": {"until": "2040-01-01T00:00:00+00:00"}})
        assert status == 409 and "at most" in body["error"]
        status, req = await call("POST", "/api/v1/approvals", "compliance", {
            "action": "retention.change", "target": new, "params": {"until": "2032-06-30T00:00:00+00:00"}})
        assert status == 201
        assert (await call("POST", f"/api/v1/approvals/{req['id']}/approve", "admin", {}))[0] == 200
        assert (await call("POST", f"/api/v1/approvals/{req['id']}/execute", "compliance", {}))[0] == 200
        status, kept = await call("GET", f"/api/v1/recordings/{new}/retention", "auditor")
        assert kept["retain_until"].startswith("2032-06-30")

        trail = AuditTrail(api.ctx.db)
        purges = [(e.target, e.outcome) for e in trail.entries() if e.action == "recording.purge"]
        assert purges == [(old, "denied"), (old, "success")]
        assert trail.verify() == []
