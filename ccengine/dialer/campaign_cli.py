"""``ccengine campaign``: validate, launch and steer outbound campaigns.

``start`` runs the campaign in this process (the runner is an ARI
application of its own) and prints a live progress line; ``pause``,
``resume`` and ``stop`` flip the campaign row's state, which the runner
polls, so they work from any shell against the same database.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from ccengine.config import Settings
from ccengine.yamlconf import ConfigError, ConfigIssue

from .abandonment import AmdVerdict, LiveAnswer, abandonment_rate, period_rates
from .campaign import Campaign, Contact, dnc_key, eligible, load_campaign_inputs, normalize_phone
from .schema import AttemptRow, CampaignRow, ContactRow, DncRow, LiveAnswerRow


def _settings(ctx: click.Context) -> Settings:
    """The engine settings held by the root command's context object."""
    root: Any = ctx.find_root().obj
    settings: Settings = root.settings
    return settings


def _db(ctx: click.Context, *, migrate: bool = True) -> Engine:
    from ccengine.store.database import make_engine, upgrade

    url = _settings(ctx).database.url
    if migrate:
        upgrade(url)
    return make_engine(url)


def _inputs(ctx: click.Context, file: Path) -> tuple[Campaign, list[Contact], set[str], list[ConfigIssue]]:
    """Campaign inputs; a campaign reading a database list reads it here (ConfigError on a bad YAML)."""
    campaign, contacts, dnc, issues = load_campaign_inputs(file)
    if not isinstance(campaign.contacts, Path):
        from .contact_lists import campaign_contacts

        contacts, list_issues = campaign_contacts(_db(ctx), campaign)
        issues = list_issues + issues
    return campaign, contacts, dnc, issues


def _checked_inputs(ctx: click.Context, file: Path) -> tuple[Campaign, list[Contact], set[str], list[ConfigIssue]]:
    """Campaign inputs with every bad row printed; a bad campaign file exits 2."""
    try:
        campaign, contacts, dnc, issues = _inputs(ctx, file)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(f"error: {issue}", err=True)
        sys.exit(2)
    for issue in issues:
        click.echo(f"error: {issue}", err=True)
    return campaign, contacts, dnc, issues


def _load(ctx: click.Context, file: Path) -> tuple[Campaign, list[Contact], set[str]]:
    campaign, contacts, dnc, issues = _checked_inputs(ctx, file)
    if issues:
        click.echo(f"{len(issues)} bad row(s) skipped; {len(contacts)} contact(s) loaded", err=True)
    return campaign, contacts, dnc


@click.group("campaign")
def campaign() -> None:
    """Outbound campaigns: validate, start (with live progress), status, pause, resume, stop."""


@campaign.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def validate_cmd(ctx: click.Context, file: Path) -> None:
    """Check a campaign YAML, its contacts (CSV or database list) and DNC files; exit 1 if any row is bad."""
    campaign_, contacts, dnc, issues = _checked_inputs(ctx, file)
    staff = f"queue {campaign_.queue}" if campaign_.queue else f"{len(campaign_.agents or ())} agent(s)"
    click.echo(f"{campaign_.name}: mode {campaign_.mode.value}, {staff}, "
               f"{len(contacts)} contact(s), {len(issues)} bad row(s), {len(dnc)} DNC number(s) from files")
    if issues:
        sys.exit(1)


@campaign.command("start")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="load and check; show who is eligible now and why not; dial nothing")
@click.option("--until-idle", is_flag=True,
              help="complete as soon as nothing is dialable now or within a minute (instead of waiting "
                   "for calling windows and retry timers)")
