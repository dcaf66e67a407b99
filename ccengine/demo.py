"""``ccengine demo``: the lab, the engine and real calls, end to end, in one command."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import click

from .config import Settings
from .engine import Engine
from .lab.chroot import LabError
from .lab.lab import LAB_AGENTS, Lab
from .lab.queues import write_general_queue
from .lab.traffic import Customer, PeerDriver
from .store.reports import format_kpis, kpis


def demo_settings(settings: Settings, agents: int) -> Settings:
    """The lab settings with one queue served by ``agents`` interchangeable agents."""
    queues = write_general_queue(settings.paths.state_dir / "demo-queues.yaml", agents)
    flow = settings.flow.model_copy(update={"menu": {"1": "general"}, "default_queue": "general"})
    acd = settings.acd.model_copy(update={"queues": queues})
    return settings.model_copy(update={"flow": flow, "acd": acd})


def customers(calls: int, seed: int) -> list[Customer]:
    """A mix: most press 1 at once, some hesitate, a few press nothing, some are impatient."""
    rng = random.Random(seed)
    out = []
    for i in range(calls):
        roll = rng.random()
        digit = "" if roll < 0.08 else "1"
        patience = rng.uniform(12, 25) if roll > 0.85 else rng.uniform(60, 120)
        out.append(Customer(number=f"555{i:04d}", digit=digit, prompt_wait=rng.uniform(0.8, 2.0),
                            patience=patience))
    return out


def live_line(engine: Engine, started: float, placed: int, total: int) -> str:
    app = engine.app
    assert app is not None
    calls = Counter(c.state for c in app.sessions.values())
    agents = Counter(a.state for a in engine.acd.agents.values())
    other = sum(agents.values()) - agents["ready"] - agents["on_call"] - agents["wrapup"]
    return (f"{time.monotonic() - started:6.1f}s  placed {placed:3d}/{total:<3d} | "
            f"ivr {calls['ivr']:2d}  queued {calls['queued']:2d}  ringing {calls['ringing']:2d}  "
            f"talking {calls['talking']:2d} | agents ready {agents['ready']:2d}  on call {agents['on_call']:2d}  "
            f"wrap-up {agents['wrapup']:2d}  other {other:2d}")


async def run_demo(settings: Settings, *, calls: int, agents: int, rate: float, serve: bool, seed: int) -> None:
    if not 1 <= agents <= LAB_AGENTS:
        raise LabError(f"--agents must be between 1 and {LAB_AGENTS} (the lab's softphones)")
    settings = demo_settings(settings, agents)
    click.echo("lab: starting pbx and peer (first run builds the Asterisk chroot, ~2 min)…")
    statuses = await asyncio.to_thread(Lab(settings).up)
    for s in statuses:
        click.echo(f"  {s.name}: pid {s.pid}, AMI {s.ami_port}, ARI {s.http_port}, SIP {s.sip_port}")
    engine = Engine(settings)
    await engine.start()
    since = time.time()
    from datetime import UTC, datetime

    started_at = datetime.now(UTC)
    started = time.monotonic()
    try:
        async with PeerDriver(settings) as peer:
            await peer.agent_talk_time(4, 9)
            plan = customers(calls, seed)
            placed = 0
            next_print = 0.0
            deadline = started + calls / rate + 240
            while time.monotonic() < deadline:
                now = time.monotonic()
                while placed < len(plan) and now - started >= placed / rate:
                    await peer.call(plan[placed])
                    placed += 1
                if now >= next_print:
                    click.echo(live_line(engine, started, placed, calls))
                    next_print = now + 1.0
                offered = await asyncio.to_thread(kpis, engine.db, started_at)
                if placed == len(plan) and offered.offered >= calls and not engine.app.sessions:  # type: ignore[union-attr]
                    break
                await asyncio.sleep(0.2)
        await engine.writer.flush()
        click.echo("")
        click.echo(f"KPIs from {settings.database.url} ({time.time() - since:.0f} s):")
        click.echo("  " + format_kpis(await asyncio.to_thread(kpis, engine.db, started_at)))
        if serve:
            click.echo("engine keeps running (--serve); Ctrl-C to stop")
            await asyncio.Event().wait()
    finally:
        await engine.stop()
