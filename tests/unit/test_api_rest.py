"""REST resources on a real server and database: an agent sees and acts on only their own calls
and state; supervisors see everything; agent state changes are validated and audited."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from ccengine.audit.chain import AuditTrail
from ccengine.core.events import CallAnswered, CallEnded, CallOffered, CallQueued, Event

from .api_support import Api, running_api


def place_call(api: Api, call_id: str, agent: str | None, ended: bool = True) -> None:
    api.bus.publish(Event.of(CallOffered(caller_number="555" + call_id[-4:], dialed="100", channel_id=f"ch-{call_id}"),
                             call_id=call_id))
    api.bus.publish(Event.of(CallQueued(queue="general", position=1), call_id=call_id, queue="general"))
    if agent:
        api.bus.publish(Event.of(CallAnswered(queue="general", agent_id=agent, wait_seconds=3.0), call_id=call_id,
                                 agent_id=agent, queue="general"))
    if ended:
        api.bus.publish(Event.of(CallEnded(disposition="completed" if agent else "abandoned", ended_by="customer"),
                                 call_id=call_id, agent_id=agent, queue="general"))


async def test_agent_sees_only_own_calls(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        place_call(api, "call-0001", "agent1")
        place_call(api, "call-0002", "agent2")
        place_call(api, "call-0003", None)
        place_call(api, "call-0004", "agent1", ended=False)
        await api.writer.flush()

        async def get(path: str, role: str) -> tuple[int, object]:
            async with http.get(api.url + path, headers=api.auth(role)) as resp:
                return resp.status, await resp.json()

        status, calls = await get("/api/v1/calls", "agent")
        assert status == 200 and sorted(c["id"] for c in calls) == ["call-0001", "call-0004"]  # type: ignore[union-attr]
        status, calls = await get("/api/v1/calls", "supervisor")
        assert len(calls) == 4  # type: ignore[arg-type]
        status, calls = await get("/api/v1/calls?state=active", "qa")
        assert [c["id"] for c in calls] == ["call-0004"]  # type: ignore[union-attr]
        assert (await get("/api/v1/calls/call-0002", "agent"))[0] == 404
        status, detail = await get("/api/v1/calls/call-0001", "agent")
        assert status == 200 and [e["type"] for e in detail["events"]][-1] == "call.ended"  # type: ignore[index]
        assert (await get("/api/v1/calls?limit=0", "qa"))[0] == 400
        assert (await get("/api/v1/calls?state=maybe", "qa"))[0] == 400
        status, kpis = await get("/api/v1/reports/kpis", "supervisor")
        assert status == 200 and kpis["offered"] == 4 and kpis["answered"] == 3  # type: ignore[index]
        status, queues = await get("/api/v1/queues", "supervisor")
        assert queues[0]["id"] == "general" and queues[0]["answered_today"] == 3  # type: ignore[index]


async def test_agent_state_changes(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        async def post(agent: str, role: str, body: dict[str, str]) -> tuple[int, dict[str, str]]:
            async with http.post(api.url + f"/api/v1/agents/{agent}/state", json=body,
                                 headers=api.auth(role)) as resp:
                return resp.status, await resp.json()

        assert (await post("agent1", "agent", {"state": "login"})) == (200, {"id": "agent1", "state": "not_ready",
                                                                           "reason": "login"})
        assert (await post("agent1", "agent", {"state": "ready"}))[1]["state"] == "ready"
        status, body = await post("agent2", "agent", {"state": "login"})
        assert status == 403 and "own" in body["error"]
        status, body = await post("agent1", "agent", {"state": "not_ready", "reason": "nap"})
        assert status == 422 and "break, lunch" in body["error"]
        assert (await post("agent1", "supervisor", {"state": "not_ready", "reason": "lunch"}))[1]["reason"] == "lunch"
        assert (await post("agent9", "supervisor", {"state": "login"}))[0] == 404
        assert (await post("agent1", "supervisor", {"state": "sleep"}))[0] == 422
        async with http.get(api.url + "/api/v1/agents", headers=api.auth("agent")) as resp:
            assert [a["id"] for a in await resp.json()] == ["agent1"]
        actions = [(e.actor, e.action, e.target) for e in AuditTrail(api.ctx.db).entries()]
        assert ("agent1", "agent.login", "agent1") in actions
        assert ("supervisor1", "agent.not_ready", "agent1") in actions