@click.pass_context
def start_cmd(ctx: click.Context, file: Path, dry_run: bool, until_idle: bool) -> None:
    """Run the campaign in FILE on the PBX until it completes or is stopped.

    A campaign naming a ``queue`` shares the ACD's agents with inbound calls,
    so it runs inside the engine (``ccengine run``); this command hands it
    over the engine's control socket and follows its progress. A campaign
    with its own ``agents`` runs in this process.
    """
    campaign_, contacts, file_dnc = _load(ctx, file)
    if campaign_.queue is not None and not dry_run:
        _start_on_engine(ctx, file, until_idle)
        return
    db = _db(ctx, migrate=not dry_run)
    dnc = set(file_dnc)
    if campaign_.dnc.use_table:
        try:
            with Session(db) as session:
                dnc |= {dnc_key(p) for p in session.scalars(select(DncRow.phone))}
        except Exception as exc:  # a database without the dialer tables yet: files only
            click.echo(f"note: internal DNC table not read ({type(exc).__name__})", err=True)
    if dry_run:
        from ari_apps.outbound import load_history

        now = datetime.now(UTC)
        try:
            with Session(db) as session:
                history = load_history(session, campaign_.name, {c.phone for c in contacts})
        except Exception as exc:  # no dialer tables yet: no history
            click.echo(f"note: no dialing history read ({type(exc).__name__})", err=True)
            history = {}
        reasons = Counter(eligible(campaign_, c, now, history.get(c.phone, []), dnc).reason or "eligible"
                          for c in contacts)
        click.echo(f"{campaign_.name}: {len(contacts)} contact(s); eligible now: {reasons.pop('eligible', 0)}")
        for reason, count in sorted(reasons.items()):
            click.echo(f"  not eligible ({reason}): {count}")
        return
    from ari_apps.outbound import OutboundRunner, Progress, open_campaign

    settings = _settings(ctx)
    shared = set(campaign_.agents or ()) & _engine_agents(ctx)
    if shared:
        raise click.ClickException(
            f"agent(s) {', '.join(sorted(shared))} belong to the running engine's ACD: a standalone campaign "
            "would ring them behind its back; name the ACD queue instead (queue: ...)")
    for row in _targets(db, campaign_.name, ("running", "paused")):
        if row.runner_pid and _alive(row.runner_pid):
            raise click.ClickException(f"campaign {row.name} is already {row.state} (pid {row.runner_pid}); "
                                       "stop it first")
        _set_state(db, row.id, "stopped")  # its runner died: that run is over
    campaign_id = open_campaign(db, campaign_, file.resolve(), contacts)
    runner = OutboundRunner(settings, campaign_, campaign_id, db, dnc_files=file_dnc, until_idle=until_idle)
    tty = sys.stdout.isatty()
    definition = campaign_.abandonment.regulator().name

    def show(progress: Progress) -> None:
        click.echo(progress.line(definition) + ("\r" if tty else ""), nl=not tty)

    async def main() -> str:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: _set_state(db, campaign_id, "stopped"))
        return await runner.run(show)

    click.echo(f"campaign {campaign_.name} ({campaign_id}) started: {len(contacts)} contact(s), "
               f"ARI app {runner.pbx.settings.ari.app}")
    final = asyncio.run(main())
    if tty:
        click.echo()
    click.echo(f"campaign {campaign_.name}: {final}")
    _print_status(db, campaign_id)


def _engine(ctx: click.Context, method: str, path: str, body: object = None) -> tuple[int, Any]:
    import aiohttp

    from ccengine.control import socket_path

    sock = socket_path(_settings(ctx).paths.state_dir)

    async def call() -> tuple[int, Any]:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as http, \
                http.request(method, f"http://engine{path}", json=body) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, {"error": resp.reason}

    try:
        return asyncio.run(call())
    except (aiohttp.ClientConnectionError, FileNotFoundError):
        raise click.ClickException(f"campaign names a queue: it runs in the engine, and no engine runs at "
                                   f"{sock} (start `ccengine run`)") from None


def _engine_agents(ctx: click.Context) -> set[str]:
    """Agents of a running engine's ACD (none when no engine runs here)."""
    try:
        status, rows = _engine(ctx, "GET", "/agents")
    except click.ClickException:
        return set()
    return {row["id"] for row in rows} if status == 200 else set()


