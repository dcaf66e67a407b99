"""POST /api/v1/calls/{id}/secure-payment (and the control socket's twin): who may ask, what is
refused and why, what is audited."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from ari_apps.payment import SecurePayments
from ari_apps.supervision import Session, Supervision
from ccengine.acd.definitions import load_queue_config
from ccengine.acd.service import Acd
from ccengine.audit.chain import AuditTrail
from ccengine.control import make_app as make_control
from ccengine.lab.queues import write_general_queue
from ccengine.payment.connector import LabConnector
from ccengine.payment.control import payment_routes
from ccengine.store.database import make_engine, upgrade

from .api_support import running_api
from .test_payment_driver import FakeApp, settings, talking_call

ORDER = {"amount": "49.90", "currency": "EUR", "reference": "INV-2026-0042"}


async def test_secure_payment_route(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        async def post(role: str, call_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            async with http.post(f"{api.url}/api/v1/calls/{call_id}/secure-payment", json=body,
                                 headers=api.auth(role)) as resp:
                return resp.status, await resp.json()

        assert (await post("agent", "call-1", ORDER))[0] == 503  # no engine behind this API
        own, other = talking_call(), talking_call()
        other.id, other.agent_id, other.customer = "call-2", "agent2", "cust-2"
        calls = {c.id: c for c in (own, other)}
        app = FakeApp()
        api.ctx.payments = SecurePayments(app, settings(first_digit_timeout=30.0), LabConnector())  # type: ignore[arg-type]
        api.ctx.live_call = calls.get
        supervision = api.ctx.supervision = Supervision(app.pbx, "PJSIP/{agent}")  # type: ignore[arg-type]
        supervision.sessions["s1"] = Session("s1", own.id, "listen", "floor", None, snoop="snoop-1")

        for body, why in [({**ORDER, "reference": "pay-4111111111111111"}, "card number"),
                          ({**ORDER, "amount": "0"}, "amount"), ({**ORDER, "amount": "1.005"}, "amount"),
                          ({**ORDER, "currency": "eur"}, "currency"), ({**ORDER, "cvv": "123"}, "cvv"),
                          ({"amount": "5"}, "currency")]:
            status, reply = await post("agent", own.id, body)
            assert status == 422 and why in reply["error"], (body, reply)
        assert (await post("agent", other.id, ORDER))[0] == 404  # not this agent's call: it does not exist
        assert (await post("supervisor", "nope", ORDER))[0] == 404
        status, reply = await post("agent", own.id, ORDER)
        assert status == 202 and reply["call_id"] == own.id and reply["payment_id"]
        assert supervision.sessions == {} and ("hangup", "snoop-1") in app.pbx.requests  # it would hear the tones
        async with http.post(f"{api.url}/api/v1/calls/{own.id}/monitor", json={"mode": "listen", "phone": "agent9"},
                             headers=api.auth("supervisor")) as resp:
            assert resp.status == 409 and "keying a card" in (await resp.json())["error"]
        status, refused = await post("supervisor", own.id, ORDER)
        assert status == 409 and "already" in refused["error"]
        assert (await post("admin", other.id, ORDER))[0] == 202  # supervisors and admins: any call

        trail = [e for e in AuditTrail(api.ctx.db).entries() if e.action == "call.secure_payment"]
        assert [(e.actor, e.target, e.outcome) for e in trail] == [
            ("agent1", own.id, "success"), ("supervisor1", own.id, "error"), ("admin1", other.id, "success")]
        details = trail[0].details_obj
        assert details["payment_id"] == reply["payment_id"] and details["amount"] == "49.90"
        assert details["listening_ended"] == 1
        for call in (own, other):
            api.ctx.payments.abort(call)
        await asyncio.gather(*app.tasks, return_exceptions=True)


async def test_control_socket_route(tmp_path: Path) -> None:
    """`ccengine agents pay` reaches the same capture through the engine's local socket; audited."""
    url = f"sqlite:///{tmp_path / 'control.db'}"
    upgrade(url)
    db = make_engine(url)
    app, call = FakeApp(), talking_call()
    payments = SecurePayments(app, settings(first_digit_timeout=30.0), LabConnector())  # type: ignore[arg-type]
    acd = Acd(load_queue_config(write_general_queue(tmp_path / "queues.yaml", 2)), lambda _e: None)
    routes = payment_routes(payments, {"agent1": call}.get, AuditTrail(db))
    async with TestClient(TestServer(make_control(acd, ("break",), lambda: True, routes))) as client:
        async def pay(agent: str, **query: str) -> tuple[int, str]:
            async with client.post(f"/payments/{agent}", params=query) as resp:
                return resp.status, resp.reason or ""

        assert await pay("agent1", amount="1.001", currency="EUR", reference="x") == (
            422, "amount: Decimal input should have no more than 2 decimal places")
        assert (await pay("agent2", **ORDER))[0] == 404
        assert (await pay("agent1", **ORDER))[0] == 202
        assert await pay("agent1", **ORDER) == (409, "a payment is already being captured on this call")
    assert [(e.actor, e.outcome) for e in AuditTrail(db).entries() if e.action == "call.secure_payment"] == [
        ("control-socket", "success"), ("control-socket", "error")]
    payments.abort(call)
    await asyncio.gather(*app.tasks, return_exceptions=True)
    db.dispose()
