"""Blended campaigns hosted by the running engine.

A campaign that names an ACD ``queue`` runs inside ``ccengine run``: its
runner (still its own ARI application) takes agents through the engine's
ACD, so inbound and outbound calls share agents without ever double-booking
one. ``ccengine campaign start FILE`` reaches this host through the engine's
control socket; pause/resume/stop keep working through the campaign row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from ari_apps.outbound import OutboundRunner, Progress, open_campaign
from ari_apps.seats import AcdSeats, LinePool
from ccengine.acd.service import Acd
from ccengine.config import Settings
from ccengine.yamlconf import ConfigError, ConfigIssue

from .campaign import Campaign, Contact, load_campaign_inputs
from .contact_lists import campaign_contacts
from .schema import CampaignRow

log = logging.getLogger(__name__)


class CampaignConflict(ValueError):
    """A sound request the campaign's current state forbids (already running, not paused, ...)."""


# action → (states it applies to, the state it sets); the runner follows its row's state
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "pause": (("running",), "paused"),
    "resume": (("paused",), "running"),
    "stop": (("running", "paused"), "stopped"),
}


def transition(db: Engine, campaign_id: str, action: str) -> tuple[str, str, str]:
    """Pause, resume or stop a campaign by its row (whoever runs it polls that row):
    (name, state before, state after); ``LookupError`` or ``CampaignConflict`` otherwise."""
    sources, target = TRANSITIONS[action]
    with Session(db) as session, session.begin():
        row = session.get(CampaignRow, campaign_id)
        if row is None:
            raise LookupError(f"no campaign {campaign_id}")
        before = row.state
        done = session.execute(update(CampaignRow).where(CampaignRow.id == campaign_id,
                                                         CampaignRow.state.in_(sources)).values(state=target))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise CampaignConflict(f"campaign {row.name} is {before}: {action} needs it {' or '.join(sources)}")
        return row.name, before, target


@dataclass
class Hosted:
    runner: OutboundRunner
    task: asyncio.Task[str]
    contacts: int = 0
    line: str = ""
    issues: list[str] = field(default_factory=list)


def prepare(db: Engine, file: Path) -> tuple[Campaign, list[Contact], set[str], list[ConfigIssue]]:
    """Campaign, contacts (CSV or database list), DNC numbers from files, row issues."""
    campaign, contacts, dnc, issues = load_campaign_inputs(file)
    if not isinstance(campaign.contacts, Path):
        contacts, list_issues = campaign_contacts(db, campaign)
        issues = list_issues + issues
    return campaign, contacts, dnc, issues


