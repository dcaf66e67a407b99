"""Authorisation matrix (every role x every route, generated from the route table), tokens,
login lockout, rate limits, validation errors and TLS versions, on a real server on loopback."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ccengine.api.security import ROLES, RateLimiter, hash_token, verify_password
from ccengine.api.server import routes
from ccengine.api.tables import TokenRow, UserRow
from ccengine.audit.chain import AuditTrail

from .api_support import running_api

PARAMS = {"agent": "agent1", "call_id": "no-such-call", "username": "agent1", "approval_id": "nope",
          "recording_id": "no-such-recording", "hold_id": "no-such-hold",
          "webhook_id": "1", "token_id": "999999", "campaign_id": "no-such-campaign"}


def _path(path: str) -> str:
    for name, value in PARAMS.items():
        path = path.replace("{" + name + "}", value)
    return path


async def test_every_role_on_every_route(tmp_path: Path) -> None:
    table = [r for r in routes() if r.roles is not None]
    assert len(table) >= 15
    async with running_api(tmp_path, rate_burst=10_000) as api, aiohttp.ClientSession() as http:
        for route in table:
            url = api.url + _path(route.path)
            async with http.request(route.method, url, json={} if route.method == "POST" else None) as resp:
                assert resp.status == 401, (route.path, "no token")
                assert "error" in await resp.json()
            for role in ROLES:
                kwargs = {"json": {}} if route.method == "POST" else {}
                if route.path.endswith("/events"):
                    kwargs["params"] = {"after": "0"}
                async with http.request(route.method, url, headers=api.auth(role), **kwargs) as resp:
                    if role in route.roles:
                        assert resp.status not in (401, 403), (route.method, route.path, role, resp.status)
                    else:
                        assert resp.status == 403, (route.method, route.path, role, resp.status)
                        assert role in (await resp.json())["error"]
        # refusals are audited
        denied = [e for e in AuditTrail(api.ctx.db).entries() if e.action == "api.denied"]
        expected = sum(len(ROLES) - len(r.roles) for r in table)
        assert len(denied) == expected


async def test_tokens_are_stored_hashed_and_can_be_revoked(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        token = api.tokens["supervisor"]
        with Session(api.ctx.db) as session:
            hashes = set(session.scalars(select(TokenRow.token_hash)))
            stored_password = session.scalar(select(UserRow.password_hash).where(UserRow.username == "qa1"))
        assert token not in hashes and hash_token(token) in hashes
        assert stored_password and "correct horse" not in stored_password
        assert verify_password("correct horse battery", stored_password)
        async with http.get(api.url + "/api/v1/me", headers=api.auth("supervisor")) as resp:
            assert (await resp.json())["role"] == "supervisor"
        assert api.ctx.users.revoke_tokens("supervisor1") == 1
        async with http.get(api.url + "/api/v1/me", headers=api.auth("supervisor")) as resp:
            assert resp.status == 401
        async with http.get(api.url + "/api/v1/me", headers={"Authorization": "Bearer cce_forged"}) as resp:
            assert resp.status == 401


async def test_login_lockout_after_repeated_failures(tmp_path: Path) -> None:
    async with running_api(tmp_path, lockout_failures=3) as api, aiohttp.ClientSession() as http:
        login = api.url + "/api/v1/login"
        async with http.post(login, json={"username": "qa1", "password": "correct horse battery"}) as resp:
            assert resp.status == 200
            token = (await resp.json())["token"]
        async with http.get(api.url + "/api/v1/me", headers={"Authorization": f"Bearer {token}"}) as resp:
            assert (await resp.json())["username"] == "qa1"
        for _ in range(2):
            async with http.post(login, json={"username": "qa1", "password": "wrong"}) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"] == "invalid credentials"
        async with http.post(login, json={"username": "qa1", "password": "wrong"}) as resp:
            assert "locked" in (await resp.json())["error"]
        # now even the right password is refused
        async with http.post(login, json={"username": "qa1", "password": "correct horse battery"}) as resp:
            assert resp.status == 401 and "locked" in (await resp.json())["error"]
        outcomes = [e.outcome for e in AuditTrail(api.ctx.db).entries() if e.action == "api.login"]
        assert outcomes == ["success", "failure", "failure", "failure", "failure"]
        assert AuditTrail(api.ctx.db).verify() == []


async def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    async with running_api(tmp_path, rate_burst=5, rate_per_second=1.0) as api, aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(8):
            async with http.get(api.url + "/api/v1/me", headers=api.auth("qa")) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    assert int(resp.headers["Retry-After"]) >= 1
        assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
        async with http.get(api.url + "/api/v1/me", headers=api.auth("admin")) as resp:
            assert resp.status == 200  # buckets are per client


def test_rate_limiter_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=2, clock=lambda: now[0])
    assert [limiter.check("a") for _ in range(2)] == [0.0, 0.0]
    assert limiter.check("a") == pytest.approx(0.5)
    now[0] = 0.5
    assert limiter.check("a") == 0.0
    for i in range(10_001):
        limiter.check(f"client{i}")
    now[0] = 100.0
    limiter.check("late")
    assert len(limiter._buckets) == 1  # idle, refilled buckets are forgotten


@pytest.mark.parametrize(("payload", "headers", "status", "reason"), [
    (b"{not json", {"Content-Type": "application/json"}, 400, "malformed JSON"),
    (b'{"username": "x1", "role": "qa", "colour": "red"}', {"Content-Type": "application/json"}, 422,
     "colour: Extra inputs are not permitted"),
    (b'{"username": "x1", "role": "king"}', {"Content-Type": "application/json"}, 422, "role: Input should be"),
    (b'{"username": "x1", "role": "qa", "password": "short"}', {"Content-Type": "application/json"}, 422,
     "password: String should have at least 12 characters"),
    (b'{"username": "x1", "role": "qa"}', {"Content-Type": "text/plain"}, 415, "content type"),
    (b'{"username": "' + b"x" * 70_000 + b'", "role": "qa"}', {"Content-Type": "application/json"}, 413,
     "larger than"),
])
async def test_bad_requests_get_4xx_with_reason(tmp_path: Path, payload: bytes, headers: dict[str, str],
                                                status: int, reason: str) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http, \
            http.post(api.url + "/api/v1/users", data=payload, headers={**api.auth("admin"), **headers}) as resp:
        assert resp.status == status
        assert reason in (await resp.json())["error"]


async def test_agent_user_needs_an_agent_id_and_duplicates_conflict(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        async with http.post(api.url + "/api/v1/users", json={"username": "a2", "role": "agent"},
                             headers=api.auth("admin")) as resp:
            assert resp.status == 422 and "agent id" in (await resp.json())["error"]
        async with http.post(api.url + "/api/v1/users", json={"username": "qa1", "role": "qa"},
                             headers=api.auth("admin")) as resp:
            assert resp.status == 409


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_tls_1_1_refused_and_1_2_accepted(tmp_path: Path) -> None:
    async with running_api(tmp_path, tls=True) as api:
        cafile = tmp_path / "tls" / "api.crt"
        good = ssl.create_default_context(cafile=str(cafile))
        good.minimum_version = good.maximum_version = ssl.TLSVersion.TLSv1_2
        async with aiohttp.ClientSession() as http, http.get(api.url + "/api/v1/health", ssl=good) as resp:
            assert resp.status == 200
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(cafile=str(cafile))
        old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client even offer TLS 1.1
        old.minimum_version = ssl.TLSVersion.TLSv1_1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises(aiohttp.ClientConnectorError):
            async with aiohttp.ClientSession() as http, http.get(api.url + "/api/v1/health", ssl=old):
                pass
        # the same client does speak TLS 1.1 to a server that allows it: the refusal above is the API's
        lax = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        lax.set_ciphers("DEFAULT:@SECLEVEL=0")
        lax.minimum_version = ssl.TLSVersion.TLSv1_1
        lax.load_cert_chain(cafile, tmp_path / "tls" / "api.key")
        server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0, ssl=lax)
        port = server.sockets[0].getsockname()[1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=old, server_hostname="localhost")
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.1"
        writer.close()
        server.close()


async def test_openapi_lists_every_route_with_its_roles(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        async with http.get(api.url + "/openapi.json") as resp:
            doc = await resp.json()
        for route in routes():
            op = doc["paths"][route.path][route.method.lower()]
            assert op["x-roles"] == (list(route.roles) if route.roles is not None else "public")
