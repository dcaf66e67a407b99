"""Blind transfer of a live lab call through the engine's API: to a named agent (refused while they
are not ready), then, as a four-eyes high-value confirmation, to another queue. The caller ends up
bridged with the last agent, each earlier agent is released to wrap-up, and one recording covers
every leg."""

from __future__ import annotations

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
from ccengine.lab.traffic import Customer
from ccengine.store.schema import CallRow, LegRow, QueueLogRow, RecordingRow

from .test_api_supervision import ari, eventually

pytestmark = pytest.mark.lab

QUEUES = yaml.safe_dump({
    "version": 1,
    "skills": [{"id": "general", "kind": "product"}, {"id": "premium", "kind": "product"}],
    "calendars": {"always": {"timezone": "UTC", "open": {"mon-sun": ["00:00-24:00"]}}},
    "queues": [{"id": q, "required_skills": {q: 1}, "hours": "always", "wrap_up": 4,
                "announcements": {"position": False, "estimated_wait": False}} for q in ("general", "premium")],
    "agents": [{"id": f"agent{n}", "name": f"Agent {n}", "skills": {"general": 5, **({"premium": 5} if n == 3 else {})}}
               for n in (1, 2, 3)],
}, sort_keys=False)


async def bridged_with(lab: Any, customer: str, agent: str) -> bool:
    """The caller's channel shares a PBX bridge with exactly the agent's softphone leg."""
    for bridge in await ari(lab, "GET", "/bridges"):
        if customer in bridge["channels"] and len(bridge["channels"]) == 2:
            other = next(c for c in bridge["channels"] if c != customer)
            name = (await ari(lab, "GET", f"/channels/{other}") or {}).get("name", "")
            if name.startswith(f"PJSIP/{agent}-"):
                return True
    return False


