"""Supervisor listen / whisper / barge through the engine's API on a real lab call (ARI snoop)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ccengine.api.security import LoginPolicy
from ccengine.api.users import UserStore
from ccengine.audit.chain import AuditTrail
from ccengine.lab.traffic import Customer
from ccengine.store.schema import LegRow

pytestmark = pytest.mark.lab


async def ari(lab: Any, method: str, path: str) -> Any:
    settings = lab.settings.pbx.ari
    auth = {"Authorization": aiohttp.encode_basic_auth(settings.username, settings.password)}
    async with aiohttp.ClientSession(headers=auth) as http, http.request(method, settings.url + path) as resp:
        return await resp.json() if resp.content_type == "application/json" else None


async def eventually(check: Any, timeout: float, what: str) -> Any:
    for _ in range(int(timeout / 0.2)):
        if found := await check():
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"never saw {what}")


async def test_listen_whisper_barge(engine_factory, peer, lab):  # type: ignore[no-untyped-def]
    engine = engine_factory(agents=2, menu={"1": "general"})
    engine.start()
    users = UserStore(engine.db, LoginPolicy(5, 60.0))
    users.add("floor", "supervisor")
    users.add("quality", "qa")
    tokens = {"supervisor": users.create_token("floor"), "qa": users.create_token("quality")}
    base = f"https://127.0.0.1:{engine.settings.http_port}/api/v1"
    trust = ssl.create_default_context(cafile=str(Path(engine.settings.paths.state_dir) / "tls" / "api.crt"))
    await peer.agent_talk_time(25, 25)
    await peer.call(Customer(number="5559700", digit="1", prompt_wait=1.0, patience=60))
    await engine.wait_for(lambda: any(c.state == "talking" for c in engine.calls()), 30, "a connected call")
    call = next(c for c in engine.calls() if c.state == "talking")

    def legs(call_id: str) -> list[LegRow]:
        with Session(engine.db) as session:
            return list(session.scalars(select(LegRow).where(LegRow.call_id == call_id)))

    engine.legs = legs

    async with aiohttp.ClientSession() as http:
        async def monitor(role: str, mode: str, phone: str) -> tuple[int, dict[str, Any]]:
            async with http.post(f"{base}/calls/{call.id}/monitor", json={"mode": mode, "phone": phone}, ssl=trust,
                                 headers={"Authorization": f"Bearer {tokens[role]}"}) as resp:
                return resp.status, await resp.json()

        assert (await monitor("qa", "whisper", "agent9"))[0] == 403
        status, _ = await monitor("supervisor", "listen", "agent9")
        assert status == 201

        async def snoop_bridge(phone: str, snooped: str) -> dict[str, Any] | None:
            for bridge in await ari(lab, "GET", "/bridges"):
                names = [(await ari(lab, "GET", f"/channels/{c}") or {}).get("name", "") for c in bridge["channels"]]
                if len(names) == 2 and any(n.startswith(f"Snoop/{snooped}") for n in names) \
                        and any(n.startswith(f"PJSIP/{phone}") for n in names):
                    return dict(bridge)
            return None

        customer = next(leg for leg in engine.legs(call.id) if leg.role == "customer").channel_id
        agent = next(leg for leg in engine.legs(call.id) if leg.role == "agent").channel_id
        listening = await eventually(lambda: snoop_bridge("agent9", customer), 20,
                                     "the supervisor bridged to a snoop of the customer's channel")
        # whisper snoops the agent's channel (the whisper goes to the agent only)
        assert (await monitor("supervisor", "whisper", "agent7"))[0] == 201
        await eventually(lambda: snoop_bridge("agent7", agent), 20, "a whisper snoop on the agent's channel")
        status, _ = await monitor("supervisor", "barge", "agent8")
        assert status == 201

        async def barged() -> bool:
            for bridge in await ari(lab, "GET", "/bridges"):
                names = [(await ari(lab, "GET", f"/channels/{c}") or {}).get("name", "") for c in bridge["channels"]]
                if len(names) == 3 and any(n.startswith("PJSIP/agent8") for n in names):
                    return True
            return False

        await eventually(barged, 20, "the supervisor in the call's own bridge")
        # the supervisor hangs up the listening phone: the snoop goes with it
        for channel in listening["channels"]:
            if (await ari(lab, "GET", f"/channels/{channel}") or {}).get("name", "").startswith("PJSIP/agent9"):
                await ari(lab, "DELETE", f"/channels/{channel}")

        async def snoop_gone() -> bool:
            names = [str(c.get("name", "")) for c in await ari(lab, "GET", "/channels")]
            return not any(n.startswith(f"Snoop/{customer}") for n in names)

        await eventually(snoop_gone, 20, "the listening snoop hung up with the supervisor's phone")
        # the supervisor ends the call: the whisper session's phone goes with it
        async with http.post(f"{base}/calls/{call.id}/hangup", json={}, ssl=trust,
                             headers={"Authorization": f"Bearer {tokens['supervisor']}"}) as resp:
            assert resp.status == 200, await resp.text()
        await engine.wait_for(lambda: engine.calls()[0].state == "ended", 20, "the call hung up from the API")

        async def supervisors_gone() -> bool:
            names = [str(c.get("name", "")) for c in await ari(lab, "GET", "/channels")]
            return not any(n.startswith(("PJSIP/agent7", "Snoop/")) for n in names)

        await eventually(supervisors_gone, 20, "the whisper session ended with the call")
        assert (await monitor("supervisor", "listen", "agent9"))[0] == 409
    actions = [(e.actor, e.action) for e in AuditTrail(engine.db).entries()]
    for action in ("call.listen", "call.whisper", "call.barge", "call.hangup"):
        assert ("floor", action) in actions
    assert ("quality", "api.denied") not in actions  # qa may use the route; the whisper was refused in the handler
