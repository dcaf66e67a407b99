"""``ccengine`` command line: lab, database, engine, demo, events."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import click

from ..config import Settings, load_settings
from ..yamlconf import ConfigError

if TYPE_CHECKING:
    from ..lab.lab import Lab


class Context:
    def __init__(self, config_path: Path | None):
        self.config_path = config_path
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.config_path)
            except ConfigError as exc:
                for issue in exc.issues:
                    click.echo(f"error: {issue}", err=True)
                sys.exit(2)
        return self._settings


pass_context = click.make_pass_decorator(Context)


@click.group()
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path), envvar="CCENGINE_CONFIG",
              help="engine settings (default: config/ccengine.yaml)")
@click.option("-v", "--verbose", count=True, help="more logging (-vv for debug)")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """ccengine: telephony control plane for financial contact centers."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = Context(config_path)


@main.command("check-config")
@pass_context
def check_config(ctx: Context) -> None:
    """Validate the engine settings file (and the analytics file it names, if any)."""
    settings = ctx.settings
    if settings.analytics is not None:
        from ..audio.config import load_analytics

        try:
            load_analytics(settings.analytics)
        except ConfigError as exc:
            for issue in exc.issues:
                click.echo(f"error: {issue}", err=True)
            sys.exit(2)
    click.echo(f"ok: {ctx.config_path or 'config/ccengine.yaml'} (ARI app {settings.pbx.ari.app}, "
               f"database {settings.database.url}, audio analytics {settings.analytics or 'off'})")


# -- lab ----------------------------------------------------------------------------------------
@main.group()
def lab() -> None:
    """The lab PBX: two real Asterisk 22 instances (pbx and peer) on loopback. Needs root."""


def _lab(ctx: Context) -> Lab:
    from ..lab.lab import Lab

    return Lab(ctx.settings)


P = ParamSpec("P")
R = TypeVar("R")