async def test_transfer_to_an_agent_then_high_value_to_a_queue(engine_factory, peer, lab):  # type: ignore[no-untyped-def]
    engine = engine_factory(queues=QUEUES, menu={"1": "general"})
    engine.start()
    users = UserStore(engine.db, LoginPolicy(5, 60.0))
    users.add("floor", "supervisor")
    users.add("floor2", "supervisor")
    for n in (1, 2):
        users.add(f"desk{n}", "agent", agent_id=f"agent{n}")
    tokens = {name: users.create_token(name) for name in ("floor", "floor2", "desk1", "desk2")}
    base = f"https://127.0.0.1:{engine.settings.http_port}/api/v1"
    trust = ssl.create_default_context(cafile=str(Path(engine.settings.paths.state_dir) / "tls" / "api.crt"))
    await peer.agent_talk_time(120, 120)

    async with aiohttp.ClientSession() as http:
        async def api(user: str, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
            async with http.request(method, base + path, json=payload, ssl=trust,
                                    headers={"Authorization": f"Bearer {tokens[user]}"}) as resp:
                return resp.status, await resp.json()

        for agent in ("agent2", "agent3"):
            assert (await api("floor", "POST", f"/agents/{agent}/state", {"state": "not_ready", "reason": "break"})
                    )[0] == 200
        await peer.call(Customer(number="5559701", digit="1", prompt_wait=1.0, patience=150))
        await engine.wait_for(lambda: any(c.state == "talking" for c in engine.calls()), 40, "a connected call")
        call = next(c for c in engine.calls() if c.state == "talking")
        assert call.agent_id == "agent1"
        with Session(engine.db) as session:
            customer = session.scalar(select(LegRow.channel_id).where(LegRow.call_id == call.id,
                                                                      LegRow.role == "customer"))
        assert customer is not None
        transfer = f"/calls/{call.id}/transfer"

        # refusals leave the call where it is, each with its reason
        status, problem = await api("desk1", "POST", transfer, {"kind": "agent", "target": "agent2"})
        assert status == 409 and "not ready" in problem["error"]
        status, problem = await api("desk2", "POST", transfer, {"kind": "agent", "target": "agent3"})
        assert status == 404  # not agent2's call: not even confirmed to exist
        status, problem = await api("desk1", "POST", transfer, {"kind": "number", "target": "5550100"})
        assert status == 403 and "supervisor" in problem["error"]
        status, problem = await api("desk1", "POST", transfer, {"kind": "queue", "target": "nowhere"})
        assert status == 422 and "unknown queue" in problem["error"]
        assert await bridged_with(lab, customer, "agent1")

        # to a named agent, once they are ready: reserved and rung through the ACD
        assert (await api("floor", "POST", "/agents/agent2/state", {"state": "ready"}))[0] == 200
        status, started = await api("desk1", "POST", transfer, {"kind": "agent", "target": "agent2"})
        assert status == 202, started
        assert started["from_agent_id"] == "agent1"
        await eventually(lambda: bridged_with(lab, customer, "agent2"), 40, "the caller bridged with agent2")
        await engine.wait_for(lambda: engine.calls()[0].agent_id == "agent2", 20, "agent2 on the call")
        wrapup = [e for e in engine.events("agent.state_changed")
                  if e.agent_id == "agent1" and e.data["state"] == "wrapup"]
        assert wrapup and wrapup[0].call_id == call.id  # the first agent was freed into wrap-up

        # a high-value confirmation: requested by the agent, approved by a supervisor, executed by the agent
        assert (await api("floor", "POST", "/agents/agent3/state", {"state": "ready"}))[0] == 200
        status, pending = await api("desk2", "POST", transfer, {"kind": "queue", "target": "premium",
                                                                "high_value": True})
        assert status == 202 and pending["status"] == "pending_approval", pending
        approval = pending["approval"]["id"]
        assert await bridged_with(lab, customer, "agent2")  # nothing moves before the approval
        assert (await api("desk2", "POST", f"/approvals/{approval}/execute", {}))[0] == 409  # not approved yet
        assert (await api("floor", "POST", f"/approvals/{approval}/approve", {}))[0] == 200
        status, executed = await api("desk2", "POST", f"/approvals/{approval}/execute", {})
        assert status == 200, executed
        assert executed["transfer"]["kind"] == "queue" and executed["transfer"]["approval_id"] == approval
        await eventually(lambda: bridged_with(lab, customer, "agent3"), 40, "the caller bridged with agent3")
        assert (await api("desk2", "POST", f"/approvals/{approval}/execute", {}))[0] == 409  # consumed once

        assert (await api("floor", "POST", f"/calls/{call.id}/hangup", {}))[0] == 200
        await engine.wait_for(lambda: engine.count_events("call.recording_stopped") == 1, 30, "the recording closed")

    ended = engine.calls()[0]
    assert ended.disposition == "completed" and ended.agent_id == "agent3"
    transfers = engine.events("call.transferred")
    assert [(e.data["kind"], e.data["target"], e.data["from_agent_id"]) for e in transfers] == [
        ("agent", "agent2", "agent1"), ("queue", "premium", "agent2")]
    assert transfers[1].data["approval_id"] == approval and transfers[1].data["requested_by"] == "desk2"
    assert engine.count_events("call.recording_started") == 1
    with Session(engine.db) as session:
        legs = session.scalars(select(LegRow).where(LegRow.call_id == call.id, LegRow.role == "agent")
                               .order_by(LegRow.created_at)).all()
        assert [(leg.agent_id, (leg.end_cause or "")[:14]) for leg in legs][:2] == [
            ("agent1", "transferred to"), ("agent2", "transferred to")]
        recording = session.scalars(select(RecordingRow).where(RecordingRow.call_id == call.id)).one()
        row = session.get(CallRow, call.id)
        assert row is not None and row.answered_at is not None and row.ended_at is not None
        spoken = (row.ended_at - row.answered_at).total_seconds()
        verbs = list(session.scalars(select(QueueLogRow.verb).where(QueueLogRow.call_id == call.id)
                                     .order_by(QueueLogRow.id)))
    # one recording from the first answer to the hang-up: all three agents' parts and the holds between
    assert recording.duration_seconds is not None and recording.duration_seconds >= spoken - 3, (
        recording.duration_seconds, spoken)
    assert verbs.count("BLINDTRANSFER") == 2 and "REQUEUE" in verbs and verbs.count("CONNECT") == 3
    actions = [(e.actor, e.action, e.outcome) for e in AuditTrail(engine.db).entries()]
    assert ("desk1", "call.transfer", "success") in actions
    assert ("desk1", "call.transfer", "denied") in actions
    assert ("floor", "approval.approve", "success") in actions
    assert ("desk2", "approval.execute", "success") in actions


async def test_transfer_to_an_outside_number_falls_back_to_the_queue_when_unanswered(  # type: ignore[no-untyped-def]
        engine_factory, peer, lab):
    engine = engine_factory(agents=2, callback_ring_timeout=5)
    engine.start()
    users = UserStore(engine.db, LoginPolicy(5, 60.0))
    users.add("floor", "supervisor")
    token = users.create_token("floor")
    base = f"https://127.0.0.1:{engine.settings.http_port}/api/v1"
    trust = ssl.create_default_context(cafile=str(Path(engine.settings.paths.state_dir) / "tls" / "api.crt"))
    await peer.agent_talk_time(120, 120)
    await peer.call(Customer(number="5559702", digit="1", prompt_wait=1.0, patience=150))
    await engine.wait_for(lambda: any(c.state == "talking" for c in engine.calls()), 40, "a connected call")
    call = engine.calls()[0]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async def transfer(number: str) -> int:
            async with http.post(f"{base}/calls/{call.id}/transfer", json={"kind": "number", "target": number},
                                 ssl=trust) as resp:
                return resp.status

        # the lab's called party: first digit 2 = rings without answer; 1 = answers after 01 s, talks 08 s
        assert await transfer("2010803001") == 202
        await engine.wait_for(lambda: engine.count_events("call.transfer_failed") == 1, 30, "the transfer failing")
        await engine.wait_for(lambda: engine.count_events("call.answered") == 2, 30,
                              "the caller answered by an agent again, from the queue")
        assert await transfer("1010803001") == 202
        await engine.wait_for(lambda: engine.count_events("call.transfer_answered") == 1, 30, "the number answering")
        await engine.wait_for(lambda: engine.calls()[0].state == "ended", 40, "the called party hanging up")
        await engine.wait_for(lambda: engine.count_events("call.recording_stopped") == 1, 30, "the recording closed")
    failed = engine.events("call.transfer_failed")[0].data
    assert failed["kind"] == "number" and failed["fallback_queue"] == "general"
    ended = engine.calls()[0]
    assert ended.disposition == "transferred"
    with Session(engine.db) as session:
        outside = session.scalars(select(LegRow).where(LegRow.call_id == call.id, LegRow.role == "transfer")).all()
        verbs = list(session.scalars(select(QueueLogRow.verb).where(QueueLogRow.call_id == call.id)))
    assert len(outside) == 1 and outside[0].answered_at is not None and outside[0].ended_at is not None
    assert verbs.count("BLINDTRANSFER") == 2 and "FAILED" not in verbs
    assert engine.count_events("call.recording_started") == 1
