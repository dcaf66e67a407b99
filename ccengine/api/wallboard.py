"""The supervisor wallboard: a static page whose script reads the API and the event stream.

The page itself holds no data, so it is public; what it shows depends on the token in its
URL fragment (never sent to the server in a Referer or request line).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from .app import Route

STATIC = Path(__file__).resolve().parent / "static"
_CSP = ("default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:; "
        "base-uri 'none'; frame-ancestors 'none'")


async def page(_request: web.Request) -> web.Response:
    return web.Response(body=(STATIC / "wallboard.html").read_bytes(), content_type="text/html",
                        headers={"Content-Security-Policy": _CSP, "Referrer-Policy": "no-referrer"})


async def script(_request: web.Request) -> web.Response:
    return web.Response(body=(STATIC / "wallboard.js").read_bytes(), content_type="text/javascript")


ROUTES = [
    Route("GET", "/wallboard", page, None, "supervisor wallboard page (token in the URL fragment)"),
    Route("GET", "/wallboard.js", script, None, "wallboard script"),
]
