"""The event stream over HTTP: Server-Sent Events and WebSocket, plus the published schemas.

Both carry the same JSON objects ``{"seq": n, <envelope>}`` (a WebSocket message holds one
or more of them, one per line); ``after=n`` (or SSE's
``Last-Event-ID``) resumes after offset n; ``type``, ``queue``, ``agent`` filter (comma
lists, ``call.*`` for a family); the caller's role bounds what passes.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from ..core.events import json_schemas
from .app import Route, error, principal
from .context import CONTEXT
from .rest import ALL
from .stream import Batch, Lagged, parse_filter

KEEPALIVE_SECONDS = 15.0
SINK_BUFFER_BYTES = 1 << 20  # unsent bytes beyond which a WebSocket's batches wait in its queue


def _after(request: web.Request) -> int | None:
    raw = request.query.get("after", request.headers.get("Last-Event-ID"))
    if raw is None or raw == "":
        return None
    try:
        after = int(raw)
    except ValueError:
        raise error(400, "after must be an integer sequence number") from None
    if after < 0:
        raise error(400, "after must be >= 0")
    return after


async def sse(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    accept = parse_filter(principal(request), request.query)
    after = _after(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    batches = ctx.hub.batches(accept, after).__aiter__()
    try:
        while True:
            try:
                batch = await asyncio.wait_for(batches.__anext__(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            except StopAsyncIteration:
                break
            await response.write("".join(f"id: {item.seq}\nevent: {item.type}\ndata: {item.frame}\n\n"
                                         for item in batch).encode())
    except Lagged as exc:
        await response.write(f"event: lagged\ndata: {exc}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            await batches.aclose()  # type: ignore[attr-defined]
    return response


async def websocket(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    accept = parse_filter(principal(request), request.query)
    after = _after(request)
    ws = web.WebSocketResponse(heartbeat=30.0, compress=False)
    await ws.prepare(request)
    transport = request.transport

    def sink(batch: Batch) -> bool:
        """Live batches straight onto the socket while it keeps up; else the pump sends them."""
        if ws.closed or transport is None or transport.is_closing() \
                or transport.get_write_buffer_size() > SINK_BUFFER_BYTES:
            return False
        transport.write(batch.websocket_frame)
        return True

    async def pump() -> None:
        try:
            async for batch in ctx.hub.batches(accept, after, sink=sink):
                await ws.send_frame(batch.data, WSMsgType.TEXT)
            # the hub ended the stream: the user was disabled, the token revoked, or the engine stops
            await ws.close(code=4001, message=b"stream ended by the server")
        except Lagged as exc:
            await ws.close(code=4008, message=str(exc)[:120].encode())
        except ConnectionResetError:
            pass

    sender = asyncio.create_task(pump())
    try:
        async for msg in ws:  # the client sends nothing meaningful; reading notices its close
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    return ws


async def schemas(_request: web.Request) -> web.Response:
    return web.json_response(json_schemas())


ROUTES = [
    Route("GET", "/api/v1/events", sse, ALL, "event stream (Server-Sent Events)", query_token=True),
    Route("GET", "/api/v1/events/ws", websocket, ALL, "event stream (WebSocket)", query_token=True),
    Route("GET", "/api/v1/events/schemas", schemas, ALL, "JSON Schema of the envelope and every event payload"),
]