def _lab_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Report lab failures as one clear line and exit 1, not a traceback."""
    from ..lab.chroot import LabError

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except LabError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper


@lab.command("up")
@pass_context
@_lab_errors
def lab_up(ctx: Context) -> None:
    """Provision (once per machine) and start the lab; idempotent."""
    for status in _lab(ctx).up():
        click.echo(f"{status.name}: running pid {status.pid} (AMI {status.ami_port}, HTTP/ARI {status.http_port}, "
                   f"SIP udp {status.sip_port})")


@lab.command("down")
@pass_context
@_lab_errors
def lab_down(ctx: Context) -> None:
    """Stop the lab instances this project started (nothing else)."""
    stopped = _lab(ctx).down()
    click.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@lab.command("restart")
@click.argument("instance", type=click.Choice(["pbx", "peer"]))
@pass_context
@_lab_errors
def lab_restart(ctx: Context, instance: str) -> None:
    """Restart one instance (e.g. to exercise the engine's reconnect)."""
    _lab(ctx).restart(instance)
    click.echo(f"{instance}: restarted")


@lab.command("status")
@pass_context
def lab_status(ctx: Context) -> None:
    """What runs, on which ports."""
    the_lab = _lab(ctx)
    click.echo(f"chroot {the_lab.chroot}: {'ready' if the_lab.chroot_ready() else 'not built'}")
    for status in the_lab.status():
        state = f"running pid {status.pid}" if status.pid else "stopped"
        click.echo(f"{status.name}: {state} (AMI {status.ami_port}, HTTP/ARI {status.http_port}, "
                   f"SIP udp {status.sip_port})")


@lab.command("logs")
@click.argument("instance", type=click.Choice(["pbx", "peer"]), default="pbx")
@click.option("-n", "--lines", default=50, show_default=True)
@pass_context
def lab_logs(ctx: Context, instance: str, lines: int) -> None:
    """Tail an instance's Asterisk log."""
    the_lab = _lab(ctx)
    log_file = (the_lab.pbx if instance == "pbx" else the_lab.peer).log_file
    if not log_file.exists():
        click.echo(f"no log yet at {log_file}", err=True)
        sys.exit(1)
    for line in log_file.read_text(errors="replace").splitlines()[-lines:]:
        click.echo(line)


@lab.command("cli")
@click.argument("instance", type=click.Choice(["pbx", "peer"]))
@click.argument("command", nargs=-1, required=True)
@pass_context
def lab_cli(ctx: Context, instance: str, command: tuple[str, ...]) -> None:
    """Run an Asterisk CLI command, e.g. `ccengine lab cli pbx core show channels`."""
    the_lab = _lab(ctx)
    click.echo((the_lab.pbx if instance == "pbx" else the_lab.peer).cli(" ".join(command)), nl=False)


# -- database -----------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """The engine's database (SQLite by default, PostgreSQL by URL)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_context
def db_upgrade(ctx: Context, revision: str) -> None:
    """Apply Alembic migrations."""
    from ..store.database import upgrade

    upgrade(ctx.settings.database.url, revision)
    click.echo(f"database at {revision}: {ctx.settings.database.url}")


# -- PBX configuration --------------------------------------------------------------------------
@main.group()
def pbx() -> None:
    """The Asterisk configuration the engine relies on."""


@pbx.command("lint")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
def pbx_lint(paths: tuple[Path, ...]) -> None:
    """Refuse configurations that would let a party stop a forced recording
    (keypad recording features, Dial/Queue X/x/W/w options, StopMixMonitor).
    Default: the shipped dialplans and Asterisk config templates."""
    from ..lab.lab import ROOT
    from ..pbx.lint import lint_paths

    targets = list(paths) or [ROOT / "dialplans" / "asterisk", ROOT / "config" / "asterisk"]
    findings = lint_paths(targets)
    for finding in findings:
        click.echo(str(finding))
    if findings:
        raise SystemExit(1)
    click.echo(f"ok: no way to stop a forced recording found in {', '.join(map(str, targets))}")


# -- engine -------------------------------------------------------------------------------------
@main.command("run")
@pass_context
def run(ctx: Context) -> None:
    """Run the engine until SIGINT/SIGTERM."""
    from ..engine import run_engine

    settings = ctx.settings

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_engine(settings, stop)

    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    try:
        asyncio.run(serve())
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(f"error: {issue}", err=True)
        sys.exit(2)


@main.command("demo")
@click.option("--calls", default=12, show_default=True, help="customer calls to place")
@click.option("--agents", default=4, show_default=True, help="agents logged in")
@click.option("--rate", default=2.0, show_default=True, help="new calls per second")
@click.option("--serve", is_flag=True, help="keep the engine running after the calls")
@click.option("--seed", default=7, show_default=True)
@pass_context
def demo(ctx: Context, calls: int, agents: int, rate: float, serve: bool, seed: int) -> None:
    """Start the lab and the engine, drive real calls end to end, print live state and KPIs."""
    from ..demo import run_demo
    from ..lab.chroot import LabError

    try:
        asyncio.run(run_demo(ctx.settings, calls=calls, agents=agents, rate=rate, serve=serve, seed=seed))
    except LabError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@main.command("report")
@pass_context
def report(ctx: Context) -> None:
    """KPIs (offered, answered, abandoned, ASA, AHT) from the database."""
    from ..store.database import make_engine
    from ..store.reports import format_kpis, kpis

    click.echo(format_kpis(kpis(make_engine(ctx.settings.database.url))))


# -- events -------------------------------------------------------------------------------------
@main.group()
def events() -> None:
    """The domain event catalogue."""


@events.command("schema")
def events_schema() -> None:
    """Print the JSON Schema of the envelope and of every event payload."""
    from ..core.events import json_schemas

    click.echo(json.dumps(json_schemas(), indent=2))


@click.command("reload")
@pass_context
def queues_reload(ctx: Context) -> None:
    """Ask the running engine to reload the queue definitions (SIGHUP); calls are kept."""
    from ..acd.definitions import load_queue_config
    from ..engine import pid_file

    settings = ctx.settings
    try:
        load_queue_config(settings.acd.queues)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(f"error: {issue}", err=True)
        sys.exit(1)
    try:
        pid = int(pid_file(settings).read_text())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        click.echo(f"error: no running engine (no PID in {pid_file(settings)})", err=True)
        sys.exit(1)
    click.echo(f"reload requested from engine pid {pid}")


@click.command("show")
@pass_context
def queues_show(ctx: Context) -> None:
    """Live state: waiting calls, longest wait, today's SL/ASA/abandons per queue, agents by state."""
    from datetime import UTC, datetime

    from ..acd.definitions import load_queue_config
    from ..acd.stats import live_state, queue_stats
    from ..store.database import current_revision, head_revision, make_engine

    settings = ctx.settings
    config = load_queue_config(settings.acd.queues)
    db = make_engine(settings.database.url)
    if current_revision(db) != head_revision():
        click.echo(f"error: database {settings.database.url} is not migrated: run `ccengine db upgrade`", err=True)
        sys.exit(1)
    now = datetime.now(UTC)
    live, agents = live_state(db, now)
    waiting = {q.queue: q for q in live}
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    click.echo(f"{'queue':<16}{'waiting':>8}{'longest':>9}{'offered':>9}{'answered':>9}{'abandoned':>10}"
               f"{'SL':>7}{'ASA':>8}")
    for s in queue_stats(db, config, today):
        w = waiting.get(s.queue)
        longest = f"{w.longest_wait_seconds:.0f}s" if w and w.longest_wait_seconds is not None else "-"
        sl = f"{s.service_level * 100:.0f}%" if s.service_level is not None else "-"
        asa = f"{s.asa_seconds:.1f}s" if s.asa_seconds is not None else "-"
        click.echo(f"{s.queue:<16}{w.waiting if w else 0:>8}{longest:>9}{s.offered:>9}{s.answered:>9}"
                   f"{s.abandoned:>10}{sl:>7}{asa:>8}")
    click.echo("agents: " + (", ".join(f"{state} {n}" for state, n in sorted(agents.items())) or "none"))


@main.group()
def agents() -> None:
    """Agent states on the running engine (through its local control socket)."""


def _control(ctx: Context, method: str, path: str, **params: str) -> object:
    import aiohttp

    from ..control import socket_path

    sock = socket_path(ctx.settings.paths.state_dir)

    async def call() -> object:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as http, \
                http.request(method, f"http://engine{path}", params=params) as resp:
            if resp.status >= 400:
                click.echo(f"error: {resp.reason}", err=True)
                sys.exit(1)
            return await resp.json()

    try:
        return asyncio.run(call())
    except (aiohttp.ClientConnectionError, FileNotFoundError):
        click.echo(f"error: no running engine at {sock}", err=True)
        sys.exit(1)


@agents.command("list")
@pass_context
def agents_list(ctx: Context) -> None:
    """Every agent with state, reason and current call."""
    rows = _control(ctx, "GET", "/agents")
    assert isinstance(rows, list)
    for row in rows:
        click.echo(f"{row['id']:<12}{row['state']:<12}{row['reason']:<20}{row['call_id'] or ''}")


def _agent_command(action: str, help_text: str) -> None:
    @agents.command(action.replace("_", "-"), help=help_text)
    @click.argument("agent")
    @click.option("--reason", default="", help="reason code (required for not-ready)")
    @pass_context
    def command(ctx: Context, agent: str, reason: str) -> None:
        row = _control(ctx, "POST", f"/agents/{agent}/{action}", reason=reason)
        assert isinstance(row, dict)
        click.echo(f"{row['id']}: {row['state']} {row['reason']}".rstrip())


for _action, _help in (("login", "Log an agent in (not ready until made ready)."),
                       ("logout", "Log an agent out (refused during a call)."),
                       ("ready", "Make an agent ready for calls."),
                       ("not_ready", "Take an agent off calls with a reason code.")):
    _agent_command(_action, _help)


@agents.command("pay")
@click.argument("agent")
@click.option("--amount", required=True, help="amount, at most two decimals (e.g. 49.90)")
@click.option("--currency", required=True, help="ISO 4217 code (e.g. EUR)")
@click.option("--reference", required=True, help="the order or invoice it pays")
@pass_context
def agents_pay(ctx: Context, agent: str, amount: str, currency: str, reference: str) -> None:
    """Secure payment on AGENT's live call: the caller keys a card into the engine while the agent
    waits on hold; the outcome arrives as call.payment_captured / call.payment_failed."""
    row = _control(ctx, "POST", f"/payments/{agent}", amount=amount, currency=currency,
                   reference=reference)
    assert isinstance(row, dict)
    click.echo(f"payment {row['payment_id']} started on call {row['call_id']}")


def _register_domain_groups() -> None:
    """Command groups owned by the feature packages."""
    from ..acd.cli import queues

    queues.add_command(queues_reload)
    queues.add_command(queues_show)
    from ..audio.cli import audio
    from ..audit.cli import audit
    from ..dialer.campaign_cli import campaign
    from ..dialer.cli import dialer
    from ..ivr.cli import ivr
    from ..recording.cli import recordings

    for group in (queues, dialer, campaign, recordings, audit, ivr, audio):
        main.add_command(group)
    from ..api.cli import events_tail, tokens, users

    main.add_command(users)
    main.add_command(tokens)
    events.add_command(events_tail)


_register_domain_groups()

if __name__ == "__main__":
    main()
