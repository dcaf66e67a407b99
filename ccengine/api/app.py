"""The aiohttp application: route table with per-route roles, authentication, rate limits,
request validation, error bodies, OpenAPI document.

Every route is declared once in ``ROUTES`` with the roles allowed to call it; the same table
drives authorisation, the OpenAPI document and the generated authorisation-matrix test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from .context import CONTEXT, ApiContext
from .security import ROLES, Principal, Role, hash_token

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ModelT = TypeVar("ModelT", bound=BaseModel)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    roles: tuple[Role, ...] | None  # None: public
    summary: str
    body: type[BaseModel] | None = None
    query_token: bool = False  # also accept ?access_token= (browsers' EventSource/WebSocket cannot set headers)


def error(status: int, reason: str) -> web.HTTPException:
    """An HTTP error whose JSON body says why."""
    text = json.dumps({"error": reason, "status": status})
    if status == 413:
        return web.HTTPRequestEntityTooLarge(max_size=0, actual_size=0, text=text, content_type="application/json")
    return _ERRORS[status](text=text, content_type="application/json")


_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 404: web.HTTPNotFound,
    409: web.HTTPConflict, 410: web.HTTPGone, 413: web.HTTPRequestEntityTooLarge, 415: web.HTTPUnsupportedMediaType,
    422: web.HTTPUnprocessableEntity, 429: web.HTTPTooManyRequests, 503: web.HTTPServiceUnavailable,
}


async def body(request: web.Request, model: type[ModelT]) -> ModelT:
    """The request's JSON body validated against ``model`` (unknown fields refused)."""
    if request.content_type not in ("application/json", "application/octet-stream") and request.can_read_body:
        raise error(415, f"content type must be application/json, not {request.content_type}")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise error(413, f"request body larger than {request.app[CONTEXT].settings.max_body_bytes} bytes") from None
    try:
        data = json.loads(raw or b"{}")
    except ValueError as exc:
        raise error(400, f"malformed JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        raise error(422, problems) from None


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def _bearer(request: web.Request, route: Route | None) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:].strip()
    if route is not None and route.query_token:
        return request.query.get("access_token")
    return None


def make_app(ctx: ApiContext, routes: list[Route]) -> web.Application:
    table: dict[Handler, Route] = {}

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = table.get(getattr(request.match_info, "handler", None))  # type: ignore[arg-type]
        status = 500
        try:
            token = _bearer(request, route)
            wait = ctx.limiter.check(hash_token(token) if token else f"ip:{request.remote}")
            if wait > 0:
                exc = error(429, "rate limit exceeded")
                exc.headers["Retry-After"] = f"{max(1, round(wait))}"
                raise exc
            if route is not None and route.roles is not None:
                if not token:
                    raise error(401, "missing bearer token")
                who = await asyncio.to_thread(ctx.users.authenticate, token)
                if who is None:
                    raise error(401, "invalid, expired or revoked token")
                if who.role not in route.roles:
                    await ctx.record(who, "api.denied", f"{request.method} {route.path}", request=request,
                                     outcome="denied")
                    raise error(403, f"role {who.role} may not {request.method} {route.path}")
                request[PRINCIPAL] = who
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            if exc.status >= 400 and exc.content_type != "application/json":
                raise error(exc.status, exc.reason) from None
            raise
        finally:
            key = route.path if route else "unmatched"
            ctx.metrics.count(ctx.metrics.requests, (key, status))

    app = web.Application(middlewares=[guard], client_max_size=ctx.settings.max_body_bytes)
    app[CONTEXT] = ctx
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
        table[route.handler] = route
    app.router.add_get("/openapi.json", _openapi_handler(routes))
    return app


def openapi(routes: list[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        op: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.method.lower() + "_" + "_".join(
                part.strip("{}") for part in route.path.strip("/").split("/")),
            "responses": {"200": {"description": "OK"}, "400": {"description": "malformed request"},
                          "401": {"description": "no valid token"}, "403": {"description": "role not allowed"},
                          "422": {"description": "invalid fields"}, "429": {"description": "rate limited"}},
            "x-roles": list(route.roles) if route.roles is not None else "public",
        }
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in _path_params(route.path)]
        if params:
            op["parameters"] = params
        if route.roles is not None:
            op["security"] = [{"bearer": []}]
        if route.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": route.body.model_json_schema(ref_template="#/components/schemas/{model}")}}}
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "ccengine API", "version": "1"},
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "x-roles": list(ROLES),
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


def _openapi_handler(routes: list[Route]) -> Handler:
    doc = openapi(routes)

    async def handler(_request: web.Request) -> web.Response:
        return web.json_response(doc)

    return handler
