"""Webhooks: every stored event a hook subscribes to is POSTed to its URL, signed with
HMAC-SHA256, retried with exponential backoff, and dead-lettered after the last attempt.

A hook's offset is saved, so after a restart delivery resumes after the last event handled
(at-least-once: an event being delivered at the moment of a crash is sent again).

Signature: header ``X-CCEngine-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``
(the timestamp inside the MAC lets receivers refuse replays). Each hook is served by one
task reading the event hub, so a hook receives events in ``seq`` order.

A hook delivers on its owner's authority (the admin who registered it): while the owner is
disabled or no longer an admin the hook is suspended, its offset kept, and it resumes from
that offset when the owner is an enabled admin again, so nothing is lost and nothing flows
under revoked rights.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from .context import ApiContext
from .stream import EventHub, StreamItem
from .tables import DeadLetterRow, UserRow, WebhookRow

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-CCEngine-Signature"
OWNER_ROLE = "admin"  # who may register hooks, and whose rights a hook keeps using


def suspension(owner: UserRow | None) -> str | None:
    """Why a hook owned by ``owner`` may not deliver now (None: it may)."""
    if owner is None:
        return "owner unknown"
    if owner.disabled:
        return "owner disabled"
    if owner.role != OWNER_ROLE:
        return f"owner is no longer {OWNER_ROLE}"
    return None


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: float | None = None, tolerance: float = 300.0) -> bool:
    """Receiver side check (also used by the tests)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def accepts(types: list[str], item: StreamItem) -> bool:
    return any(item.type == t or (t.endswith(".*") and item.type.startswith(t[:-1])) for t in types)


@dataclass(frozen=True)
class _TypeFilter:
    types: tuple[str, ...]

    def __call__(self, item: StreamItem) -> bool:
        return accepts(list(self.types), item)


class WebhookDispatcher:
    def __init__(self, ctx: ApiContext):
        self.ctx = ctx
        self.db: Engine = ctx.db
        self.hub: EventHub = ctx.hub
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._http: aiohttp.ClientSession | None = None
        self._cursors: dict[int, int] = {}  # hook → last seq handled, not yet saved
        self._saver: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        for hook in await asyncio.to_thread(self._active):
            self.watch(hook)
        self._saver = asyncio.create_task(self._save_cursors(), name="webhook-cursors")

    def _active(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Active hooks (of one owner) whose owner may deliver now."""
        query = (select(WebhookRow, UserRow).outerjoin(UserRow, UserRow.username == WebhookRow.created_by)
                 .where(WebhookRow.active.is_(True)))
        if owner is not None:
            query = query.where(WebhookRow.created_by == owner)
        with Session(self.db) as session:
            return [{"id": h.id, "url": h.url, "secret": h.secret, "event_types": h.event_types,
                     "after": h.last_seq}
                    for h, user in session.execute(query).all() if suspension(user) is None]

    async def owner_changed(self, username: str) -> tuple[int, int]:
        """Suspend the hooks of an owner who lost the right to receive them, resume those of an
        owner who has it again (from the saved offset). Returns (suspended, resumed)."""
        owned = await asyncio.to_thread(self._owned, username)
        allowed = {hook["id"]: hook for hook in await asyncio.to_thread(self._active, username)}
        suspended = [self._tasks.pop(i) for i in owned if i not in allowed and i in self._tasks]
        for task in suspended:
            task.cancel()
        await asyncio.gather(*suspended, return_exceptions=True)
        await self._flush_cursors()
        resumed = [hook for i, hook in allowed.items() if i not in self._tasks]
        for hook in resumed:
            self.watch(hook)
        return len(suspended), len(resumed)

    def _owned(self, username: str) -> list[int]:
        with Session(self.db) as session:
            return list(session.scalars(select(WebhookRow.id).where(WebhookRow.created_by == username)))

    async def _save_cursors(self, every: float = 1.0) -> None:
        """Delivery offsets go to the database once a second (and at stop), not per event."""
        while True:
            await asyncio.sleep(every)
            await self._flush_cursors()

    async def _flush_cursors(self) -> None:
        if not self._cursors:
            return
        cursors, self._cursors = self._cursors, {}

        def write() -> None:
            with Session(self.db) as session, session.begin():
                for hook_id, seq in cursors.items():
                    session.execute(update(WebhookRow).where(WebhookRow.id == hook_id).values(last_seq=seq))

        await asyncio.to_thread(write)

    def watch(self, hook: dict[str, Any]) -> None:
        self._tasks[hook["id"]] = asyncio.create_task(self._serve(hook), name=f"webhook-{hook['id']}")

    async def stop(self) -> None:
        tasks = [*self._tasks.values(), *([self._saver] if self._saver else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        await self._flush_cursors()
        if self._http is not None:
            await self._http.close()

    async def _serve(self, hook: dict[str, Any]) -> None:
        types: list[str] = hook["event_types"]
        after: int | None = hook.get("after")  # None for a new hook: from now on
        while True:
            try:
                async for item in self.hub.stream(_TypeFilter(tuple(types)), after=after):
                    await self.deliver(hook, item)
                    after = self._cursors[hook["id"]] = item.seq
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook %s stream failed; reattaching", hook["id"])
                await asyncio.sleep(1.0)

    async def deliver(self, hook: dict[str, Any], item: StreamItem) -> bool:
        assert self._http is not None
        settings = self.ctx.settings
        body = item.frame.encode()
        error = ""
        for attempt in range(1, settings.webhook_attempts + 1):
            headers = {"Content-Type": "application/json", "X-CCEngine-Event": item.type,
                       "X-CCEngine-Seq": str(item.seq), "X-CCEngine-Attempt": str(attempt),
                       SIGNATURE_HEADER: sign(hook["secret"], int(time.time()), body)}
            try:
                async with self._http.post(hook["url"], data=body, headers=headers) as resp:
                    if 200 <= resp.status < 300:
                        self.ctx.metrics.count(self.ctx.metrics.webhook_deliveries, "delivered")
                        return True
                    error = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            self.ctx.metrics.count(self.ctx.metrics.webhook_deliveries, "retried")
            if attempt < settings.webhook_attempts:
                await asyncio.sleep(settings.webhook_backoff * 2 ** (attempt - 1))
        self.ctx.metrics.count(self.ctx.metrics.webhook_deliveries, "dead_lettered")
        await asyncio.to_thread(self._dead_letter, hook["id"], item, body.decode(), error)
        return False

    def _dead_letter(self, hook_id: int, item: StreamItem, body: str, error: str) -> None:
        with Session(self.db) as session, session.begin():
            session.add(DeadLetterRow(webhook_id=hook_id, event_seq=item.seq, event_type=item.type, body=body,
                                      attempts=self.ctx.settings.webhook_attempts, last_error=error[:2000],
                                      failed_at=datetime.now(UTC)))


DISPATCHER: web.AppKey[WebhookDispatcher] = web.AppKey("webhooks", WebhookDispatcher)
