"""Routes for four-eyes approvals, webhooks and Prometheus metrics."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, HttpUrl
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..core.events import PAYLOADS
from . import transfers
from .app import Route, body, error, principal
from .approvals import APPROVALS, APPROVERS, REQUESTERS, Approvals, Refused
from .context import CONTEXT, ApiContext
from .keeping import approval_hooks
from .tables import DeadLetterRow, UserRow, WebhookRow
from .webhooks import DISPATCHER, WebhookDispatcher, suspension


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApprovalBody(_Body):
    action: str = Field(max_length=64)
    target: str = Field(max_length=256)
    params: dict[str, Any] = Field(default_factory=dict)


class DecisionBody(_Body):
    comment: str = Field("", max_length=500)


class WebhookBody(_Body):
    url: HttpUrl
    event_types: list[str] = Field(min_length=1, max_length=50)
    secret: str | None = Field(None, min_length=16, max_length=128)


def install(app: web.Application, ctx: ApiContext) -> None:
    """Background parts: the webhook dispatcher runs while the app runs."""
    dispatcher = WebhookDispatcher(ctx)
    app[DISPATCHER] = dispatcher
    executors, checks = approval_hooks(ctx.keeping) if ctx.keeping is not None else ({}, {})
    transfer_executors, transfer_checks = transfers.install(app, ctx)
    executors.update(transfer_executors)
    checks.update(transfer_checks)
    app[APPROVALS] = Approvals(ctx.db, ctx.settings.approval_seconds, executors=executors, checks=checks)

    async def start(_app: web.Application) -> None:
        await dispatcher.start()

    async def stop(_app: web.Application) -> None:
        await dispatcher.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)


def _refused(exc: Refused) -> web.HTTPException:
    return error(exc.status, exc.reason)


async def approval_request(request: web.Request) -> web.Response:
    ctx, who = request.app[CONTEXT], principal(request)
    data = await body(request, ApprovalBody)
    try:
        row = await asyncio.to_thread(request.app[APPROVALS].request, who, data.action, data.target, data.params)
    except Refused as exc:
        await ctx.record(who, "approval.request", data.action, request=request, outcome="denied",
                         details={"reason": exc.reason})
        raise _refused(exc) from None
    await ctx.record(who, "approval.request", f"{data.action} {data.target}", request=request,
                     details={"approval": row["id"]})
    return web.json_response(row, status=201)


async def approval_list(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(request.app[APPROVALS].list, request.query.get("status")))


def _decision(approve: bool) -> Any:
    async def handler(request: web.Request) -> web.Response:
        ctx, who = request.app[CONTEXT], principal(request)
        await body(request, DecisionBody)
        approval_id = request.match_info["approval_id"]
        action = "approval.approve" if approve else "approval.reject"
        try:
            row = await asyncio.to_thread(request.app[APPROVALS].decide, approval_id, who, approve)
        except Refused as exc:
            await ctx.record(who, action, approval_id, request=request, outcome="denied",
                             details={"reason": exc.reason})
            raise _refused(exc) from None
        await ctx.record(who, action, approval_id, request=request,
                         details={"action": row["action"], "requested_by": row["requested_by"]})
        return web.json_response(row)

    return handler


async def approval_execute(request: web.Request) -> web.Response:
    ctx, who = request.app[CONTEXT], principal(request)
    await body(request, DecisionBody)
    approval_id = request.match_info["approval_id"]
    try:
        result = await asyncio.to_thread(request.app[APPROVALS].execute, approval_id, who)
    except Refused as exc:
        await ctx.record(who, "approval.execute", approval_id, request=request, outcome="denied",
                         details={"reason": exc.reason})
        raise _refused(exc) from None
    await ctx.record(who, "approval.execute", approval_id, request=request,
                     details={"action": result["action"], "target": result["target"]})
    return web.json_response(result)


async def webhook_list(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]

    def read() -> list[dict[str, Any]]:
        query = select(WebhookRow, UserRow).outerjoin(UserRow, UserRow.username == WebhookRow.created_by)
        with Session(ctx.db) as session:
            return [{"id": h.id, "url": h.url, "event_types": h.event_types, "active": h.active,
                     "created_by": h.created_by, "suspended": suspension(user)}
                    for h, user in session.execute(query).all()]

    return web.json_response(await asyncio.to_thread(read))


async def webhook_create(request: web.Request) -> web.Response:
    ctx, who = request.app[CONTEXT], principal(request)
    data = await body(request, WebhookBody)
    families = {t.split(".")[0] for t in PAYLOADS}
    for event_type in data.event_types:
        known = event_type in PAYLOADS or (event_type.endswith(".*") and event_type[:-2] in families)
        if not known:
            raise error(422, f"event_types: unknown event type {event_type!r}")
    secret = data.secret or secrets.token_urlsafe(32)
    after = ctx.hub.last_seq  # a new hook receives what is stored from now on

    def write() -> int:
        with Session(ctx.db) as session, session.begin():
            row = WebhookRow(url=str(data.url), secret=secret, event_types=data.event_types, created_by=who.username,
                             created_at=datetime.now(UTC), active=True, last_seq=after)
            session.add(row)
            session.flush()
            return row.id

    hook_id = await asyncio.to_thread(write)
    request.app[DISPATCHER].watch({"id": hook_id, "url": str(data.url), "secret": secret,
                                   "event_types": data.event_types, "after": after})
    await ctx.record(who, "webhook.create", str(data.url), request=request, details={"id": hook_id})
    return web.json_response({"id": hook_id, "url": str(data.url), "event_types": data.event_types,
                              "secret": secret}, status=201)


async def dead_letters(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]

    def read() -> list[dict[str, Any]]:
        with Session(ctx.db) as session:
            return [{"id": d.id, "webhook_id": d.webhook_id, "event_seq": d.event_seq, "event_type": d.event_type,
                     "attempts": d.attempts, "last_error": d.last_error, "failed_at": d.failed_at.isoformat()}
                    for d in session.scalars(select(DeadLetterRow).order_by(DeadLetterRow.id).limit(1000))]

    return web.json_response(await asyncio.to_thread(read))


def _labels(**labels: object) -> str:
    inner = ",".join(f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                     for k, v in labels.items())
    return "{" + inner + "}" if inner else ""


def exposition(ctx: ApiContext) -> str:
    """Prometheus text format 0.0.4."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, object], float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{_labels(**labels)} {value:g}" for labels, value in samples)

    m = ctx.metrics
    metric("ccengine_http_requests_total", "counter", "API requests by route and status",
           [({"route": route, "status": status}, n) for (route, status), n in sorted(m.requests.items())])
    metric("ccengine_logins_total", "counter", "password logins by outcome",
           [({"outcome": k}, v) for k, v in sorted(m.logins.items())])
    metric("ccengine_webhook_deliveries_total", "counter", "webhook delivery attempts by outcome",
           [({"outcome": k}, v) for k, v in sorted(m.webhook_deliveries.items())])
    metric("ccengine_stream_events_total", "counter", "events fanned out by the stream hub",
           [({}, ctx.hub.published)])
    metric("ccengine_stream_last_seq", "gauge", "sequence number of the newest stored event",
           [({}, ctx.hub.last_seq)])
    metric("ccengine_stream_subscribers", "gauge", "connected stream subscribers (incl. webhooks)",
           [({}, ctx.hub.subscribers)])
    if ctx.acd is not None:
        states = Counter(a.state for a in ctx.acd.agents.values())
        metric("ccengine_agents", "gauge", "agents by state", [({"state": s}, n) for s, n in sorted(states.items())])
        waiting = Counter(w.queue_id for w in ctx.acd.waiting.values())
        metric("ccengine_queue_waiting", "gauge", "calls waiting per queue",
               [({"queue": q}, waiting.get(q, 0)) for q in sorted(ctx.acd.config.queues)])
    return "\n".join(lines) + "\n"


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=exposition(request.app[CONTEXT]), content_type="text/plain",
                        headers={"X-Prometheus-Format": "0.0.4"})


ROUTES = [
    Route("POST", "/api/v1/approvals", approval_request, REQUESTERS, "request a sensitive operation", ApprovalBody),
    Route("GET", "/api/v1/approvals", approval_list, ("supervisor", "compliance", "admin", "auditor"),
          "approval requests"),
    Route("POST", "/api/v1/approvals/{approval_id}/approve", _decision(True), APPROVERS,
          "approve (a different user with an approver role, before expiry)", DecisionBody),
    Route("POST", "/api/v1/approvals/{approval_id}/reject", _decision(False), APPROVERS, "reject", DecisionBody),
    Route("POST", "/api/v1/approvals/{approval_id}/execute", approval_execute, REQUESTERS,
          "the requester consumes an approved request, once", DecisionBody),
    Route("GET", "/api/v1/webhooks", webhook_list, ("admin", "auditor"), "webhooks"),
    Route("POST", "/api/v1/webhooks", webhook_create, ("admin",), "register a webhook", WebhookBody),
    Route("GET", "/api/v1/webhooks/dead-letters", dead_letters, ("admin", "auditor"), "undeliverable events"),
    Route("GET", "/metrics", metrics, ("supervisor", "admin", "auditor"), "Prometheus metrics"),
]
