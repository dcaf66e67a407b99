"""Fixtures for tests against the real lab PBX.

One lab (pbx + peer Asterisk) is shared by the whole session: `make test`
starts it before pytest. Each test gets its own engine process, database and
recordings folder under var/test/ (inside the folder bind-mounted into the
lab chroot, so Asterisk writes recordings where the test reads them).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ccengine.config import Settings, load_settings
from ccengine.lab.engine_process import spawn_engine, write_engine_config
from ccengine.lab.lab import Lab
from ccengine.lab.queues import write_general_queue
from ccengine.lab.traffic import PeerDriver
from ccengine.store.database import make_engine
from ccengine.store.schema import CallRow, EventRow

ROOT = Path(__file__).resolve().parents[2]
BASE_CONFIG = ROOT / "config" / "ccengine.yaml"


@pytest.fixture(scope="session")
def lab() -> Lab:
    settings = load_settings(BASE_CONFIG)
    the_lab = Lab(settings)
    the_lab.up()
    return the_lab


class EngineProcess:
    """`ccengine run` in a subprocess with a private database and recordings folder."""

    def __init__(self, workdir: Path, agents: int, extra_flow: dict[str, object] | None = None,
                 queues: str | None = None, acd: dict[str, object] | None = None,
                 ivr: dict[str, object] | None = None):
        self.workdir = workdir
        flow = dict(extra_flow or {})
        if queues is None:
            queues_file = write_general_queue(workdir / "queues.yaml", agents)
            flow.setdefault("menu", {"1": "general"})
        else:
            queues_file = self.queues_file = workdir / "queues.yaml"
            self.queues_file.write_text(queues)
        self.config = write_engine_config(workdir, queues=queues_file, flow=flow, acd=acd, ivr=ivr)
        self.settings: Settings = load_settings(self.config)
        self.db: Engine = make_engine(self.settings.database.url)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        synced_before = self.count_events("engine.resynced")
        self.proc = spawn_engine(self.config, self.workdir / "engine.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited: {(self.workdir / 'engine.log').read_text()[-2000:]}")
            if self.count_events("engine.resynced") > synced_before and self._api_up():
                return
            time.sleep(0.1)
        raise RuntimeError("engine did not come up")

    def _api_up(self) -> bool:
        """The API listens only after the first resync is stored: a test may talk to it at once."""
        try:
            socket.create_connection(("127.0.0.1", self.settings.http_port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.db.dispose()

    def count_events(self, event_type: str) -> int:
        try:
            with Session(self.db) as session:
                return len(session.scalars(select(EventRow.seq).where(EventRow.type == event_type)).all())
        except Exception:
            return 0

    def calls(self) -> list[CallRow]:
        with Session(self.db) as session:
            rows = list(session.scalars(select(CallRow).order_by(CallRow.offered_at)))
            session.expunge_all()
            return rows

    def events(self, event_type: str | None = None) -> list[EventRow]:
        with Session(self.db) as session:
            query = select(EventRow).order_by(EventRow.seq)
            if event_type:
                query = query.where(EventRow.type == event_type)
            rows = list(session.scalars(query))
            session.expunge_all()
            return rows

    async def wait_for(self, predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            await asyncio.sleep(0.25)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; calls: "
                             f"{[(c.caller_number, c.state, c.disposition) for c in self.calls()]}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def workdir(request: pytest.FixtureRequest) -> Iterator[Path]:
    path = ROOT / "var" / "test" / f"{request.node.name[:40]}-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True)
    yield path
    if request.node.stash.get(_FAILED, False):
        # a failed test keeps its data, and its engine's last words go into the report
        for log in sorted(path.glob("**/engine.log")):
            print(f"--- {log} (last 60 lines)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-60:]))
    elif os.environ.get("CCENGINE_KEEP_TEST_DATA") != "1":
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def engine_factory(lab: Lab, workdir: Path) -> Iterator[object]:
    started: list[EngineProcess] = []

    def make(agents: int = 2, *, queues: str | None = None, acd: dict[str, object] | None = None,
             ivr: dict[str, object] | None = None, **flow: object) -> EngineProcess:
        proc = EngineProcess(workdir, agents, flow, queues, acd, ivr)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()


@pytest_asyncio.fixture
async def peer(lab: Lab) -> AsyncIterator[PeerDriver]:
    async with PeerDriver(lab.settings) as driver:
        await driver.agent_talk_time(3, 5)
        yield driver


async def pbx_channels(lab: Lab) -> list[dict[str, object]]:
    """Channels on the switch that belong to the engine's application (other apps, such as a
    dialer test running at the same time, are not this engine's business)."""
    ari = lab.settings.pbx.ari
    async with aiohttp.ClientSession(auth=aiohttp.BasicAuth(ari.username, ari.password)) as http, \
            http.get(f"{ari.url}/channels") as resp:
        data: list[dict[str, Any]] = await resp.json()
    return [c for c in data
            if str((c.get("dialplan") or {}).get("app_data", "")).split(",")[0] == ari.app
            or str(c.get("name", "")).startswith("Snoop/")]


async def hang_up_lines(lab: Lab) -> None:
    """A stopped engine leaves its agents' persistent lines up for its successor to adopt: tests
    hang them up when they are done."""
    ari = lab.settings.pbx.ari
    async with aiohttp.ClientSession(auth=aiohttp.BasicAuth(ari.username, ari.password)) as http:
        for channel in await pbx_channels(lab):
            if str(channel["id"]).startswith("line-"):
                async with http.delete(f"{ari.url}/channels/{channel['id']}"):
                    pass
