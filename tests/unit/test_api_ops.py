"""Webhooks (signature, retry with backoff, dead letters), four-eyes approvals and /metrics,
against a real API server and a real webhook receiver on loopback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from aiohttp import web

from ccengine.api.webhooks import SIGNATURE_HEADER, verify
from ccengine.audit.chain import AuditTrail
from ccengine.core.events import AgentStateChanged, CallAnnounced, Event

from .api_support import Api, running_api


class Receiver:
    """A webhook endpoint that fails the first ``failures`` attempts of every event."""

    def __init__(self, failures: int):
        self.failures = failures
        self.attempts: dict[int, int] = {}
        self.accepted: list[dict] = []
        self.bad_signatures = 0
        self.secret = ""

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if not verify(self.secret, request.headers[SIGNATURE_HEADER], raw):
            self.bad_signatures += 1
            return web.Response(status=401)
        seq = int(request.headers["X-CCEngine-Seq"])
        self.attempts[seq] = self.attempts.get(seq, 0) + 1
        assert int(request.headers["X-CCEngine-Attempt"]) == self.attempts[seq]
        if self.attempts[seq] <= self.failures:
            return web.Response(status=503)
        self.accepted.append(json.loads(raw))
        return web.Response(status=204)


async def serve_receiver(receiver: Receiver) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]


async def register(http: aiohttp.ClientSession, api: Api, url: str, types: list[str]) -> str:
    async with http.post(api.url + "/api/v1/webhooks", json={"url": url, "event_types": types},
                         headers=api.auth("admin")) as resp:
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["secret"])


async def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_webhook_signed_retried_and_in_order(tmp_path: Path) -> None:
    receiver = Receiver(failures=2)
    runner, url = await serve_receiver(receiver)
    try:
        async with running_api(tmp_path, webhook_attempts=4, webhook_backoff=0.01) as api, \
                aiohttp.ClientSession() as http:
            receiver.secret = await register(http, api, url, ["agent.*"])
            await asyncio.sleep(0.05)
            for i in range(5):
                api.bus.publish(Event.of(AgentStateChanged(state="ready", previous="not_ready"), agent_id=f"a{i}"))
                api.bus.publish(Event.of(CallAnnounced(position=i), call_id=f"c{i}"))  # not subscribed
            await wait_for(lambda: len(receiver.accepted) == 5)
            assert [e["agent_id"] for e in receiver.accepted] == [f"a{i}" for i in range(5)]
            assert all(n == 3 for n in receiver.attempts.values())
            assert receiver.bad_signatures == 0
            async with http.get(api.url + "/api/v1/webhooks/dead-letters", headers=api.auth("admin")) as resp:
                assert await resp.json() == []
    finally:
        await runner.cleanup()


async def test_webhook_dead_letter_after_last_attempt_and_bad_signature_refused(tmp_path: Path) -> None:
    receiver = Receiver(failures=99)
    runner, url = await serve_receiver(receiver)
    try:
        async with running_api(tmp_path, webhook_attempts=3, webhook_backoff=0.01) as api, \
                aiohttp.ClientSession() as http:
            receiver.secret = await register(http, api, url, ["call.announced"])
            await asyncio.sleep(0.05)
            api.bus.publish(Event.of(CallAnnounced(position=1), call_id="c1"))

            async def dead() -> list[dict]:
                async with http.get(api.url + "/api/v1/webhooks/dead-letters", headers=api.auth("auditor")) as r:
                    return list(await r.json())

            for _ in range(200):
                if letters := await dead():
                    break
                await asyncio.sleep(0.05)
            assert len(letters) == 1
            assert letters[0]["attempts"] == 3 and letters[0]["last_error"] == "HTTP 503"
            assert letters[0]["event_type"] == "call.announced"
            assert list(receiver.attempts.values()) == [3]
            # a receiver with the wrong secret refuses every delivery
            receiver.secret = "not-the-secret-at-all"
            api.bus.publish(Event.of(CallAnnounced(position=2), call_id="c2"))
            await wait_for(lambda: receiver.bad_signatures >= 1)
        async with running_api(tmp_path / "x") as api, aiohttp.ClientSession() as http, \
                http.post(api.url + "/api/v1/webhooks", json={"url": url, "event_types": ["call.nope"]},
                          headers=api.auth("admin")) as resp:
            assert resp.status == 422 and "call.nope" in (await resp.json())["error"]
    finally:
        await runner.cleanup()


async def test_four_eyes_rules(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        api.ctx.users.add("admin2", "admin", "another long password")
        api.tokens["admin2"] = api.ctx.users.create_token("admin2")
        base = api.url + "/api/v1/approvals"

        async def post(path: str, who: str, payload: dict | None = None) -> tuple[int, dict]:
            async with http.post(base + path, json=payload or {}, headers=api.auth(who)) as resp:
                return resp.status, await resp.json()

        status, req = await post("", "admin", {"action": "retention.change", "target": "recordings",
                                               "params": {"days": 30}})
        assert status == 201 and req["status"] == "pending"
        assert (await post(f"/{req['id']}/approve", "admin"))[0] == 403  # self-approval
        status, body = await post(f"/{req['id']}/approve", "supervisor")
        assert status == 403 and "may not approve" in body["error"]  # wrong role (route allows supervisors)
        assert (await post(f"/{req['id']}/execute", "admin"))[0] == 409  # not approved yet
        status, body = await post(f"/{req['id']}/approve", "admin2")
        assert status == 200 and body["status"] == "approved" and body["decided_by"] == "admin2"
        assert (await post(f"/{req['id']}/approve", "compliance"))[0] == 409  # replayed approval
        assert (await post(f"/{req['id']}/execute", "admin2"))[0] == 403  # only the requester executes
        assert (await post(f"/{req['id']}/execute", "admin"))[0] == 200
        assert (await post(f"/{req['id']}/execute", "admin"))[0] == 409  # replayed execution
        # a role that may not request it
        status, body = await post("", "qa", {"action": "key.destroy", "target": "k1"})
        assert status == 403
        status, body = await post("", "admin", {"action": "launch.missiles", "target": "x"})
        assert status == 422 and "unknown action" in body["error"]
        # password reset: executed by the API itself, old tokens die, the temporary password works
        status, req = await post("", "supervisor", {"action": "password.reset", "target": "qa1"})
        assert (await post(f"/{req['id']}/approve", "admin"))[0] == 200
        status, done = await post(f"/{req['id']}/execute", "supervisor")
        async with http.get(api.url + "/api/v1/me", headers=api.auth("qa")) as resp:
            assert resp.status == 401
        async with http.post(api.url + "/api/v1/login",
                             json={"username": "qa1", "password": done["temporary_password"]}) as resp:
            assert resp.status == 200
        actions = [(e.action, e.outcome) for e in AuditTrail(api.ctx.db).entries() if e.action.startswith("approval")]
        assert ("approval.approve", "denied") in actions and ("approval.execute", "success") in actions
        assert AuditTrail(api.ctx.db).verify() == []


async def test_approval_expires(tmp_path: Path) -> None:
    async with running_api(tmp_path, approval_seconds=0.2) as api, aiohttp.ClientSession() as http:
        async with http.post(api.url + "/api/v1/approvals", json={"action": "key.destroy", "target": "k1"},
                             headers=api.auth("admin")) as resp:
            req = await resp.json()
        await asyncio.sleep(0.3)
        async with http.post(api.url + f"/api/v1/approvals/{req['id']}/approve", json={},
                             headers=api.auth("compliance")) as resp:
            assert resp.status == 410 and "expired" in (await resp.json())["error"]
        async with http.get(api.url + "/api/v1/approvals", params={"status": "expired"},
                            headers=api.auth("auditor")) as resp:
            assert [r["id"] for r in await resp.json()] == [req["id"]]


async def test_metrics_exposition(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.get(api.url + "/api/v1/me", headers=api.auth("qa")):
                pass
        api.ctx.acd.login("agent2", ready=True)  # type: ignore[union-attr]
        async with http.get(api.url + "/metrics", headers=api.auth("supervisor")) as resp:
            assert resp.status == 200
            text = await resp.text()
        samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
        assert samples['ccengine_http_requests_total{route="/api/v1/me",status="200"}'] == "3"
        assert samples['ccengine_agents{state="ready"}'] == "1"
        assert samples['ccengine_queue_waiting{queue="general"}'] == "0"
        assert "# TYPE ccengine_stream_subscribers gauge" in text


async def test_webhook_resumes_after_a_restart_without_loss_or_repeat(tmp_path: Path) -> None:
    from ccengine.api.server import build

    from .api_support import make_context

    receiver = Receiver(failures=0)
    hook_runner, url = await serve_receiver(receiver)
    ctx, bus, writer = make_context(tmp_path)
    writer.start()
    ctx.users.add("root", "admin")
    token = ctx.users.create_token("root")

    async def serve() -> tuple[web.AppRunner, str]:
        runner = web.AppRunner(build(ctx))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    def publish(start: int, n: int) -> None:
        for i in range(start, start + n):
            bus.publish(Event.of(CallAnnounced(position=i), call_id=f"c{i}"))

    try:
        bus.publish(Event.of(CallAnnounced(position=99), call_id="before"))  # stored before the hook exists
        await writer.flush()
        runner, base = await serve()
        async with aiohttp.ClientSession() as http, \
                http.post(base + "/api/v1/webhooks", json={"url": url, "event_types": ["call.*"]},
                          headers={"Authorization": f"Bearer {token}"}) as resp:
            receiver.secret = (await resp.json())["secret"]
        publish(0, 3)
        await wait_for(lambda: len(receiver.accepted) == 3)
        await runner.cleanup()  # the engine stops: offsets are saved
        publish(3, 4)  # stored while no one delivers
        await writer.flush()
        runner, _base = await serve()
        await wait_for(lambda: len(receiver.accepted) == 7)
        await asyncio.sleep(0.3)
        assert [e["data"]["position"] for e in receiver.accepted] == list(range(7))
        assert all(n == 1 for n in receiver.attempts.values())
        await runner.cleanup()
    finally:
        ctx.hub.close()
        await writer.close()
        await hook_runner.cleanup()


async def test_webhook_suspended_while_its_owner_is_disabled_and_resumed_without_loss(tmp_path: Path) -> None:
    receiver = Receiver(failures=0)
    runner, url = await serve_receiver(receiver)
    try:
        async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
            api.ctx.users.add("admin2", "admin", "correct horse battery")
            other_admin = {"Authorization": f"Bearer {api.ctx.users.create_token('admin2')}"}
            receiver.secret = await register(http, api, url, ["call.*"])  # owned by admin1
            await asyncio.sleep(0.05)

            async def owner(disabled: bool) -> dict:
                async with http.patch(api.url + "/api/v1/users/admin1", json={"disabled": disabled},
                                      headers=other_admin) as resp:
                    assert resp.status == 200, await resp.text()
                    return dict(await resp.json())

            async def hooks() -> list[dict]:
                async with http.get(api.url + "/api/v1/webhooks", headers=other_admin) as resp:
                    return list(await resp.json())

            def publish(first: int, n: int) -> None:
                for i in range(first, first + n):
                    api.bus.publish(Event.of(CallAnnounced(position=i), call_id=f"c{i}"))

            publish(0, 2)
            await wait_for(lambda: len(receiver.accepted) == 2)
            changed = await owner(True)
            assert (changed["webhooks_suspended"], changed["webhooks_resumed"]) == (1, 0)
            assert [h["suspended"] for h in await hooks()] == ["owner disabled"]
            publish(2, 3)  # stored while the owner is disabled: not delivered
            await api.writer.flush()
            await asyncio.sleep(0.3)
            assert len(receiver.accepted) == 2
            changed = await owner(False)
            assert (changed["webhooks_suspended"], changed["webhooks_resumed"]) == (0, 1)
            assert [h["suspended"] for h in await hooks()] == [None]
            await wait_for(lambda: len(receiver.accepted) == 5)
            await asyncio.sleep(0.2)
            assert [e["data"]["position"] for e in receiver.accepted] == list(range(5))
            assert all(n == 1 for n in receiver.attempts.values())
    finally:
        await runner.cleanup()
