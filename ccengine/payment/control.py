"""``POST /payments/{agent}`` on the engine's local control socket (``ccengine agents pay``):
the same request as the API's, for tools on the engine's host; audited with the socket as actor."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import ValidationError

from ari_apps.payment import PaymentRefused, SecurePayments

from ..audit.chain import AuditTrail
from .connector import PaymentRequest
from .order import PaymentOrder

if TYPE_CHECKING:
    from ari_apps.inbound import CallSession

ACTOR = "control-socket"  # only the engine's own user can reach the socket (mode 0600)


def payment_routes(payments: SecurePayments, agent_call: Callable[[str], CallSession | None],
                   audit: AuditTrail) -> list[web.RouteDef]:
    """``agent_call``: the live call an agent is on, if any."""

    async def secure_payment(request: web.Request) -> web.Response:
        agent = request.match_info["agent"]
        try:
            order = PaymentOrder.model_validate(dict(request.query))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise web.HTTPUnprocessableEntity(reason=problems) from None
        call = agent_call(agent)
        if call is None:
            raise web.HTTPNotFound(reason=f"agent {agent} is on no live call")
        details = {"agent": agent, "amount": str(order.amount), "currency": order.currency,
                   "reference": order.reference}
        try:
            payment = await payments.start(call, PaymentRequest(call.id, order.amount, order.currency,
                                                                order.reference), f"{ACTOR}:{agent}")
        except PaymentRefused as exc:
            await asyncio.to_thread(audit.append, ACTOR, "call.secure_payment", call.id, outcome="error",
                                    details={**details, "error": str(exc)})
            raise web.HTTPConflict(reason=str(exc)) from None
        await asyncio.to_thread(audit.append, ACTOR, "call.secure_payment", call.id,
                                details={**details, "payment_id": payment.id})
        return web.json_response({"payment_id": payment.id, "call_id": call.id}, status=202)

    return [web.post("/payments/{agent}", secure_payment)]
