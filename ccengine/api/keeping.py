"""Routes for keeping recordings: legal holds, retention facts, and the four-eyes
actions that destroy (``recording.purge`` of expired ones, ``recording.erase`` on
request), which run through the approvals of :mod:`ccengine.api.approvals`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..recording.keeping import Keeping, KeepingError
from ..recording.retention import Kept, check_extension, destroy_refusal
from .app import Route, body, error, principal
from .approvals import Check, Executor
from .context import CONTEXT


class HoldBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["recording", "call", "caller"]
    target: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=3, max_length=500)


def _kept_json(kept: Kept) -> dict[str, Any]:
    return {"recording_id": kept.recording_id, "policy": kept.policy, "sealed_at": kept.sealed_at.isoformat(),
            "retain_until": kept.retain_until.isoformat(), "holds": list(kept.holds), "purged": kept.purged}


def _keeping(request: web.Request) -> Keeping:
    keeping = request.app[CONTEXT].keeping
    if keeping is None:
        raise error(503, "no recording vault is configured on this engine")
    return keeping


async def retention(request: web.Request) -> web.Response:
    try:
        kept = await asyncio.to_thread(_keeping(request).kept, request.match_info["recording_id"])
    except KeepingError as exc:
        raise error(404, str(exc)) from None
    return web.json_response(_kept_json(kept))


async def due(request: web.Request) -> web.Response:
    return web.json_response([_kept_json(k) for k in await asyncio.to_thread(_keeping(request).due)])


async def hold_place(request: web.Request) -> web.Response:
    ctx, who = request.app[CONTEXT], principal(request)
    data = await body(request, HoldBody)
    try:
        hold_id = await asyncio.to_thread(_keeping(request).place_hold, data.kind, data.target, data.reason,
                                          who.username)
    except KeepingError as exc:
        raise error(422, str(exc)) from None
    await ctx.record(who, "legal_hold.place", f"{data.kind}:{data.target}", request=request,
                     details={"hold_id": hold_id})
    return web.json_response({"id": hold_id}, status=201)


async def hold_release(request: web.Request) -> web.Response:
    ctx, who = request.app[CONTEXT], principal(request)
    hold_id = request.match_info["hold_id"]
    try:
        await asyncio.to_thread(_keeping(request).release_hold, hold_id, who.username)
    except KeepingError as exc:
        await ctx.record(who, "legal_hold.release", hold_id, request=request, outcome="denied",
                         details={"reason": str(exc)})
        raise error(403 if "four-eyes" in str(exc) else 404, str(exc)) from None
    await ctx.record(who, "legal_hold.release", hold_id, request=request)
    return web.json_response({"id": hold_id, "released": True})


def approval_hooks(keeping: Keeping) -> tuple[dict[str, Executor], dict[str, Check]]:
    """What executing ``recording.purge`` / ``recording.erase`` does, and the
    up-front refusal of an erasure that retention or a hold forbids."""

    def purge(approval_id: str, _target: str, params: dict[str, Any], who: str) -> dict[str, Any]:
        ids = params.get("recordings") or [k.recording_id for k in keeping.due()]
        return _outcomes(keeping.destroy([str(i) for i in ids], by=who, approval_id=approval_id, reason="expired"))

    def erase(approval_id: str, target: str, _params: dict[str, Any], who: str) -> dict[str, Any]:
        return _outcomes(keeping.destroy([target], by=who, approval_id=approval_id, reason="erasure"))

    def extend(approval_id: str, target: str, params: dict[str, Any], who: str) -> dict[str, Any]:
        keeping.extend(target, _until(params), by=who, approval_id=approval_id)
        return {"retain_until": _until(params).isoformat()}

    def erasable(target: str, _params: dict[str, Any]) -> str | None:
        try:
            return destroy_refusal(keeping.kept(target), datetime.now(UTC))
        except KeepingError as exc:
            return str(exc)

    def extensible(target: str, params: dict[str, Any]) -> str | None:
        if keeping.config is None:
            return "no retention policies are loaded"
        try:
            until = _until(params)
        except (KeyError, ValueError) as exc:
            return f"params.until must be an ISO date-time ({exc})"
        try:
            return check_extension(keeping.config, keeping.kept(target), until)
        except KeepingError as exc:
            return str(exc)

    return ({"recording.purge": purge, "recording.erase": erase, "retention.change": extend},
            {"recording.erase": erasable, "retention.change": extensible})


def _until(params: dict[str, Any]) -> datetime:
    until = datetime.fromisoformat(str(params["until"]))
    return until if until.tzinfo else until.replace(tzinfo=UTC)


def _outcomes(outcomes: list[Any]) -> dict[str, Any]:
    return {"destroyed": [o.recording_id for o in outcomes if o.destroyed],
            "refused": {o.recording_id: o.reason for o in outcomes if not o.destroyed}}


ROUTES = [
    Route("GET", "/api/v1/recordings/{recording_id}/retention", retention, ("compliance", "admin", "auditor"),
          "retention policy, keep-until date and legal holds of a sealed recording"),
    Route("GET", "/api/v1/retention/due", due, ("compliance", "admin", "auditor"),
          "sealed recordings past their keeping period (held ones listed with their holds)"),
    Route("POST", "/api/v1/holds", hold_place, ("compliance", "admin"),
          "place a legal hold on a recording, call or caller", HoldBody),
    Route("DELETE", "/api/v1/holds/{hold_id}", hold_release, ("compliance", "admin"),
          "release a legal hold (someone other than who placed it)"),
]