class CampaignHost:
    def __init__(self, settings: Settings, acd: Acd, db: Engine, lines: LinePool | None = None):
        self.settings = settings
        self.acd = acd
        self.db = db
        self.lines = lines  # the engine's persistent agent lines: campaign calls ride them too
        self.hosted: dict[str, Hosted] = {}

    async def start(self, file: Path, *, until_idle: bool) -> tuple[str, Hosted]:
        """Validate and launch; ValueError (bad request) or ConfigError (bad files) otherwise."""
        campaign, contacts, file_dnc, issues = await asyncio.to_thread(prepare, self.db, file)
        if campaign.queue is None:
            raise ValueError("this campaign names agents, not a queue: run it standalone "
                             "(`ccengine campaign start` without a running engine is fine)")
        if not contacts:
            raise ValueError("no contacts to dial" + (f": {issues[0]}" if issues else ""))
        seats = AcdSeats(self.acd, campaign.queue, campaign.skills, self.lines)  # ValueError on an unknown queue
        for other in self.hosted.values():
            if other.runner.campaign.name == campaign.name and not other.task.done():
                raise CampaignConflict(f"campaign {campaign.name} is already running here "
                                       f"({other.runner.campaign_id})")
        campaign_id = await asyncio.to_thread(self._open, campaign, file, contacts)
        runner = OutboundRunner(self.settings, campaign, campaign_id, self.db, dnc_files=file_dnc,
                                until_idle=until_idle, seats=seats)
        task = asyncio.create_task(runner.run(lambda p: self._progress(campaign_id, p)),
                                   name=f"campaign-{campaign.name}")
        hosted = Hosted(runner, task, len(contacts), issues=[str(i) for i in issues])
        self.hosted[campaign_id] = hosted
        task.add_done_callback(lambda t: self._ended(campaign_id, t))
        log.info("campaign %s (%s) started on queue %s: %d contacts", campaign.name, campaign_id,
                 campaign.queue, len(contacts))
        return campaign_id, hosted

    def _open(self, campaign: Campaign, file: Path, contacts: list[Contact]) -> str:
        with Session(self.db) as session, session.begin():
            session.execute(update(CampaignRow).where(CampaignRow.name == campaign.name,
                                                      CampaignRow.state.in_(("running", "paused")))
                            .values(state="stopped"))  # an earlier run died with its engine
        return open_campaign(self.db, campaign, file.resolve(), contacts)

    def _progress(self, campaign_id: str, progress: Progress) -> None:
        hosted = self.hosted.get(campaign_id)
        if hosted is not None:
            hosted.line = progress.line(hosted.runner.definition.name)

    def _ended(self, campaign_id: str, task: asyncio.Task[str]) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            log.error("campaign %s failed", campaign_id, exc_info=task.exception())

    def set_state(self, campaign_id: str, action: str) -> tuple[str, str, str]:
        """Pause / resume / stop (blocking: run it in a worker thread)."""
        return transition(self.db, campaign_id, action)

    def view(self, campaign_id: str) -> dict[str, object]:
        hosted = self.hosted[campaign_id]
        task = hosted.task
        final: str | None = None
        error: str | None = None
        if task.done():
            if task.cancelled():
                final = "stopped"
            elif task.exception() is not None:
                error = repr(task.exception())
            else:
                final = task.result()
        return {"id": campaign_id, "name": hosted.runner.campaign.name, "state": hosted.runner.state,
                "contacts": hosted.contacts,
                "line": hosted.line, "final": final, "error": error, "issues": hosted.issues}

    async def close(self) -> None:
        """Engine shutdown: running campaigns stop (calls in flight are ended by the runner)."""
        running = [h for h in self.hosted.values() if not h.task.done()]
        if not running:
            return
        ids = [h.runner.campaign_id for h in running]
        await asyncio.to_thread(self._stop_rows, ids)
        _done, pending = await asyncio.wait([h.task for h in running], timeout=20)
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*pending, return_exceptions=True)

    def _stop_rows(self, ids: list[str]) -> None:
        with Session(self.db) as session, session.begin():
            session.execute(update(CampaignRow).where(CampaignRow.id.in_(ids)).values(state="stopped"))

    def routes(self) -> list[web.AbstractRouteDef]:
        async def start(request: web.Request) -> web.Response:
            body = await request.json()
            file = body.get("file") if isinstance(body, dict) else None
            if not isinstance(file, str):
                raise web.HTTPBadRequest(reason="body must be {\"file\": PATH, \"until_idle\": BOOL}")
            try:
                campaign_id, hosted = await self.start(Path(file), until_idle=bool(body.get("until_idle")))
            except ConfigError as exc:
                return web.json_response({"issues": [str(i) for i in exc.issues]}, status=422)
            except (ValueError, OSError) as exc:
                raise web.HTTPBadRequest(reason=str(exc).replace("\n", " ")) from None
            return web.json_response({**self.view(campaign_id), "contacts": hosted.contacts}, status=201)

        async def show(request: web.Request) -> web.Response:
            campaign_id = request.match_info["id"]
            if campaign_id not in self.hosted:
                raise web.HTTPNotFound(reason=f"no campaign {campaign_id} hosted by this engine")
            return web.json_response(self.view(campaign_id))

        async def listing(_request: web.Request) -> web.Response:
            return web.json_response([self.view(i) for i in self.hosted])

        return [web.post("/campaigns", start), web.get("/campaigns", listing), web.get("/campaigns/{id}", show)]
