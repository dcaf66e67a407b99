"""Blind transfer of a live call (to a queue, a named agent, an outside number) and its four-eyes
variant: a transfer that confirms a high-value funds transfer is the ``transfer.confirm_high_value``
approval (requested by the agent or a supervisor, approved by another supervisor), and happens
only when its requester executes the approved request."""

from __future__ import annotations

import asyncio
import re
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ari_apps.inbound import TransferRefused

from .app import Route, body, error, principal
from .approvals import APPROVALS, Check, Executor, Refused
from .context import CONTEXT, ApiContext
from .security import Principal, Role

HIGH_VALUE = "transfer.confirm_high_value"
TRANSFER_ROLES: tuple[Role, ...] = ("agent", "supervisor", "admin")
_NUMBER = re.compile(r"\+?[0-9]{3,20}")


class TransferTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["queue", "agent", "number"]
    target: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.+-]+$",
                        description="queue id, agent id, or outside number (digits, optional leading +)")

    @model_validator(mode="after")
    def _dialable(self) -> TransferTarget:
        if self.kind == "number" and not _NUMBER.fullmatch(self.target):
            raise ValueError("an outside number is 3 to 20 digits, optionally after +")
        return self


class TransferBody(TransferTarget):
    high_value: bool = Field(False, description="this transfer confirms a high-value funds transfer: it is "
                                                "requested for four-eyes approval (202) instead of done")


def _authorise(who: Principal, call_agent: str | None, call_id: str, kind: str) -> TransferRefused | None:
    """Agents move only their own calls (others' are not even confirmed to exist), never to an
    outside number (toll fraud); supervisors and admins move any call anywhere."""
    if who.role != "agent":
        return None
    if call_agent is None or call_agent != who.agent_id:
        return TransferRefused(f"no live call {call_id}", 404)
    if kind == "number":
        return TransferRefused("an agent may transfer to a queue or an agent; an outside number needs a supervisor",
                               403)
    return None


def _refusal(ctx: ApiContext, who: Principal, call_id: str, data: TransferTarget) -> TransferRefused | None:
    app = ctx.inbound()
    if app is None:
        return TransferRefused("no PBX connected", 503)
    call = app.sessions.get(call_id)
    return (_authorise(who, call.agent_id if call else None, call_id, data.kind)
            or app.transfer_refusal(call_id, data.kind, data.target))


async def perform(ctx: ApiContext, who: Principal, call_id: str, data: TransferTarget,
                  approval_id: str | None = None) -> dict[str, Any]:
    """Check and start the transfer on the event loop; ``TransferRefused`` if it cannot be done."""
    refusal = _refusal(ctx, who, call_id, data)
    app = ctx.inbound()
    if refusal is not None or app is None:
        raise refusal or TransferRefused("no PBX connected", 503)
    from_agent = app.sessions[call_id].agent_id
    await app.transfer(call_id, data.kind, data.target, requested_by=who.username, approval_id=approval_id)
    return {"call_id": call_id, "kind": data.kind, "target": data.target, "from_agent_id": from_agent,
            "status": "transferring", "approval_id": approval_id}


async def call_transfer(request: web.Request) -> web.Response:
    ctx, who = request.app[CONTEXT], principal(request)
    call_id = request.match_info["call_id"]
    data = await body(request, TransferBody)
    target = TransferTarget(kind=data.kind, target=data.target)
    details = {"kind": data.kind, "target": data.target, "high_value": data.high_value}
    if data.high_value:
        refusal = _refusal(ctx, who, call_id, target)
        if refusal is not None:
            await ctx.record(who, "call.transfer", call_id, request=request, outcome="denied",
                             details={**details, "reason": refusal.reason})
            raise error(refusal.status, refusal.reason)
        try:
            row = await asyncio.to_thread(request.app[APPROVALS].request, who, HIGH_VALUE, call_id,
                                          target.model_dump())
        except Refused as exc:
            await ctx.record(who, "approval.request", HIGH_VALUE, request=request, outcome="denied",
                             details={"reason": exc.reason})
            raise error(exc.status, exc.reason) from None
        await ctx.record(who, "approval.request", f"{HIGH_VALUE} {call_id}", request=request,
                         details={**details, "approval": row["id"]})
        return web.json_response({"call_id": call_id, "status": "pending_approval", "approval": row}, status=202)
    try:
        result = await perform(ctx, who, call_id, target)
    except TransferRefused as exc:
        await ctx.record(who, "call.transfer", call_id, request=request, outcome="denied",
                         details={**details, "reason": exc.reason})
        raise error(exc.status, exc.reason) from None
    await ctx.record(who, "call.transfer", call_id, request=request,
                     details={**details, "from_agent": result["from_agent_id"]})
    return web.json_response(result, status=202)


def install(app: web.Application, ctx: ApiContext) -> tuple[dict[str, Executor], dict[str, Check]]:
    """The executor and up-front check of ``transfer.confirm_high_value``. The executor runs in a
    worker thread (approvals are consumed in the database there); the transfer itself runs on the
    event loop, which is captured when the application starts."""
    loops: list[asyncio.AbstractEventLoop] = []

    async def capture(_app: web.Application) -> None:
        loops.append(asyncio.get_running_loop())

    app.on_startup.append(capture)

    def confirm(approval_id: str, call_id: str, params: dict[str, Any], who: str) -> dict[str, Any]:
        requester = ctx.users.principal(who)
        if requester is None:
            raise Refused(403, f"user {who} is disabled")
        try:
            target = TransferTarget.model_validate(params)
        except ValidationError as exc:
            raise Refused(422, f"params: {exc.errors()[0]['msg']}") from None
        done = asyncio.run_coroutine_threadsafe(perform(ctx, requester, call_id, target, approval_id), loops[0])
        try:
            return {"transfer": done.result(timeout=60)}
        except TransferRefused as exc:
            raise Refused(exc.status, exc.reason) from None

    def well_formed(_call_id: str, params: dict[str, Any]) -> str | None:
        try:
            TransferTarget.model_validate(params)
        except ValidationError as exc:
            return f"params must be {{kind, target}} of a transfer: {exc.errors()[0]['msg']}"
        return None

    return {HIGH_VALUE: confirm}, {HIGH_VALUE: well_formed}


ROUTES = [
    Route("POST", "/api/v1/calls/{call_id}/transfer", call_transfer, TRANSFER_ROLES,
          "blind transfer of a connected call to a queue, a named agent (409 unless ready) or an outside number "
          "(supervisors); high_value asks four-eyes approval first", TransferBody),
]
