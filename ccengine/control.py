"""Local control socket of a running engine (UNIX domain, owner-only).

Supervisors' and agents' tools reach the engine through it from the same host:
agent login/logout, ready / not ready with a reason code, queue reload. The
network API with authentication and TLS (issue 6) exposes the same operations;
this socket is what the CLI uses on the engine's host.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from .acd.router import RoutingError
from .acd.service import Acd

ACTIONS = ("login", "logout", "ready", "not_ready")


def socket_path(state_dir: Path) -> Path:
    return state_dir / "engine.sock"


def make_app(acd: Acd, reasons: tuple[str, ...], reload: Any,
             extra: Iterable[web.AbstractRouteDef] = ()) -> web.Application:
    """``extra``: routes of engine-hosted services (e.g. the dialer's /campaigns)."""
    async def agents(_request: web.Request) -> web.Response:
        return web.json_response([
            {"id": a.id, "state": a.state, "reason": a.reason, "call_id": a.call_id}
            for a in acd.agents.values()
        ])

    async def agent_action(request: web.Request) -> web.Response:
        agent_id, action = request.match_info["agent"], request.match_info["action"]
        if agent_id not in acd.agents:
            raise web.HTTPNotFound(reason=f"unknown agent {agent_id}")
        if action not in ACTIONS:
            raise web.HTTPNotFound(reason=f"unknown action {action}; one of {', '.join(ACTIONS)}")
        reason = request.query.get("reason", "")
        if action == "not_ready" and reason not in reasons:
            raise web.HTTPBadRequest(reason=f"reason must be one of: {', '.join(reasons)}")
        try:
            if action == "login":
                acd.login(agent_id, ready=False)
            elif action == "logout":
                acd.logout(agent_id)
            elif action == "ready":
                acd.ready(agent_id, reason or "manual")
            else:
                acd.not_ready(agent_id, reason)
        except RoutingError as exc:
            raise web.HTTPConflict(reason=str(exc)) from None
        view = acd.agents[agent_id]
        return web.json_response({"id": agent_id, "state": view.state, "reason": view.reason})

    async def reload_queues(_request: web.Request) -> web.Response:
        if not reload():
            raise web.HTTPUnprocessableEntity(reason="queue definitions are invalid; see the engine log")
        return web.json_response({"reloaded": True})

    app = web.Application()
    app.add_routes([web.get("/agents", agents), web.post("/agents/{agent}/{action}", agent_action),
                    web.post("/queues/reload", reload_queues)])
    app.add_routes(list(extra))
    return app


async def serve(app: web.Application, path: Path) -> web.AppRunner:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, str(path)).start()
    os.chmod(path, 0o600)
    return runner
