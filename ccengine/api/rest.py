"""REST resources: health, login, users and tokens, queues, agents, calls (hang-up, monitoring,
secure payment), recordings, campaigns, reports, audit. Reads run in worker threads; the ACD is
touched on the loop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from ari_apps.payment import PaymentRefused
from ari_apps.supervision import SupervisionError

from ..acd.router import RoutingError
from ..acd.stats import live_state, queue_stats
from ..payment.connector import PaymentRequest
from ..payment.order import PaymentOrder
from ..pbx.protocol import PbxError
from ..store.reports import kpis
from ..store.schema import CallRow, EventRow, LegRow, RecordingRow
from .app import Route, body, error, principal
from .context import CONTEXT, ApiContext
from .security import EVENT_FAMILIES, ROLES, Principal, Role
from .users import UserError
from .webhooks import DISPATCHER

ALL = ROLES
READERS: tuple[Role, ...] = ("supervisor", "admin", "auditor")
CALL_READERS: tuple[Role, ...] = ("agent", "supervisor", "qa", "compliance", "admin", "auditor")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(_Body):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class UserBody(_Body):
    username: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    role: Literal["agent", "supervisor", "qa", "compliance", "admin", "auditor"]
    password: str | None = Field(None, min_length=12, max_length=256)
    agent_id: str | None = Field(None, max_length=64)


class UserChangeBody(_Body):
    role: Literal["agent", "supervisor", "qa", "compliance", "admin", "auditor"] | None = None
    agent_id: str | None = Field(None, min_length=1, max_length=64)
    disabled: bool | None = Field(None, description="true: every token and session of the user is refused at once")


class TokenBody(_Body):
    name: str = Field("api", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    ttl_seconds: float | None = Field(None, gt=0, le=10 * 365 * 86400)


class AgentStateBody(_Body):
    state: Literal["login", "logout", "ready", "not_ready"]
    reason: str = Field("", max_length=64)


class MonitorBody(_Body):
    mode: Literal["listen", "whisper", "barge"]
    phone: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$", description="the supervisor's phone (dial-plan id)")


class HangupBody(_Body):
    reason: str = Field("normal", pattern=r"^(normal|busy|congestion|no_answer)$")


def _ctx(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


def _iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


async def health(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    return web.json_response({"status": "ok", "last_seq": ctx.hub.last_seq, "pbx": ctx.pbx is not None})


async def login(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    data = await body(request, LoginBody)
    result = await asyncio.to_thread(ctx.users.login, data.username, data.password)
    if result.principal is None:
        ctx.metrics.count(ctx.metrics.logins, "failure")
        await ctx.record(data.username, "api.login", data.username, request=request, outcome="failure",
                         details={"reason": result.reason})
        raise error(401, result.reason)
    ctx.metrics.count(ctx.metrics.logins, "success")
    await ctx.record(result.principal, "api.login", data.username, request=request)
    return web.json_response({"token": result.token, "role": result.principal.role,
                              "expires_in": ctx.settings.session_seconds})


async def me(request: web.Request) -> web.Response:
    who = principal(request)
    return web.json_response({"username": who.username, "role": who.role, "agent_id": who.agent_id})


async def roles(_request: web.Request) -> web.Response:
    from .server import routes as all_routes

    return web.json_response({role: {
        "event_families": [f"{p}*" for p in EVENT_FAMILIES[role]],
        "routes": [f"{r.method} {r.path}" for r in all_routes() if r.roles is None or role in r.roles],
    } for role in ROLES})


async def users_list(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(_ctx(request).users.list))


async def users_add(request: web.Request) -> web.Response:
    ctx, who = _ctx(request), principal(request)
    data = await body(request, UserBody)
    try:
        await asyncio.to_thread(ctx.users.add, data.username, data.role, data.password, data.agent_id)
    except UserError as exc:
        raise error(exc.status, str(exc)) from None
    await ctx.record(who, "user.create", data.username, request=request, details={"role": data.role})
    return web.json_response({"username": data.username, "role": data.role, "agent_id": data.agent_id}, status=201)


async def tokens_create(request: web.Request) -> web.Response:
    ctx, who = _ctx(request), principal(request)
    data = await body(request, TokenBody)
    username = request.match_info["username"]
    try:
        token = await asyncio.to_thread(ctx.users.create_token, username, data.name, data.ttl_seconds)
    except UserError as exc:
        raise error(exc.status, str(exc)) from None
    await ctx.record(who, "token.create", username, request=request, details={"name": data.name})
    return web.json_response({"username": username, "name": data.name, "token": token}, status=201)


async def user_change(request: web.Request) -> web.Response:
    ctx, who = _ctx(request), principal(request)
    data = await body(request, UserChangeBody)
    username = request.match_info["username"]
    changes = data.model_dump(exclude_none=True)
    if not changes:
        raise error(422, "nothing to change: give role, agent_id or disabled")
    action = "user.change" if data.disabled is None else "user.disable" if data.disabled else "user.enable"
    try:
        changed = await asyncio.to_thread(ctx.users.change, who.username, username, **changes)
    except UserError as exc:
        await ctx.record(who, action, username, request=request, outcome="denied",
                         details={"reason": str(exc), **changes})
        raise error(exc.status, str(exc)) from None
    if data.disabled:
        changed["streams_closed"] = ctx.hub.disconnect(username)
    changed["webhooks_suspended"], changed["webhooks_resumed"] = \
        await request.app[DISPATCHER].owner_changed(username)
    await ctx.record(who, action, username, request=request, details=changes)
    return web.json_response(changed)


async def tokens_list(request: web.Request) -> web.Response:
    try:
        return web.json_response(await asyncio.to_thread(_ctx(request).users.tokens, request.match_info["username"]))
    except UserError as exc:
        raise error(exc.status, str(exc)) from None


async def token_revoke(request: web.Request) -> web.Response:
    ctx, who = _ctx(request), principal(request)
    username, raw_id = request.match_info["username"], request.match_info["token_id"]
    if not raw_id.isdigit() or len(raw_id) > 18:
        raise error(400, "token_id must be a token's numeric id (GET .../tokens lists them)")
    token_id = int(raw_id)
    try:
        await asyncio.to_thread(ctx.users.revoke_token, username, token_id)
    except UserError as exc:
        await ctx.record(who, "token.revoke", f"{username}/{token_id}", request=request, outcome="denied",
                         details={"reason": str(exc)})
        raise error(exc.status, str(exc)) from None
    closed = ctx.hub.disconnect(username, token_id)
    await ctx.record(who, "token.revoke", f"{username}/{token_id}", request=request)
    return web.json_response({"username": username, "token_id": token_id, "revoked": True, "streams_closed": closed})


async def queues(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)

    def read() -> list[dict[str, Any]]:
        live, _agents = live_state(ctx.db, now)
        waiting = {q.queue: q for q in live}
        ids = sorted(ctx.acd.config.queues) if ctx.acd else sorted(waiting)
        stats = {s.queue: s for s in queue_stats(ctx.db, ctx.acd.config, today)} if ctx.acd else {}
        out = []
        for qid in ids:
            w, s = waiting.get(qid), stats.get(qid)
            out.append({"id": qid, "waiting": w.waiting if w else 0,
                        "longest_wait_seconds": w.longest_wait_seconds if w else None,
                        "offered_today": s.offered if s else 0, "answered_today": s.answered if s else 0,
                        "abandoned_today": s.abandoned if s else 0,
                        "service_level_today": s.service_level if s else None,
                        "asa_seconds_today": s.asa_seconds if s else None})
        return out

    return web.json_response(await asyncio.to_thread(read))


def _agents_view(ctx: ApiContext, who: Principal) -> list[dict[str, Any]]:
    import time

    if ctx.acd is None:
        return []
    now = time.monotonic()
    return [{"id": a.id, "state": a.state, "reason": a.reason, "call_id": a.call_id, "queue": a.queue_id,
             "seconds_in_state": round(now - a.since, 1)}
            for a in ctx.acd.agents.values() if who.role != "agent" or a.id == who.agent_id]


async def agents(request: web.Request) -> web.Response:
    return web.json_response(_agents_view(_ctx(request), principal(request)))


async def agent_state(request: web.Request) -> web.Response:
    ctx, who = _ctx(request), principal(request)
    agent_id = request.match_info["agent"]
    data = await body(request, AgentStateBody)
    if who.role == "agent" and agent_id != who.agent_id:
        raise error(403, "an agent may only change their own state")
    acd = ctx.acd
    if acd is None:
        raise error(503, "the ACD is not running")
    if agent_id not in acd.agents:
        raise error(404, f"unknown agent {agent_id}")
    if data.state == "not_ready" and data.reason not in ctx.reasons:
        raise error(422, f"reason must be one of: {', '.join(ctx.reasons)}")
    try:
        if data.state == "login":
            acd.login(agent_id, ready=False)
        elif data.state == "logout":
            acd.logout(agent_id)
        elif data.state == "ready":
            acd.ready(agent_id, data.reason or "manual")
        else:
            acd.not_ready(agent_id, data.reason)
    except RoutingError as exc:
        raise error(409, str(exc)) from None
    await ctx.record(who, f"agent.{data.state}", agent_id, request=request, details={"reason": data.reason})
    view = acd.agents[agent_id]
    return web.json_response({"id": agent_id, "state": view.state, "reason": view.reason})


def _call_json(call: CallRow) -> dict[str, Any]:
    return {"id": call.id, "caller_number": call.caller_number, "dialed": call.dialed, "state": call.state,
            "queue": call.queue, "agent_id": call.agent_id, "disposition": call.disposition,
            "offered_at": _iso(call.offered_at), "queued_at": _iso(call.queued_at),
            "answered_at": _iso(call.answered_at), "ended_at": _iso(call.ended_at)}


def _limit(request: web.Request, default: int = 100, most: int = 1000) -> int:
    try:
        limit = int(request.query.get("limit", default))
    except ValueError:
        raise error(400, "limit must be an integer") from None
    if not 1 <= limit <= most:
        raise error(400, f"limit must be within 1..{most}")
    return limit


async def calls(request: web.Request) -> web.Response:
    ctx, who = _ctx(request), principal(request)
    limit = _limit(request)
    state = request.query.get("state")
    if state is not None and state not in ("active", "ended"):
        raise error(400, "state must be active or ended")

    def read() -> list[dict[str, Any]]:
        query = select(CallRow).order_by(CallRow.offered_at.desc()).limit(limit)
        if who.role == "agent":
            query = query.where(CallRow.agent_id == who.agent_id)
        if state == "active":
            query = query.where(CallRow.ended_at.is_(None))
        elif state == "ended":
            query = query.where(CallRow.ended_at.is_not(None))
        with Session(ctx.db) as session:
            return [_call_json(c) for c in session.scalars(query)]

    return web.json_response(await asyncio.to_thread(read))


async def call_detail(request: web.Request) -> web.Response:
    ctx, who = _ctx(request), principal(request)
    call_id = request.match_info["call_id"]

    def read() -> dict[str, Any] | None:
        with Session(ctx.db) as session:
            call = session.get(CallRow, call_id)
            if call is None or (who.role == "agent" and call.agent_id != who.agent_id):
                return None  # an agent cannot even learn that someone else's call exists
            legs = session.scalars(select(LegRow).where(LegRow.call_id == call_id)).all()
            events = session.scalars(select(EventRow).where(EventRow.call_id == call_id).order_by(EventRow.seq))
            return {**_call_json(call),
                    "legs": [{"channel_id": leg.channel_id, "role": leg.role, "agent_id": leg.agent_id,
                              "ended_at": _iso(leg.ended_at)} for leg in legs],
                    "events": [{"seq": e.seq, "type": e.type, "occurred_at": _iso(e.occurred_at)} for e in events
                               if who.may_see_event(e.type, e.agent_id) or who.role != "agent"]}

    found = await asyncio.to_thread(read)
    if found is None:
        raise error(404, f"no call {call_id}")
    return web.json_response(found)


def customer_channel(ctx: ApiContext, call_id: str) -> str | None:
    with Session(ctx.db) as session:
        return session.scalar(select(LegRow.channel_id).where(LegRow.call_id == call_id, LegRow.role == "customer",
                                                              LegRow.ended_at.is_(None)))


async def call_hangup(request: web.Request) -> web.Response:
    ctx, who = _ctx(request), principal(request)
    call_id = request.match_info["call_id"]
    data = await body(request, HangupBody)
    if ctx.pbx is None:
        raise error(503, "no PBX connected")
    channel = await asyncio.to_thread(customer_channel, ctx, call_id)
    if channel is None:
        raise error(404, f"no active call {call_id}")
    try:
        await ctx.pbx.hangup(channel, data.reason)
    except PbxError as exc:
        await ctx.record(who, "call.hangup", call_id, request=request, outcome="error", details={"error": str(exc)})
        raise error(409, f"hangup failed: {exc}") from None
    await ctx.record(who, "call.hangup", call_id, request=request, details={"channel": channel})
    return web.json_response({"call_id": call_id, "hung_up": channel})


async def call_monitor(request: web.Request) -> web.Response:
    ctx, who = _ctx(request), principal(request)
    call_id = request.match_info["call_id"]
    data = await body(request, MonitorBody)
    if who.role == "qa" and data.mode != "listen":
        raise error(403, "quality analysts may listen, not whisper or barge")
    if ctx.supervision is None or ctx.live_call is None:
        raise error(503, "no PBX connected")
    call = ctx.live_call(call_id)
    if call is None or call.state != "talking":
        raise error(409, f"call {call_id} is not a live call with an agent")
    if call.payment is not None and data.mode == "listen":
        raise error(409, "the caller is keying a card; listening is possible again once the payment is over")
    try:
        session = await ctx.supervision.start(call_id=call_id, customer=call.customer, agent_channel=call.agent_channel,
                                              call_bridge=call.bridge_id, mode=data.mode, phone=data.phone,
                                              supervisor=who.username)
    except (SupervisionError, PbxError) as exc:
        await ctx.record(who, f"call.{data.mode}", call_id, request=request, outcome="error",
                         details={"error": str(exc)})
        raise error(409, str(exc)) from None
    await ctx.record(who, f"call.{data.mode}", call_id, request=request,
                     details={"phone": data.phone, "session": session.id, "agent": call.agent_id})
    return web.json_response({"session": session.id, "call_id": call_id, "mode": data.mode}, status=201)


async def call_secure_payment(request: web.Request) -> web.Response:
    """The caller keys a card into the engine while the agent waits on hold; the outcome arrives as
    ``call.payment_captured`` or ``call.payment_failed``."""
    ctx, who = _ctx(request), principal(request)
    call_id = request.match_info["call_id"]
    data = await body(request, PaymentOrder)
    if ctx.payments is None or ctx.live_call is None:
        raise error(503, "secure payments need the running engine")
    call = ctx.live_call(call_id)
    if call is None or (who.role == "agent" and call.agent_id != who.agent_id):
        raise error(404, f"no live call {call_id}")  # an agent cannot learn of someone else's call
    details: dict[str, Any] = {"amount": str(data.amount), "currency": data.currency, "reference": data.reference}
    if ctx.supervision is not None and call.payment is None:
        details["listening_ended"] = await ctx.supervision.stop_listening(call_id)  # a snoop would hear the tones
    try:
        payment = await ctx.payments.start(call, PaymentRequest(call_id, data.amount, data.currency, data.reference),
                                           who.username)
    except PaymentRefused as exc:
        await ctx.record(who, "call.secure_payment", call_id, request=request, outcome="error",
                         details={**details, "error": str(exc)})
        raise error(409, str(exc)) from None
    await ctx.record(who, "call.secure_payment", call_id, request=request,
                     details={**details, "payment_id": payment.id})
    return web.json_response({"payment_id": payment.id, "call_id": call_id,
                              "window_started_at": _iso(payment.window.started_at)}, status=202)


async def recordings(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    limit = _limit(request)

    def read() -> list[dict[str, Any]]:
        with Session(ctx.db) as session:
            rows = session.scalars(select(RecordingRow).order_by(RecordingRow.started_at.desc()).limit(limit))
            return [{"id": r.id, "call_id": r.call_id, "started_at": _iso(r.started_at), "ended_at": _iso(r.ended_at),
                     "duration_seconds": r.duration_seconds, "size_bytes": r.size_bytes} for r in rows]

    return web.json_response(await asyncio.to_thread(read))


async def campaigns(request: web.Request) -> web.Response:
    from ..dialer.schema import CampaignRow

    ctx = _ctx(request)

    def read() -> list[dict[str, Any]]:
        with Session(ctx.db) as session:
            return [{c.name: _plain(getattr(row, c.name)) for c in CampaignRow.__table__.columns}
                    for row in session.scalars(select(CampaignRow))]

    return web.json_response(await asyncio.to_thread(read))


def _plain(value: Any) -> Any:
    return _iso(value) if isinstance(value, datetime) else value


async def report_kpis(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    result = await asyncio.to_thread(kpis, ctx.db)
    return web.json_response({k: _plain(v) for k, v in result.__dict__.items()})


async def audit_entries(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    try:
        after = int(request.query.get("after", "0"))
    except ValueError:
        raise error(400, "after must be an integer") from None
    limit = _limit(request)

    def read() -> list[dict[str, Any]]:
        out = []
        for entry in ctx.audit.entries(after + 1):
            out.append(entry.to_json())
            if len(out) >= limit:
                break
        return out

    return web.json_response(await asyncio.to_thread(read))


ROUTES = [
    Route("GET", "/api/v1/health", health, None, "liveness and the stream's last sequence number"),
    Route("POST", "/api/v1/login", login, None, "password login; returns a session token", LoginBody),
    Route("GET", "/api/v1/me", me, ALL, "the caller's identity and role"),
    Route("GET", "/api/v1/roles", roles, ALL, "roles, their event families and routes"),
    Route("GET", "/api/v1/users", users_list, ("admin", "auditor"), "list users"),
    Route("POST", "/api/v1/users", users_add, ("admin",), "create a user", UserBody),
    Route("PATCH", "/api/v1/users/{username}", user_change, ("admin",),
          "change a user's role or agent id, disable or enable them (not oneself, never the last admin)",
          UserChangeBody),
    Route("POST", "/api/v1/users/{username}/tokens", tokens_create, ("admin",), "issue an API token", TokenBody),
    Route("GET", "/api/v1/users/{username}/tokens", tokens_list, ("admin", "auditor"),
          "a user's tokens (ids, names, dates; never the secret)"),
    Route("DELETE", "/api/v1/users/{username}/tokens/{token_id}", token_revoke, ("admin",),
          "revoke one token (its open event streams end too)"),
    Route("GET", "/api/v1/queues", queues, ("agent", *READERS), "queues: waiting, longest wait, today's SL"),
    Route("GET", "/api/v1/agents", agents, ("agent", *READERS), "agents with state and time in state"),
    Route("POST", "/api/v1/agents/{agent}/state", agent_state, ("agent", "supervisor", "admin"),
          "log in/out, ready, not ready with a reason", AgentStateBody),
    Route("GET", "/api/v1/calls", calls, CALL_READERS, "recent calls (an agent sees their own)"),
    Route("GET", "/api/v1/calls/{call_id}", call_detail, CALL_READERS, "one call with legs and events"),
    Route("POST", "/api/v1/calls/{call_id}/hangup", call_hangup, ("supervisor", "admin"), "hang up a call",
          HangupBody),
    Route("POST", "/api/v1/calls/{call_id}/monitor", call_monitor, ("supervisor", "qa"),
          "listen, whisper (agent only hears) or barge into a live call from the supervisor's phone", MonitorBody),
    Route("POST", "/api/v1/calls/{call_id}/secure-payment", call_secure_payment, ("agent", "supervisor", "admin"),
          "the caller keys a card for the agent's payment (the agent is on hold, the recording masked); "
          "202, then call.payment_captured or call.payment_failed", PaymentOrder),
    Route("GET", "/api/v1/recordings", recordings, ("supervisor", "qa", "compliance", "auditor"), "recordings"),
    Route("GET", "/api/v1/campaigns", campaigns, ("supervisor", "admin", "auditor"), "outbound campaigns"),
    Route("GET", "/api/v1/reports/kpis", report_kpis, ("supervisor", "qa", "admin", "auditor"), "call KPIs"),
    Route("GET", "/api/v1/audit", audit_entries, ("auditor", "compliance"), "the audit chain after a seq"),
]
