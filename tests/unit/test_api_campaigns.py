"""Campaign control over REST on a real server and SQLite file: a start names a file of the
campaigns folder (nothing else is reachable), refusals carry their reasons, and pause / resume /
stop follow the campaign's state (404 / 409 otherwise), each audited."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.orm import Session

from ccengine.audit.chain import AuditTrail
from ccengine.config import load_settings
from ccengine.dialer.host import CampaignHost
from ccengine.dialer.schema import CampaignRow
from ccengine.lab.lab import ROOT

from .api_support import Api, running_api


async def post(http: aiohttp.ClientSession, api: Api, path: str, payload: Any, role: str = "supervisor"
               ) -> tuple[int, Any]:
    async with http.post(api.url + path, json=payload, headers=api.auth(role)) as resp:
        return resp.status, await resp.json()


def host(api: Api) -> CampaignHost:
    assert api.ctx.acd is not None
    return CampaignHost(load_settings(ROOT / "config" / "ccengine.yaml"), api.ctx.acd, api.ctx.db)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A campaigns folder: the example (agents, not a queue), one on an unknown queue, a broken
    one, and a link that leads out of the folder."""
    folder = tmp_path / "campaigns"
    folder.mkdir()
    for name in ("example.yaml", "example-contacts.csv", "example-dnc.txt"):
        shutil.copy(ROOT / "config" / "campaigns" / name, folder / name)
    example = (folder / "example.yaml").read_text()
    (folder / "nowhere.yaml").write_text(example.replace("agents: [agent1, agent2, agent3, agent4, agent5]",
                                                         "queue: nowhere"))
    (folder / "broken.yaml").write_text(example.replace("ring_timeout: 20", "ring_timeout: 2"))
    (tmp_path / "outside.yaml").write_text(example)
    (folder / "escape.yaml").symlink_to(tmp_path / "outside.yaml")
    return folder


async def test_start_takes_a_file_of_the_campaigns_folder_only(tmp_path: Path, folder: Path) -> None:
    async with running_api(tmp_path, campaigns_dir=folder) as api, aiohttp.ClientSession() as http:
        status, problem = await post(http, api, "/api/v1/campaigns", {"file": "example.yaml"})
        assert status == 503 and "ccengine run" in problem["error"]  # no engine hosts campaigns here
        api.ctx.campaigns = host(api)
        for name in ("../outside.yaml", "/etc/passwd", "example-contacts.csv"):
            status, problem = await post(http, api, "/api/v1/campaigns", {"file": name})
            assert status == 422 and "file" in problem["error"], name
        for name in ("missing.yaml", "escape.yaml"):
            status, problem = await post(http, api, "/api/v1/campaigns", {"file": name})
            assert status == 404 and "no campaign file" in problem["error"], name
        status, problem = await post(http, api, "/api/v1/campaigns", {"file": "example.yaml"})
        assert status == 422 and "names agents, not a queue" in problem["error"]
        status, problem = await post(http, api, "/api/v1/campaigns", {"file": "nowhere.yaml"})
        assert status == 422 and "nowhere" in problem["error"]
        status, problem = await post(http, api, "/api/v1/campaigns", {"file": "broken.yaml"})
        assert status == 422 and "broken.yaml:" in problem["error"] and "ring_timeout" in problem["error"]
        assert (await post(http, api, "/api/v1/campaigns", {"file": "example.yaml"}, role="agent"))[0] == 403
    denied = [e for e in AuditTrail(api.ctx.db).entries() if e.action == "campaign.start"]
    assert len(denied) == 3 and all(e.outcome == "denied" for e in denied)


async def test_pause_resume_stop_follow_the_state(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        api.ctx.campaigns = host(api)
        with Session(api.ctx.db) as session, session.begin():
            session.add(CampaignRow(id="c-1", name="cards", mode="predictive", state="running", definition={},
                                    source="config/campaigns/example.yaml", created_at=datetime.now(UTC)))
        base = "/api/v1/campaigns/c-1"
        status, moved = await post(http, api, f"{base}/pause", {"reason": "complaint spike"})
        assert status == 200 and (moved["previous"], moved["state"]) == ("running", "paused")
        status, problem = await post(http, api, f"{base}/pause", {})
        assert status == 409 and problem["error"] == "campaign cards is paused: pause needs it running"
        assert (await post(http, api, f"{base}/resume", {}, role="admin"))[0] == 200
        assert (await post(http, api, f"{base}/stop", {}))[1]["state"] == "stopped"
        assert (await post(http, api, f"{base}/resume", {}))[0] == 409
        status, problem = await post(http, api, "/api/v1/campaigns/c-2/stop", {})
        assert status == 404 and "no campaign c-2" in problem["error"]
        assert (await post(http, api, f"{base}/stop", {"why": "x"}))[0] == 422
        assert (await post(http, api, f"{base}/stop", {}, role="qa"))[0] == 403
        async with http.get(api.url + "/api/v1/campaigns", headers=api.auth("auditor")) as resp:
            assert [c["state"] for c in await resp.json()] == ["stopped"]
    audited = [(e.action, e.outcome, e.details_obj.get("reason")) for e in AuditTrail(api.ctx.db).entries()
               if e.action.startswith("campaign.")]
    assert audited[0] == ("campaign.pause", "success", "complaint spike")
    assert [a for a, _, _ in audited] == ["campaign.pause", "campaign.pause", "campaign.resume", "campaign.stop",
                                          "campaign.resume", "campaign.stop"]
