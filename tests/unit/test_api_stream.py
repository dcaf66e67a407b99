"""Event stream over WebSocket and SSE: sequence numbers are the stored seqs, resume after a
dropped connection loses and duplicates nothing, filters and roles bound what is seen; the
`events tail` CLI; the published schemas; migration 0004 on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.orm import Session

from ccengine.api import events_http
from ccengine.api.stream import Batch, EventHub, StreamItem
from ccengine.core.events import PAYLOADS, AgentStateChanged, CallAnnounced, Event
from ccengine.store.database import alembic_config, upgrade
from ccengine.store.schema import EventRow

from .api_support import Api, running_api


def publish_mix(api: Api, n: int, start: int = 0) -> None:
    """n events: agent state changes for agent1/agent2 and queue announcements in two queues."""
    for i in range(start, start + n):
        if i % 3 == 0:
            api.bus.publish(Event.of(AgentStateChanged(state="ready", previous="not_ready"),
                                     agent_id=f"agent{1 + i % 2}"))
        else:
            api.bus.publish(Event.of(CallAnnounced(position=i), call_id=f"call{i}",
                                     queue="cards" if i % 2 else "general",
                                     agent_id="agent1" if i % 5 == 0 else None))


def stored(api: Api) -> list[EventRow]:
    with Session(api.ctx.db) as session:
        rows = list(session.scalars(select(EventRow).order_by(EventRow.seq)))
        session.expunge_all()
        return rows


async def ws_read(http: aiohttp.ClientSession, api: Api, role: str, n: int, **params: str) -> list[dict]:
    got = []
    async with http.ws_connect(api.url + "/api/v1/events/ws", params=params, headers=api.auth(role)) as ws:
        while len(got) < n:
            msg = await asyncio.wait_for(ws.receive(), 10)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            got += [json.loads(line) for line in msg.data.split("\n")]
        assert len(got) == n
    return got


async def test_ws_resume_after_drop_has_no_gap_and_no_duplicate(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        api.ctx.hub.replay_batch = 10  # backlog in pages of 10: the drop below happens mid-backlog
        publish_mix(api, 60)
        await api.writer.flush()
        seen: list[int] = []
        ws = await http.ws_connect(api.url + "/api/v1/events/ws", params={"after": "0"}, headers=api.auth("admin"))
        while len(seen) < 25:
            seen += [json.loads(line)["seq"] for line in (await ws.receive()).data.split("\n")]
        # the connection dies while more events are being committed
        assert len(seen) < 60
        publish_mix(api, 40, start=60)
        ws._response.connection.transport.abort()  # type: ignore[union-attr]
        await asyncio.sleep(0.2)
        publish_mix(api, 40, start=100)
        await api.writer.flush()
        rest = await ws_read(http, api, "admin", 140 - len(seen), after=str(seen[-1]))  # exactly what is missing
        seen += [e["seq"] for e in rest]
        # live continuation on the same connection
        publish_mix(api, 5, start=140)
        async with http.ws_connect(api.url + "/api/v1/events/ws", params={"after": str(seen[-1])},
                                   headers=api.auth("admin")) as ws2:
            while len(seen) < 145:
                msg = await asyncio.wait_for(ws2.receive(), 10)
                seen += [json.loads(line)["seq"] for line in msg.data.split("\n")]
        rows = stored(api)
        assert seen == [r.seq for r in rows]
        assert len(set(seen)) == len(seen) == 145


async def test_sse_resumes_from_last_event_id(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        publish_mix(api, 30)
        await api.writer.flush()

        async def read_sse(n: int, **headers: str) -> list[tuple[int, str, dict]]:
            out = []
            async with http.get(api.url + "/api/v1/events", headers={**api.auth("supervisor"), **headers},
                                params={} if "Last-Event-ID" in headers else {"after": "0"}) as resp:
                assert resp.headers["Content-Type"].startswith("text/event-stream")
                block: dict[str, str] = {}
                while len(out) < n:
                    line = (await asyncio.wait_for(resp.content.readline(), 10)).decode().rstrip("\n")
                    if line:
                        key, _, value = line.partition(": ")
                        block[key] = value
                    elif block:
                        out.append((int(block["id"]), block["event"], json.loads(block["data"])))
                        block = {}
            return out

        first = await read_sse(10)
        publish_mix(api, 10, start=30)
        second = await read_sse(30, **{"Last-Event-ID": str(first[-1][0])})
        seqs = [s for s, _, _ in first + second]
        assert seqs == [r.seq for r in stored(api)]
        assert all(event == data["type"] and seq == data["seq"] for seq, event, data in first + second)


async def test_agent_sees_only_own_events_and_filters_apply(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        publish_mix(api, 90)
        await api.writer.flush()
        rows = stored(api)
        own = [r.seq for r in rows if r.agent_id == "agent1"]
        got = await ws_read(http, api, "agent", len(own), after="0")
        assert [e["seq"] for e in got] == own
        assert {e["agent_id"] for e in got} == {"agent1"}
        # qa may not see agent events at all
        calls = [r.seq for r in rows if r.type.startswith("call.")]
        got = await ws_read(http, api, "qa", len(calls), after="0")
        assert [e["seq"] for e in got] == calls
        # explicit filters: type family and queue
        cards = [r.seq for r in rows if r.queue == "cards"]
        got = await ws_read(http, api, "supervisor", len(cards), after="0", type="call.*", queue="cards")
        assert [e["seq"] for e in got] == cards
        agent2 = [r.seq for r in rows if r.type == "agent.state_changed" and r.agent_id == "agent2"]
        got = await ws_read(http, api, "admin", len(agent2), after="0", type="agent.state_changed", agent="agent2")
        assert [e["seq"] for e in got] == agent2
        # an agent asking for someone else's events gets nothing of them: the role bound wins
        publish_mix(api, 3, start=90)  # 90 → agent1 ready event is the next one the agent may see
        got = await ws_read(http, api, "agent", 1, after=str(own[-1]), agent="agent1,agent2")
        assert got[0]["agent_id"] == "agent1"


async def test_stream_rejects_bad_offsets(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http, \
            http.get(api.url + "/api/v1/events", params={"after": "x"}, headers=api.auth("qa")) as resp:
        assert resp.status == 400 and "after" in (await resp.json())["error"]


async def test_schemas_published_for_every_event_type(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http, \
            http.get(api.url + "/api/v1/events/schemas", headers=api.auth("agent")) as resp:
        doc = await resp.json()
    assert set(doc["payloads"]) == {f"{t}@{cls.VERSION}" for t, cls in PAYLOADS.items()}
    assert doc["envelope"]["properties"]["type"]["type"] == "string"


async def test_events_tail_cli_prints_filtered_events(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api:
        publish_mix(api, 12)
        await api.writer.flush()
        config = tmp_path / "ccengine.yaml"
        config.write_text("pbx: {ami: {username: u, secret: s}, ari: {username: u, password: p}}\n"
                          f"database: {{url: 'sqlite:///{tmp_path / 'api.db'}'}}\n")
        expected = [r.seq for r in stored(api) if r.type == "agent.state_changed"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ccengine.cli.main", "-c", str(config), "events", "tail", "--url", api.url,
            "--filter", "type=agent.*", "--after", "0", "--count", str(len(expected)),
            env={**os.environ, "CCENGINE_TOKEN": api.tokens["supervisor"]},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err
        lines = [json.loads(line) for line in out.decode().splitlines()]
        assert [e["seq"] for e in lines] == expected


def test_migration_0004_on_sqlite_and_postgresql(tmp_path: Path, postgres_url: str) -> None:
    for url in (f"sqlite:///{tmp_path / 'm.db'}", postgres_url):
        upgrade(url)
        engine = create_engine(url)
        tables = set(inspect(engine).get_table_names())
        assert {"audit_log", "api_users", "api_tokens", "api_approvals", "api_webhooks",
                "api_webhook_dead_letters"} <= tables
        from ccengine.audit.chain import AuditTrail

        AuditTrail(engine).append("test", "probe")
        try:
            with engine.begin() as conn:
                conn.execute(text("UPDATE audit_log SET actor = 'x'"))
        except Exception as exc:
            assert "append-only" in str(exc)
        else:
            raise AssertionError(f"audit_log accepted an UPDATE on {url}")
        command.downgrade(alembic_config(url), "0003")
        assert "api_users" not in set(inspect(engine).get_table_names())
        # an audit table made earlier by `recordings export --db-url` is adopted, not re-created
        AuditTrail(engine).create_schema()
        AuditTrail(engine).append("early", "probe")
        upgrade(url)
        assert [e.actor for e in AuditTrail(engine).entries()] == ["early"]
        engine.dispose()


async def test_slow_subscriber_is_cut_off_and_resumes_without_loss(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket that does not drain refuses direct writes (here every one: the limit is below an
    empty buffer), so batches wait in the queue, which cuts the subscriber off when full."""
    monkeypatch.setattr(events_http, "SINK_BUFFER_BYTES", -1)
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        api.ctx.hub.subscriber_queue = 5
        ws = await http.ws_connect(api.url + "/api/v1/events/ws", headers=api.auth("admin"))
        await asyncio.sleep(0.1)
        publish_mix(api, 3)  # fits
        await api.writer.flush()
        publish_mix(api, 6, start=3)  # one commit of more than the subscriber may have waiting
        await api.writer.flush()
        got: list[int] = []
        while True:
            msg = await asyncio.wait_for(ws.receive(), 10)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            got += [json.loads(line)["seq"] for line in msg.data.split("\n")]
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4008, msg
        assert len(got) == 3
        assert msg.extra == f"subscriber fell behind; resume after {got[-1]}"
        api.ctx.hub.subscriber_queue = 1000
        rest = await ws_read(http, api, "admin", 6, after=str(got[-1]))
        assert got + [e["seq"] for e in rest] == [r.seq for r in stored(api)]


