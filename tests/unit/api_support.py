"""Shared set-up for the API tests: a migrated SQLite file, users per role, a real server on loopback."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ccengine.acd.definitions import load_queue_config
from ccengine.acd.service import Acd
from ccengine.api.context import ApiContext
from ccengine.api.security import ROLES
from ccengine.api.server import build
from ccengine.api.settings import ApiSettings
from ccengine.api.stream import EventHub
from ccengine.api.tls import lab_certificate, server_context
from ccengine.audit.chain import AuditTrail
from ccengine.core.bus import EventBus
from ccengine.lab.lab import ROOT
from ccengine.lab.queues import write_general_queue
from ccengine.recording.keeping import Keeping
from ccengine.recording.retention import load_retention
from ccengine.recording.vault import Vault
from ccengine.store.database import make_engine, upgrade
from ccengine.store.writer import StoreWriter


@dataclass
class Api:
    url: str
    ctx: ApiContext
    bus: EventBus
    writer: StoreWriter
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def make_context(tmp_path: Path, **settings: Any) -> tuple[ApiContext, EventBus, StoreWriter]:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    upgrade(url)
    db = make_engine(url)
    bus = EventBus()
    writer = StoreWriter(db, bus, linger=0.01)
    acd = Acd(load_queue_config(write_general_queue(tmp_path / "queues.yaml", 3)), bus.publish, rona_pause=None)
    hub = EventHub(db)
    writer.committed.append(hub.on_commit)
    ctx = ApiContext(ApiSettings(tls=False, **settings), db, hub, acd=acd, reasons=("break", "lunch"))
    return ctx, bus, writer


@asynccontextmanager
async def running_api(tmp_path: Path, *, tls: bool = False, vault_dir: Path | None = None,
                      **settings: Any) -> AsyncIterator[Api]:
    ctx, bus, writer = make_context(tmp_path, **settings)
    if vault_dir is not None:  # recordings kept in a real vault: holds, purge, erasure
        ctx.keeping = Keeping(ctx.db, Vault(vault_dir), AuditTrail(ctx.db),
                              load_retention(ROOT / "config" / "retention.yaml"))
    writer.start()
    for role in ROLES:
        ctx.users.add(f"{role}1", role, "correct horse battery", agent_id="agent1" if role == "agent" else None)
    tokens = {role: ctx.users.create_token(f"{role}1") for role in ROLES}
    runner = web.AppRunner(build(ctx), shutdown_timeout=0.5)
    await runner.setup()
    ssl_context: ssl.SSLContext | None = None
    if tls:
        ssl_context = server_context(*lab_certificate(tmp_path))
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield Api(f"{'https' if tls else 'http'}://127.0.0.1:{port}", ctx, bus, writer, tokens)
    finally:
        ctx.hub.close()
        await runner.cleanup()
        await writer.close()
        ctx.db.dispose()