def _start_on_engine(ctx: click.Context, file: Path, until_idle: bool) -> None:
    status, body = _engine(ctx, "POST", "/campaigns", {"file": str(file.resolve()), "until_idle": until_idle})
    if status == 422:
        for issue in body.get("issues", []):
            click.echo(f"error: {issue}", err=True)
        sys.exit(2)
    if status >= 400:
        raise click.ClickException(f"the engine refused the campaign: {body.get('error')}")
    campaign_id = body["id"]
    click.echo(f"campaign {body['name']} ({campaign_id}) started in the engine: {body['contacts']} contact(s)")
    tty = sys.stdout.isatty()
    last = ""
    while True:
        time.sleep(1.0)
        status, view = _engine(ctx, "GET", f"/campaigns/{campaign_id}")
        if status >= 400:
            raise click.ClickException(f"lost the campaign: {view.get('error')}")
        if view["line"] and view["line"] != last:
            last = view["line"]
            click.echo(last + ("\r" if tty else ""), nl=not tty)
        if view["error"]:
            raise click.ClickException(f"campaign failed in the engine: {view['error']}")
        if view["final"]:
            break
    if tty:
        click.echo()
    click.echo(f"campaign {view['name']}: {view['final']}")
    _print_status(_db(ctx), campaign_id)


@campaign.command("contacts-import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--list", "list_name", required=True, help="list name campaigns use: contacts: {list: NAME}")
@click.pass_context
def contacts_import_cmd(ctx: click.Context, file: Path, list_name: str) -> None:
    """Import a contact CSV into the database list NAME; bad rows are reported (file:line) and skipped."""
    from .contact_lists import import_csv

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", list_name):
        raise click.BadParameter("letters, digits, '_', '.', '-' (at most 64)", param_hint="--list")
    added, updated, issues = import_csv(_db(ctx), file, list_name)
    for issue in issues:
        click.echo(f"error: {issue}", err=True)
    click.echo(f"list {list_name}: {added} added, {updated} updated, {len(issues)} bad row(s) skipped")
    if issues:
        sys.exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _set_state(db: Engine, campaign_id: str, state: str) -> None:
    with Session(db) as session, session.begin():
        session.execute(update(CampaignRow).where(CampaignRow.id == campaign_id).values(state=state))


def _targets(db: Engine, name: str | None, states: tuple[str, ...]) -> list[CampaignRow]:
    with Session(db) as session:
        query = select(CampaignRow).where(CampaignRow.state.in_(states))
        if name:
            query = query.where(CampaignRow.name == name)
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows


def _transition(ctx: click.Context, name: str | None, states: tuple[str, ...], to: str) -> None:
    db = _db(ctx)
    rows = _targets(db, name, states)
    if not rows:
        click.echo(f"no campaign {'named ' + name + ' ' if name else ''}in state {' or '.join(states)}", err=True)
        sys.exit(1)
    for row in rows:
        _set_state(db, row.id, to)
        click.echo(f"{row.name} ({row.id}): {row.state} -> {to}")


@campaign.command("pause")
@click.argument("name", required=False)
@click.pass_context
def pause_cmd(ctx: click.Context, name: str | None) -> None:
    """Stop launching new calls (calls in progress continue)."""
    _transition(ctx, name, ("running",), "paused")


@campaign.command("resume")
@click.argument("name", required=False)
@click.pass_context
def resume_cmd(ctx: click.Context, name: str | None) -> None:
    """Resume a paused campaign."""
    _transition(ctx, name, ("paused",), "running")


@campaign.command("stop")
@click.argument("name", required=False)
@click.pass_context
def stop_cmd(ctx: click.Context, name: str | None) -> None:
    """Stop a campaign for good once its calls in progress end."""
    _transition(ctx, name, ("running", "paused"), "stopped")


