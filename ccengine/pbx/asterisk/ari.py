"""Asterisk REST Interface: REST calls and a self-healing event WebSocket.

Known gaps of ARI client libraries this covers: a WebSocket that closes
cleanly must still be reconnected (with backoff, not a tight loop), a
half-open TCP link must be noticed (WebSocket heartbeat), and events must be
consumed through a bounded queue so a flood applies back-pressure to the
socket instead of spawning unbounded tasks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from ...aio import stop_task
from ..protocol import ChannelGone, PbxError

log = logging.getLogger(__name__)

Json = dict[str, Any]
MessageHandler = Callable[[Json], Awaitable[None]]
LinkHandler = Callable[[bool, str], Awaitable[None]]


class AriClient:
    def __init__(self, url: str, username: str, password: str, app: str, *,
                 heartbeat: float = 5.0, max_backoff: float = 5.0, request_timeout: float = 10.0):
        self.base = url.rstrip("/")
        self.app = app
        self._auth = aiohttp.BasicAuth(username, password)
        self._heartbeat = heartbeat
        self._max_backoff = max_backoff
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.reconnects = 0

    async def start(self, on_message: MessageHandler, on_link: LinkHandler) -> None:
        """Open the HTTP session and start the WebSocket reader (returns once connected)."""
        connector = aiohttp.TCPConnector(limit=64)
        self._session = aiohttp.ClientSession(auth=self._auth, timeout=self._timeout, connector=connector)
        self._reader = asyncio.create_task(self._run(on_message, on_link), name="ari-websocket")
        await self._connected.wait()

    async def close(self) -> None:
        await stop_task(self._reader)
        if self._session:
            await self._session.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def _run(self, on_message: MessageHandler, on_link: LinkHandler) -> None:
        assert self._session is not None
        ws_url = self.base.replace("http", "ws", 1) + "/events"
        delay = 0.1
        while True:
            try:
                async with self._session.ws_connect(
                    ws_url, params={"app": self.app, "subscribeAll": "false"},
                    heartbeat=self._heartbeat, timeout=aiohttp.ClientWSTimeout(ws_close=2),
                ) as ws:
                    delay = 0.1
                    self._connected.set()
                    await on_link(True, "connected")
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            await on_message(json.loads(msg.data))
                        elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                            break
                reason = "websocket closed"
            except asyncio.CancelledError:
                raise
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if self._connected.is_set():
                self._connected.clear()
                self.reconnects += 1
                log.warning("ARI link lost (%s); reconnecting", reason)
                await on_link(False, reason)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self._max_backoff)

    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                      body: Json | None = None) -> Any:
        """One REST call; 404 on a channel becomes :class:`ChannelGone`."""
        if self._session is None:
            raise PbxError("ARI client not started")
        clean = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        try:
            async with self._session.request(method, self.base + path, params=clean, json=body) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    message = f"ARI {method} {path} -> {resp.status}: {text.strip()[:200]}"
                    if resp.status == 404 and path.startswith(("/channels/", "/bridges/", "/playbacks/")):
                        raise ChannelGone(message, resp.status)
                    raise PbxError(message, resp.status)
                return json.loads(text) if text else None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise PbxError(f"ARI {method} {path} failed: {type(exc).__name__}: {exc}") from exc


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
