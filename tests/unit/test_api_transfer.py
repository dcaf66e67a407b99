"""The transfer route without a PBX (validation, who may move which call, the four-eyes request and
its executor's refusal), on a real server and SQLite file; the transfer itself is a lab test
(tests/lab/test_api_transfer.py)."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from ccengine.api.security import Principal
from ccengine.api.transfers import _authorise

from .api_support import running_api


def test_agents_move_only_their_own_calls_and_never_to_a_number() -> None:
    desk = Principal("desk1", "agent", "agent1")
    assert _authorise(desk, "agent1", "c1", "queue") is None
    assert _authorise(desk, "agent1", "c1", "agent") is None
    hidden = _authorise(desk, "agent2", "c1", "queue")
    assert hidden is not None and hidden.status == 404 and hidden.reason == "no live call c1"
    assert _authorise(desk, None, "c1", "queue") is not None
    toll = _authorise(desk, "agent1", "c1", "number")
    assert toll is not None and toll.status == 403
    for role in ("supervisor", "admin"):
        assert _authorise(Principal("x", role), "agent2", "c1", "number") is None  # type: ignore[arg-type]


async def test_requests_are_validated_and_need_a_pbx(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        url = api.url + "/api/v1/calls/c1/transfer"

        async def post(role: str, json: object = None, data: bytes | None = None) -> tuple[int, str]:
            headers = {**api.auth(role), "Content-Type": "application/json"}
            async with http.post(url, headers=headers, json=json, data=data) as resp:
                return resp.status, (await resp.json())["error"]

        status, reason = await post("supervisor", json={"kind": "number", "target": "call-me-maybe"})
        assert status == 422 and "3 to 20 digits" in reason
        status, reason = await post("supervisor", json={"kind": "queue", "target": "general", "priority": 9})
        assert status == 422 and "priority" in reason
        status, reason = await post("supervisor", json={"kind": "voicemail", "target": "general"})
        assert status == 422 and "kind" in reason
        status, reason = await post("supervisor", data=b'{"kind": "queue",')
        assert status == 400 and "malformed JSON" in reason
        status, reason = await post("agent", json={"kind": "queue", "target": "general"})
        assert status == 503 and "no PBX" in reason
        assert (await post("qa", json={"kind": "queue", "target": "general"}))[0] == 403


async def test_high_value_confirmation_is_a_four_eyes_request(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        async def post(role: str, path: str, payload: object) -> tuple[int, dict[str, object]]:
            async with http.post(api.url + path, json=payload, headers=api.auth(role)) as resp:
                return resp.status, await resp.json()

        action = "transfer.confirm_high_value"
        status, problem = await post("agent", "/api/v1/approvals", {"action": action, "target": "c1",
                                                                    "params": {"kind": "number", "target": "x"}})
        assert status == 409 and "params must be {kind, target}" in str(problem["error"])
        status, row = await post("agent", "/api/v1/approvals", {"action": action, "target": "c1",
                                                                "params": {"kind": "queue", "target": "general"}})
        assert status == 201
        assert (await post("supervisor", f"/api/v1/approvals/{row['id']}/approve", {}))[0] == 200
        # executed by the requester: the transfer is attempted now, and refused without a PBX ...
        status, problem = await post("agent", f"/api/v1/approvals/{row['id']}/execute", {})
        assert status == 503 and "no PBX" in str(problem["error"])
        # ... which leaves the approval approved, to be executed once the call can move
        async with http.get(api.url + "/api/v1/approvals", headers=api.auth("supervisor")) as resp:
            assert [r["status"] for r in await resp.json() if r["id"] == row["id"]] == ["approved"]
