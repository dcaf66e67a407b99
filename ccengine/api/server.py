"""Start and stop the API next to the engine: wires the hub to the store writer, TLS, listener."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from . import campaigns, events_http, keeping, ops, rest, transfers, wallboard
from .app import Route, make_app
from .context import ApiContext
from .stream import EventHub
from .tls import lab_certificate, server_context

if TYPE_CHECKING:
    from ari_apps.inbound import CallSession

    from ..config import Settings
    from ..dialer.host import CampaignHost
    from ..engine import Engine


def routes() -> list[Route]:
    return [*rest.ROUTES, *transfers.ROUTES, *campaigns.ROUTES, *events_http.ROUTES, *ops.ROUTES, *keeping.ROUTES,
            *wallboard.ROUTES]


def build(ctx: ApiContext) -> web.Application:
    app = make_app(ctx, routes())
    ops.install(app, ctx)
    return app


async def serve(ctx: ApiContext, port: int, state_dir: Path) -> web.AppRunner:
    """Listen on ``ctx.settings.host:port``; HTTPS unless ``tls`` is off."""
    settings = ctx.settings
    ssl_context = None
    if settings.tls:
        if settings.cert_file and settings.key_file:
            cert, key = settings.cert_file, settings.key_file
        else:
            cert, key = lab_certificate(state_dir)
        ssl_context = server_context(cert, key)
    app = build(ctx)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, settings.host, port, ssl_context=ssl_context).start()
    return runner


def last_seq(ctx: ApiContext) -> int:
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from ..store.schema import EventRow

    with Session(ctx.db) as session:
        return int(session.scalar(select(func.max(EventRow.seq))) or 0)


async def start_for_engine(engine: Engine, settings: Settings, campaigns: CampaignHost | None = None
                           ) -> Callable[[], Awaitable[None]]:
    """Serve the API of a running engine; returns the coroutine function that stops it."""
    import asyncio

    hub = EventHub(engine.db)
    def live_call(call_id: str) -> CallSession | None:
        app = engine.app
        return next((c for c in app.by_channel.values() if c.id == call_id), None) if app else None

    ctx = ApiContext(settings.api, engine.db, hub, acd=engine.acd, pbx=engine.pbx,
                     reasons=settings.acd.not_ready_reasons, supervision=engine.supervision, live_call=live_call,
                     keeping=engine.keeping, inbound=lambda: engine.app, campaigns=campaigns,
                     payments=engine.app.payments if engine.app is not None and settings.payment.enabled else None)
    hub.last_seq = await asyncio.to_thread(last_seq, ctx)
    engine.writer.committed.append(hub.on_commit)
    runner = await serve(ctx, settings.http_port, settings.paths.state_dir)

    async def stop() -> None:
        engine.writer.committed.remove(hub.on_commit)
        hub.close()
        await runner.cleanup()

    return stop
