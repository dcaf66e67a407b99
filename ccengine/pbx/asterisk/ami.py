"""Asterisk Manager Interface over panoramisk, with its known gaps closed.

panoramisk sends pings but never checks the reply (a half-open link goes
unnoticed), reconnects on a fixed 2 s timer, and starts one task per event
callback with no bound. Here a supervisor owns the connection: it pings and
*awaits* the answer, drops the link on silence, reconnects with jittered
backoff, and every event goes into one bounded queue. If that queue ever
overflows the loss is counted and reported as a reconnect, so the consumer
resynchronises rather than trusting a state with holes in it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from panoramisk import Manager
from panoramisk.message import Message

from ...aio import stop_task
from ..protocol import PbxError

log = logging.getLogger(__name__)

AmiEvent = Mapping[str, str]
LinkHandler = Callable[[bool, str], Awaitable[None]]

# Event classes the engine listens to. "dtmf" is absent on purpose: card
# digits typed inside a PCI mask must never cross AMI.
EVENT_CLASSES = "system,call,agent,user,reporting"


class _SupervisedManager(Manager):  # type: ignore[misc]
    """panoramisk Manager whose reconnects and pings are driven by AmiClient."""

    def __init__(self, client: AmiClient, **config: Any):
        super().__init__(**config)
        self._client = client

    def ping(self) -> None:  # our supervisor pings and checks the reply
        self.pinger = None

    def connection_made(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # the supervisor sees the failure and retries with backoff
        super().connection_made(future)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connected = False
        self.authenticated = False
        self._client._link_lost(str(exc) if exc else "connection closed")

    def dispatch(self, event: Message) -> list[str]:
        self._client._enqueue(event)
        return []


class AmiClient:
    def __init__(self, host: str, port: int, username: str, secret: str, *,
                 ping_interval: float = 5.0, ping_timeout: float = 3.0, max_backoff: float = 5.0,
                 queue_size: int = 10_000, events: str = EVENT_CLASSES):
        self._config = {"host": host, "port": port, "username": username, "secret": secret,
                        "events": events, "ping_delay": 3600, "ping_interval": 3600,
                        "reconnect_timeout": 3600}
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._max_backoff = max_backoff
        self.queue: asyncio.Queue[AmiEvent] = asyncio.Queue(maxsize=queue_size)
        self.dropped = 0
        self._overflowed = False  # since the current connection was made
        self.reconnects = 0
        self._manager: _SupervisedManager | None = None
        self._lost = asyncio.Event()
        self._up = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._on_link: LinkHandler | None = None

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    async def start(self, on_link: LinkHandler, wait: bool = True) -> None:
        self._on_link = on_link
        self._supervisor = asyncio.create_task(self._supervise(), name="ami-supervisor")
        if wait:
            await self._up.wait()

    async def close(self) -> None:
        self._closing = True  # the supervisor also stops at the top of its loop
        await stop_task(self._supervisor)
        if self._manager:
            self._manager.close()

    def _enqueue(self, event: Message) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            self._overflowed = True
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("AMI event queue full: %d events dropped, forcing resync", self.dropped)
            self._lost.set()

    def _link_lost(self, reason: str) -> None:
        log.warning("AMI link lost: %s", reason)
        self._lost.set()

    async def _connect_once(self) -> None:
        loop = asyncio.get_running_loop()
        manager = _SupervisedManager(self, loop=loop, **self._config)
        self._manager = manager
        transport_future = manager.connect()
        await asyncio.wait_for(transport_future, timeout=5)
        if manager.authenticated_future is None:
            raise PbxError("AMI connection failed")
        response = await asyncio.wait_for(manager.authenticated_future, timeout=5)
        if not getattr(response, "success", False):
            raise PbxError(f"AMI login refused: {response.get('Message', '')}")

    async def _supervise(self) -> None:
        delay = 0.1
        while not self._closing:
            self._lost.clear()
            self._overflowed = False
            try:
                await self._connect_once()
            except asyncio.CancelledError:
                raise
            except (TimeoutError, OSError, PbxError) as exc:
                if self._manager:
                    self._manager.close()
                log.debug("AMI connect failed: %s", exc)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self._max_backoff)
                continue
            delay = 0.1
            self._up.set()
            assert self._on_link is not None
            await self._on_link(True, "connected")
            reason = await self._watch()
            self._up.clear()
            self.reconnects += 1
            if self._manager:
                self._manager.close()
            await self._on_link(False, reason)

    async def _watch(self) -> str:
        """Ping until the link dies; return why it died."""
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), timeout=self._ping_interval)
                return "event queue overflow" if self._overflowed else "connection lost"
            except TimeoutError:
                pass
            try:
                await asyncio.wait_for(self.action({"Action": "Ping"}), timeout=self._ping_timeout)
            except (TimeoutError, PbxError):
                log.warning("AMI ping unanswered for %.1f s: treating link as half-open", self._ping_timeout)
                return "ping timeout (half-open link)"

    async def action(self, action: Mapping[str, str | list[str]], as_list: bool = False) -> Any:
        """Send one action and await its response (a list of messages when ``as_list``)."""
        manager = self._manager
        if manager is None or not self._up.is_set() or manager.protocol is None:
            raise PbxError(f"AMI not connected for {action.get('Action')}")
        for value in action.values():
            for item in value if isinstance(value, list) else [value]:
                if "\r" in item or "\n" in item:
                    raise PbxError("AMI header values may not contain CR or LF")
        result = await manager.send_action(dict(action), as_list=as_list)
        if not as_list and isinstance(result, Message) and not result.success:
            raise PbxError(f"AMI {action.get('Action')} failed: {result.get('Message', '')}")
        return result
