"""Helpers for outbound-campaign lab tests (imported by test_campaign.py).

Called parties live on the lab ``peer``; their behaviour is encoded in the
number (see the ``called-party`` context in dialplans/asterisk/peer.conf):
``K RR TT NNN`` = kind, ring seconds, talk/greeting seconds, serial. The peer
raises ``UserEvent(CalledParty)`` for every call it receives, which
:class:`CalledParties` records so a test can prove a number was never dialed.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from ccengine.lab.lab import Lab
from ccengine.lab.traffic import PeerDriver
from ccengine.pbx.asterisk.ami import AmiClient

from .conftest import BASE_CONFIG, ROOT

HUMAN, NO_ANSWER, BUSY, MACHINE, UNREACHABLE = "1", "2", "3", "4", "5"


def called_number(kind: str, ring: int, talk: int, serial: int) -> str:
    return f"{kind}{ring:02d}{talk:02d}{serial:04d}"


def zone_with_local_hour(hour: int, now: datetime | None = None) -> str:
    """An IANA zone (Etc/GMT±N) whose local time is now within ``hour``:00-:59."""
    now = now or datetime.now(UTC)
    for offset in range(-12, 15):
        name = "Etc/GMT" + (f"{-offset:+d}" if offset else "+0")
        if now.astimezone(ZoneInfo(name)).hour == hour:
            return name
    raise AssertionError(f"no zone at local hour {hour}")


def write_engine_config(workdir: Path) -> Path:
    """Engine settings like tests/lab/conftest.py's EngineProcess: private DB under var/test/."""
    base = yaml.safe_load(BASE_CONFIG.read_text())
    base["database"] = {"url": f"sqlite:///{workdir / 'ccengine.db'}"}
    base["paths"] = {"state_dir": str(workdir), "recordings_dir": str(workdir / "recordings"),
                     "sounds_dir": str(ROOT / "var" / "sounds")}
    base["lab"]["state_dir"] = str(ROOT / ".lab")
    config = workdir / "ccengine.yaml"
    config.write_text(yaml.safe_dump(base))
    return config


class CalledParties:
    """Every number the peer was called on, from its AMI UserEvents."""

    def __init__(self, lab: Lab):
        settings = lab.settings.lab
        self.ami = AmiClient("127.0.0.1", settings.peer.ami_port, settings.peer_ami_username,
                             settings.peer_ami_secret, events="user")
        self.numbers: list[str] = []
        self.caller_ids: dict[str, set[str]] = {}  # number called -> caller IDs it was presented
        self._pump: asyncio.Task[None] | None = None

    async def __aenter__(self) -> CalledParties:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        async def ignore(_up: bool, _reason: str) -> None:
            return None

        await asyncio.wait_for(self.ami.start(ignore), timeout=15)
        self._pump = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            event = await self.ami.queue.get()
            if event.get("Event") == "UserEvent" and event.get("UserEvent") == "CalledParty":
                number = str(event.get("Number", ""))
                self.numbers.append(number)
                self.caller_ids.setdefault(number, set()).add(str(event.get("CallerID", "")))

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        await self.ami.close()



def campaign_cli(config: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`ccengine -c CONFIG campaign ARGS...` as an operator types it."""
    return subprocess.run([sys.executable, "-m", "ccengine.cli.main", "-c", str(config), "campaign", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


async def run_until_idle(lab: Lab, config: Path, campaign_file: Path, agents: list[str], *, talk_seconds: int,
                         timeout: float) -> tuple[subprocess.CompletedProcess[str], float, CalledParties]:
    """Run a campaign from the CLI to completion while its agents talk ``talk_seconds`` per call.

    Returns the CLI run (its output also kept in the workdir), its wall time and what the peer saw
    (every number it was called on, with the caller IDs presented). The CLI runs in a thread: the
    peer's AMI events must keep flowing meanwhile.
    """
    async with PeerDriver(lab.settings) as peer, CalledParties(lab) as called_parties:
        for agent in agents:
            await peer.set_global(f"AGENT_TALK_{agent}", str(talk_seconds))
        try:
            started = time.monotonic()
            run = await asyncio.to_thread(campaign_cli, config, "start", str(campaign_file), "--until-idle",
                                          timeout=timeout)
            elapsed = time.monotonic() - started
        finally:
            for agent in agents:
                await peer.set_global(f"AGENT_TALK_{agent}", "")
    (config.parent / "campaign.out").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run, elapsed, called_parties