@campaign.command("dnc-add")
@click.argument("numbers", nargs=-1, required=True)
@click.option("--reason", default="", help="why (e.g. 'customer request 2026-11-26')")
@click.pass_context
def dnc_add_cmd(ctx: click.Context, numbers: tuple[str, ...], reason: str) -> None:
    """Add numbers to the internal do-not-call table (honoured by running campaigns within seconds)."""
    db = _db(ctx)
    now = datetime.now(UTC)
    with Session(db) as session, session.begin():
        for raw in numbers:
            try:
                key = dnc_key(normalize_phone(raw))
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="NUMBERS") from None
            session.merge(DncRow(phone=key, reason=reason, added_at=now))
    click.echo(f"{len(numbers)} number(s) on the internal DNC list")


@campaign.command("status")
@click.argument("name", required=False)
@click.pass_context
def status_cmd(ctx: click.Context, name: str | None) -> None:
    """Campaigns with their counts and abandonment recomputed from the stored live answers."""
    db = _db(ctx)
    with Session(db) as session:
        query = select(CampaignRow).order_by(CampaignRow.created_at.desc())
        if name:
            query = query.where(CampaignRow.name == name)
        rows = list(session.scalars(query.limit(20)))
    if not rows:
        click.echo("no campaigns")
        return
    for row in rows:
        _print_status(db, row.id)


def _epoch(value: datetime | None) -> float | None:
    """Seconds since the epoch; SQLite hands instants back naive, and they are UTC."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _print_status(db: Engine, campaign_id: str) -> None:
    with Session(db) as session:
        row = session.get(CampaignRow, campaign_id)
        assert row is not None
        campaign_ = Campaign.model_validate(row.definition)
        contacts = session.scalar(select(func.count()).where(ContactRow.campaign_id == campaign_id)) or 0
        closed = Counter(session.scalars(select(ContactRow.final_reason).where(
            ContactRow.campaign_id == campaign_id, ContactRow.status == "closed")))
        outcomes = Counter(session.scalars(select(AttemptRow.outcome).where(AttemptRow.campaign_id == campaign_id)))
        answers = [LiveAnswer(_epoch(a.answer_ts) or 0.0, _epoch(a.greeting_end_ts), _epoch(a.agent_connect_ts),
                              a.message_played, AmdVerdict(a.amd_verdict) if a.amd_verdict else None)
                   for a in session.scalars(select(LiveAnswerRow).where(LiveAnswerRow.campaign_id == campaign_id))]
    from ari_apps.outbound import load_answers

    with Session(db) as session:
        every_run = load_answers(session, row.name, 0.0)
    definition = campaign_.abandonment.regulator()
    rate = abandonment_rate(answers, definition)
    dialed = sum(outcomes.values())
    click.echo(f"{row.name} ({row.id}) {row.state}, mode {row.mode}: {contacts} contact(s), "
               f"{sum(closed.values())} closed, {dialed} dial(s)")
    click.echo("  outcomes: " + (", ".join(f"{k or 'in progress'} {v}" for k, v in sorted(
        outcomes.items(), key=lambda kv: str(kv[0]))) or "none"))
    click.echo("  closed as: " + (", ".join(f"{k} {v}" for k, v in sorted(
        closed.items(), key=lambda kv: str(kv[0]))) or "none"))
    click.echo(f"  live answers {rate.live}, abandoned {rate.abandoned}: {rate.rate:.2%} under {definition.name} "
               f"(cap {definition.cap:.0%})")
    # the regulator counts per window, over every run of the campaign (the live display's windows)
    windows = period_rates(every_run, definition)
    if windows:
        shown = list(windows.items())[-5:]
        click.echo(f"  {definition.name} windows, every run of {row.name}: " + ", ".join(
            f"{datetime.fromtimestamp(start, definition.zone or UTC):%Y-%m-%d} {r.rate:.2%} ({r.abandoned}/{r.live})"
            + (" OVER CAP" if r.rate > definition.cap else "") for start, r in shown))
