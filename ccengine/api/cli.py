"""CLI for the API: users, tokens (on the engine's database) and ``events tail`` (over the API)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import sys
from typing import Any

import click

from .security import ROLES


def _settings(ctx: click.Context) -> Any:
    return ctx.find_root().obj.settings


def _store(ctx: click.Context) -> Any:
    from ..store.database import make_engine, upgrade
    from .security import LoginPolicy
    from .users import UserStore

    settings = _settings(ctx)
    upgrade(settings.database.url)
    return UserStore(make_engine(settings.database.url), LoginPolicy(settings.api.lockout_failures,
                                                                     settings.api.lockout_seconds))


def _audit(ctx: click.Context, action: str, target: str, details: dict[str, Any]) -> None:
    import getpass

    from ..audit.chain import AuditTrail
    from ..store.database import make_engine

    AuditTrail(make_engine(_settings(ctx).database.url)).append(f"cli:{getpass.getuser()}", action, target,
                                                                 source="cli", details=details)


@click.group()
def users() -> None:
    """API users (roles: agent, supervisor, qa, compliance, admin, auditor)."""


@users.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--agent-id", help="the agent an `agent` user speaks for")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, default="",
              help="at least 12 characters; empty for a token-only user")
@click.pass_context
def users_add(ctx: click.Context, username: str, role: str, agent_id: str | None, password: str) -> None:
    """Create a user."""
    from .users import UserError

    try:
        _store(ctx).add(username, role, password or None, agent_id)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    _audit(ctx, "user.create", username, {"role": role})
    click.echo(f"user {username} ({role}) created")


@users.command("list")
@click.pass_context
def users_list(ctx: click.Context) -> None:
    """List users."""
    for user in _store(ctx).list():
        flags = " locked" if user["locked"] else ""
        click.echo(f"{user['username']:<20}{user['role']:<12}{user['agent_id'] or '':<12}{flags}")


@click.group()
def tokens() -> None:
    """API tokens (stored hashed: shown once)."""


@tokens.command("create")
@click.argument("username")
@click.option("--name", default="api", show_default=True)
@click.option("--ttl", type=float, help="lifetime in seconds (default: no expiry)")
@click.pass_context
def tokens_create(ctx: click.Context, username: str, name: str, ttl: float | None) -> None:
    """Issue a token for USERNAME and print it."""
    from .users import UserError

    try:
        token = _store(ctx).create_token(username, name, ttl)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    _audit(ctx, "token.create", username, {"name": name})
    click.echo(token)


@tokens.command("revoke")
@click.argument("username")
@click.pass_context
def tokens_revoke(ctx: click.Context, username: str) -> None:
    """Revoke every token of USERNAME."""
    count = _store(ctx).revoke_tokens(username)
    _audit(ctx, "token.revoke", username, {"count": count})
    click.echo(f"{count} token(s) revoked")


@click.command("tail")
@click.option("--token", envvar="CCENGINE_TOKEN", required=True, help="API token (or $CCENGINE_TOKEN)")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="type=call.*, queue=cards, agent=agent3 (repeatable)")
@click.option("--after", type=int, help="resume after this sequence number (default: live only)")
@click.option("--count", type=int, help="stop after this many events")
@click.option("--url", help="API base URL (default: the engine's own, from the settings)")
@click.option("--cafile", help="CA/certificate to trust (default: the lab certificate)")
@click.pass_context
def events_tail(ctx: click.Context, token: str, filters: tuple[str, ...], after: int | None, count: int | None,
                url: str | None, cafile: str | None) -> None:
    """Follow the event stream over the API's WebSocket; one JSON event per line."""
    import aiohttp

    settings = _settings(ctx)
    params: dict[str, str] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or key not in ("type", "queue", "agent"):
            click.echo(f"error: bad filter {item!r}: use type=, queue= or agent=", err=True)
            sys.exit(2)
        params[key] = f"{params[key]},{value}" if key in params else value
    scheme = "https" if settings.api.tls else "http"
    base = url or f"{scheme}://{settings.api.host}:{settings.http_port}"
    ssl_context: ssl.SSLContext | bool = False
    if base.startswith("https"):
        trust = cafile or str(settings.api.cert_file or settings.paths.state_dir / "tls" / "api.crt")
        ssl_context = ssl.create_default_context(cafile=trust)

    async def follow() -> None:
        seen = 0
        last = after
        while True:
            query = dict(params, **({"after": str(last)} if last is not None else {}))
            try:
                async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http, \
                        http.ws_connect(base + "/api/v1/events/ws", params=query, ssl=ssl_context) as ws:
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        for line in msg.data.split("\n"):
                            click.echo(line)
                            last = json.loads(line)["seq"]
                            seen += 1
                            if count is not None and seen >= count:
                                return
            except aiohttp.WSServerHandshakeError as exc:
                click.echo(f"error: {exc.status} {exc.message}", err=True)
                sys.exit(1)
            except aiohttp.ClientConnectionError as exc:
                click.echo(f"stream interrupted ({exc}); resuming after {last}", err=True)
            await asyncio.sleep(1.0)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow())