async def test_live_and_replayed_frames_are_identical(tmp_path: Path) -> None:
    async with running_api(tmp_path) as api, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(api.url + "/api/v1/events/ws", headers=api.auth("admin"))
        await asyncio.sleep(0.1)
        publish_mix(api, 10)
        live: list[str] = []
        while len(live) < 10:
            live += (await asyncio.wait_for(ws.receive(), 10)).data.split("\n")
        await ws.close()
        async with http.ws_connect(api.url + "/api/v1/events/ws", params={"after": "0"},
                                   headers=api.auth("admin")) as again:
            replayed: list[str] = []
            while len(replayed) < 10:
                replayed += (await asyncio.wait_for(again.receive(), 10)).data.split("\n")
        assert live == replayed
        assert Event.model_validate({k: v for k, v in json.loads(live[0]).items() if k != "seq"}).type


async def test_direct_and_queued_batches_keep_the_order(tmp_path: Path) -> None:
    """A sink that refuses now and then (a socket not drained yet): what it refused waits in the
    queue and nothing goes directly until the queue is drained, so the client gets every seq once,
    in order, whichever way each batch travelled."""
    db = create_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    hub = EventHub(db)
    received: list[int] = []
    answers = iter([False, True, True, False] + [True] * 100)  # the 1st and 4th offers are refused

    def sink(batch: Batch) -> bool:
        if next(answers):
            received.extend(item.seq for item in batch)
            return True
        return False

    def commit(first: int, n: int) -> None:
        hub.publish([StreamItem(seq, "call.announced", None, "general", "c", f'{{"seq":{seq}}}')
                     for seq in range(first, first + n)])

    async def read() -> None:
        async for batch in hub.batches(lambda _item: True, sink=sink):
            received.extend(item.seq for item in batch)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.01)
    seq = 1
    for k, n in enumerate((3, 2, 4, 1, 5, 2, 3, 1)):
        commit(seq, n)
        seq += n
        if k in (1, 4, 7):  # the reader drains its queue only now and then
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    hub.close()
    await reader
    assert received == list(range(1, seq))
    db.dispose()
