"""Campaign control over REST: start a campaign file by name, pause, resume, stop.

A start names a file in the configured campaigns folder; it never takes an inline definition
or an arbitrary path. A campaign file decides whom the bank calls, from which caller id, in
which hours, under which abandonment cap and against which do-not-call lists, and points at
contact and DNC files by path: it is reviewed configuration, put in place by whoever may
change the engine's files, and a supervisor's token should start what was reviewed, not dial
a list it just uploaded (nor make the engine read files outside that folder).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..dialer.host import TRANSITIONS, CampaignConflict, CampaignHost
from ..yamlconf import ConfigError
from .app import Route, body, error, principal
from .context import CONTEXT, ApiContext
from .security import Role

CONTROLLERS: tuple[Role, ...] = ("supervisor", "admin")


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,100}\.ya?ml$",
                      description="a campaign file's name in the configured campaigns folder")
    until_idle: bool = Field(False, description="end once every contact is done, instead of waiting for retries")


class ControlBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=200, description="why (kept in the audit trail)")


def campaign_file(folder: Path, name: str) -> Path:
    """``name`` inside ``folder``; a link that leads out of it is refused like a missing file."""
    root = folder.resolve()
    path = (root / name).resolve()
    if path.parent != root or not path.is_file():
        raise error(404, f"no campaign file {name} in the campaigns folder")
    return path


def _host(ctx: ApiContext) -> CampaignHost:
    if ctx.campaigns is None:
        raise error(503, "campaigns run inside `ccengine run`: no engine hosts campaigns here")
    return ctx.campaigns


async def campaign_start(request: web.Request) -> web.Response:
    ctx, who = request.app[CONTEXT], principal(request)
    data = await body(request, StartBody)
    host = _host(ctx)
    path = campaign_file(ctx.settings.campaigns_dir, data.file)
    try:
        campaign_id, hosted = await host.start(path, until_idle=data.until_idle)
    except ConfigError as exc:
        issues = [str(i) for i in exc.issues]
        await ctx.record(who, "campaign.start", data.file, request=request, outcome="denied",
                         details={"issues": issues[:10]})
        raise error(422, "; ".join(issues[:10])) from None
    except (ValueError, OSError) as exc:
        status = 409 if isinstance(exc, CampaignConflict) else 422
        await ctx.record(who, "campaign.start", data.file, request=request, outcome="denied",
                         details={"reason": str(exc)})
        raise error(status, str(exc).replace("\n", " ")) from None
    await ctx.record(who, "campaign.start", data.file, request=request,
                     details={"campaign": campaign_id, "contacts": hosted.contacts})
    return web.json_response(host.view(campaign_id), status=201)


def _control(action: str) -> Route:
    async def handler(request: web.Request) -> web.Response:
        ctx, who = request.app[CONTEXT], principal(request)
        data = await body(request, ControlBody)
        campaign_id = request.match_info["campaign_id"]
        try:
            name, before, after = await asyncio.to_thread(_host(ctx).set_state, campaign_id, action)
        except (LookupError, CampaignConflict) as exc:
            await ctx.record(who, f"campaign.{action}", campaign_id, request=request, outcome="denied",
                             details={"reason": str(exc)})
            raise error(404 if isinstance(exc, LookupError) else 409, str(exc)) from None
        await ctx.record(who, f"campaign.{action}", campaign_id, request=request,
                         details={"name": name, "from": before, "reason": data.reason})
        return web.json_response({"id": campaign_id, "name": name, "previous": before, "state": after})

    sources, target = TRANSITIONS[action]
    return Route("POST", f"/api/v1/campaigns/{{campaign_id}}/{action}", handler, CONTROLLERS,
                 f"{action} a {' or '.join(sources)} campaign (it becomes {target}; its runner follows)", ControlBody)


ROUTES = [
    Route("POST", "/api/v1/campaigns", campaign_start, CONTROLLERS,
          "start a campaign file of the configured campaigns folder on the engine's ACD (blended)", StartBody),
    *(_control(action) for action in TRANSITIONS),
]
