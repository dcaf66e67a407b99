"""The served OpenAPI document against the live server: schemathesis generates requests for
every operation (valid and invalid bodies and parameters) and the server answers none with a 5xx."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings

from ccengine.api.security import ROLES
from ccengine.api.server import build, routes

from .api_support import make_context

STREAMING = {"/api/v1/events", "/api/v1/events/ws"}  # endless responses: covered by test_api_stream
ROLE_FOR = {(r.method, r.path): (r.roles[0] if r.roles else None) for r in routes()}


class LiveServer:
    """The API on its own event loop in a thread, so schemathesis's blocking client can call it."""

    def __init__(self, tmp_path: Path):
        self.ctx, self.bus, self.writer = make_context(tmp_path, rate_burst=1_000_000)
        for role in ROLES:
            agent = "agent1" if role == "agent" else None
            self.ctx.users.add(f"{role}1", role, "correct horse battery", agent_id=agent)
        self.tokens = {role: self.ctx.users.create_token(f"{role}1") for role in ROLES}
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.started.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self.runner = web.AppRunner(build(self.ctx), shutdown_timeout=0.2)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.writer.start()

    def __enter__(self) -> LiveServer:
        self.thread.start()
        assert self.started.wait(10)
        return self

    def __exit__(self, *_exc: object) -> None:
        async def stop() -> None:
            await self.runner.cleanup()
            await self.writer.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(tmp_path) as server:
        yield server


def no_unexplained_5xx(_ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx, except 503 with a JSON reason (call control without a PBX in this test: the
    dependency is absent, which the API says, rather than a fault)."""
    status = response.status_code
    if status == 503 and "error" in response.json():
        return None
    if status >= 500:
        raise AssertionError(f"{case.method} {case.formatted_path} answered {status}: {response.text[:200]}")
    return None


def _exercise(operation: Any, headers: dict[str, str], base_url: str) -> Any:
    @given(case=operation.as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def exercise(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, checks=[no_unexplained_5xx], timeout=10)

    return exercise


def test_no_operation_answers_5xx(live: LiveServer) -> None:
    doc = requests.get(f"http://127.0.0.1:{live.port}/openapi.json", timeout=10).json()
    doc["paths"] = {p: ops for p, ops in doc["paths"].items() if p not in STREAMING}
    doc["servers"] = [{"url": f"http://127.0.0.1:{live.port}"}]
    schema = schemathesis.openapi.from_dict(doc)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        role = ROLE_FOR[(operation.method.upper(), operation.path)]
        headers = {"Authorization": f"Bearer {live.tokens[role]}"} if role else {}

        try:
            _exercise(operation, headers, f"http://127.0.0.1:{live.port}")()
        except Exception as exc:  # collect every operation's failure, not only the first
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n".join(failures)
    assert operations == len([r for r in routes() if r.path not in STREAMING])
