"""User administration over the API on a real server and a real SQLite file: role changes,
disabling (tokens, sessions and open streams refused at once), token listing and revocation,
the self and last-admin guards, the audit; the last-admin rule on PostgreSQL too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ccengine.api.security import LoginPolicy
from ccengine.api.users import UserError, UserStore
from ccengine.audit.chain import AuditTrail
from ccengine.core.events import AgentStateChanged, Event
from ccengine.store.database import make_engine, upgrade

from .api_support import Api, running_api


async def call(http: aiohttp.ClientSession, api: Api, method: str, path: str, role: str | None = None,
               token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token or api.tokens[role or 'admin']}"}
    async with http.request(method, api.url + path, headers=headers, **kwargs) as resp:
        return resp.status, await resp.json()


async def test_role_change_takes_effect_on_the_next_request(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        assert (await call(http, api, "GET", "/api/v1/users", "qa"))[0] == 403
        status, changed = await call(http, api, "PATCH", "/api/v1/users/qa1", json={"role": "auditor"})
        assert status == 200 and changed["role"] == "auditor"
        assert (await call(http, api, "GET", "/api/v1/users", "qa"))[0] == 200  # the same token, the new role
        status, problem = await call(http, api, "PATCH", "/api/v1/users/qa1", json={"role": "agent"})
        assert status == 422 and "agent id" in problem["error"]
        status, changed = await call(http, api, "PATCH", "/api/v1/users/qa1",
                                     json={"role": "agent", "agent_id": "agent2"})
        assert status == 200 and changed["agent_id"] == "agent2"
        status, me = await call(http, api, "GET", "/api/v1/me", "qa")
        assert me == {"username": "qa1", "role": "agent", "agent_id": "agent2"}
        # refusals, each with a reason
        assert (await call(http, api, "PATCH", "/api/v1/users/nobody", json={"role": "qa"}))[0] == 404
        status, problem = await call(http, api, "PATCH", "/api/v1/users/qa1", json={})
        assert status == 422 and "nothing to change" in problem["error"]
        status, problem = await call(http, api, "PATCH", "/api/v1/users/qa1", json={"role": "root"})
        assert status == 422 and "role" in problem["error"]
        status, problem = await call(http, api, "PATCH", "/api/v1/users/qa1", json={"disabled": True, "x": 1})
        assert status == 422 and "x" in problem["error"]
        assert (await call(http, api, "PATCH", "/api/v1/users/qa1", "supervisor", json={"role": "qa"}))[0] == 403
    actions = [(e.actor, e.action, e.target, e.outcome) for e in AuditTrail(api.ctx.db).entries()]
    assert ("admin1", "user.change", "qa1", "success") in actions
    assert ("admin1", "user.change", "qa1", "denied") in actions


async def test_disabling_refuses_tokens_sessions_and_open_streams_at_once(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        async with http.post(api.url + "/api/v1/login",
                             json={"username": "supervisor1", "password": "correct horse battery"}) as resp:
            session_token = (await resp.json())["token"]
        assert (await call(http, api, "GET", "/api/v1/me", token=session_token))[0] == 200
        received: list[str] = []
        async with http.ws_connect(api.url + "/api/v1/events/ws", headers=api.auth("supervisor")) as ws:
            api.bus.publish(Event.of(AgentStateChanged(state="ready", previous="not_ready"), agent_id="agent1"))
            received.append((await ws.receive(timeout=10)).data)
            status, changed = await call(http, api, "PATCH", "/api/v1/users/supervisor1", json={"disabled": True})
            assert status == 200 and changed["disabled"] and changed["tokens_revoked"] == 2
            assert changed["streams_closed"] == 1
            closing = await ws.receive(timeout=10)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closing
        assert "agent.state_changed" in received[0]
        for token in (api.tokens["supervisor"], session_token):
            assert (await call(http, api, "GET", "/api/v1/me", token=token))[0] == 401
        async with http.post(api.url + "/api/v1/login",
                             json={"username": "supervisor1", "password": "correct horse battery"}) as resp:
            assert resp.status == 401
        # enabled again: the old tokens stay revoked, a new login works
        status, changed = await call(http, api, "PATCH", "/api/v1/users/supervisor1", json={"disabled": False})
        assert status == 200 and not changed["disabled"]
        assert (await call(http, api, "GET", "/api/v1/me", "supervisor"))[0] == 401
        async with http.post(api.url + "/api/v1/login",
                             json={"username": "supervisor1", "password": "correct horse battery"}) as resp:
            assert resp.status == 200
    actions = [(e.action, e.target) for e in AuditTrail(api.ctx.db).entries()]
    assert ("user.disable", "supervisor1") in actions and ("user.enable", "supervisor1") in actions


async def test_admins_cannot_lock_themselves_or_everyone_out(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        for change in ({"disabled": True}, {"role": "supervisor"}):
            status, problem = await call(http, api, "PATCH", "/api/v1/users/admin1", json=change)
            assert status == 409 and "themselves" in problem["error"]
        api.ctx.users.add("admin2", "admin", "correct horse battery")
        second = api.ctx.users.create_token("admin2")
        # admin2 demotes admin1: allowed while another admin remains ...
        status, _ = await call(http, api, "PATCH", "/api/v1/users/admin1", token=second, json={"role": "auditor"})
        assert status == 200
        api.ctx.users.add("admin3", "admin", "correct horse battery")
        third = api.ctx.users.create_token("admin3")
        assert (await call(http, api, "PATCH", "/api/v1/users/admin2", token=third, json={"disabled": True}))[0] == 200
        api.ctx.users.add("admin4", "admin", "correct horse battery")
        fourth = api.ctx.users.create_token("admin4")
        assert (await call(http, api, "PATCH", "/api/v1/users/admin4", token=third, json={"disabled": True}))[0] == 200
        assert (await call(http, api, "GET", "/api/v1/me", token=fourth))[0] == 401  # died with the account
        # ... admin3 is now the last enabled admin: nobody may demote or disable them
        with pytest.raises(UserError, match="last enabled admin"):
            api.ctx.users.change("someone-else", "admin3", role="qa")
        with pytest.raises(UserError, match="last enabled admin"):
            api.ctx.users.change("someone-else", "admin3", disabled=True)


async def test_tokens_are_listed_without_secrets_and_revoked_one_by_one(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        extra = api.ctx.users.create_token("qa1", "reporting")
        status, tokens = await call(http, api, "GET", "/api/v1/users/qa1/tokens", "auditor")
        assert status == 200 and [t["name"] for t in tokens] == ["api", "reporting"]
        assert all(set(t) == {"id", "name", "created_at", "expires_at", "revoked_at"} for t in tokens)
        assert extra not in str(tokens)
        reporting = tokens[1]["id"]
        async with http.ws_connect(api.url + "/api/v1/events/ws", headers={"Authorization": f"Bearer {extra}"}) as ws:
            status, revoked = await call(http, api, "DELETE", f"/api/v1/users/qa1/tokens/{reporting}")
            assert status == 200 and revoked["streams_closed"] == 1
            closing = await ws.receive(timeout=10)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert (await call(http, api, "GET", "/api/v1/me", token=extra))[0] == 401
        assert (await call(http, api, "GET", "/api/v1/me", "qa"))[0] == 200  # the other token lives on
        status, problem = await call(http, api, "DELETE", f"/api/v1/users/qa1/tokens/{reporting}")
        assert status == 409 and "already revoked" in problem["error"]
        assert (await call(http, api, "DELETE", f"/api/v1/users/agent1/tokens/{reporting}"))[0] == 404
        assert (await call(http, api, "DELETE", "/api/v1/users/qa1/tokens/abc"))[0] == 400
        assert (await call(http, api, "GET", "/api/v1/users/nobody/tokens", "auditor"))[0] == 404
    audited = [(e.action, e.target, e.outcome) for e in AuditTrail(api.ctx.db).entries()]
    assert ("token.revoke", f"qa1/{reporting}", "success") in audited
    assert ("token.revoke", f"qa1/{reporting}", "denied") in audited


def test_last_admin_rule_on_postgresql(postgres_url: str) -> None:
    upgrade(postgres_url)
    db = make_engine(postgres_url)
    try:
        users = UserStore(db, LoginPolicy(5, 60.0))
        users.add("root1", "admin", "correct horse battery")
        users.add("root2", "admin", "correct horse battery")
        users.add("ops", "supervisor")
        token = users.create_token("root2")
        assert users.change("root1", "root2", disabled=True)["tokens_revoked"] == 1
        assert users.authenticate(token) is None
        with pytest.raises(UserError, match="last enabled admin"):
            users.change("ops", "root1", role="supervisor")
        with pytest.raises(UserError, match="themselves"):
            users.change("root1", "root1", role="supervisor")
        users.change("root1", "root2", disabled=False)
        assert users.change("root2", "root1", role="supervisor")["role"] == "supervisor"
        assert {u["username"]: u["role"] for u in users.list()} == {"ops": "supervisor", "root1": "supervisor",
                                                                    "root2": "admin"}
    finally:
        db.dispose()
