"""AgentLines against a recording stand-in for the PBX: dial, hold, put through, lose, adopt."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ari_apps.lines import AgentLines
from ccengine.acd.definitions import load_queue_config
from ccengine.acd.service import Acd
from ccengine.core.events import Event
from ccengine.pbx.protocol import BridgeInfo, ChannelInfo, OriginateRequest, PbxSnapshot

QUEUES = """
version: 1
skills: [{id: general}]
queues:
  - {id: general, required_skills: {general: 1}}
agents:
  - {id: lined, name: On a line, skills: {general: 5}, connection: persistent}
  - {id: rung, name: Rung, skills: {general: 5}}
"""


class Pbx:
    """Records the requests AgentLines makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        async def request(*args: Any, **_kw: Any) -> Any:
            self.calls.append((name, args[0] if len(args) == 1 else args))
        return request

    async def originate(self, request: OriginateRequest) -> str:
        self.calls.append(("originate", request))
        return request.channel_id or ""


async def settle(tasks: set[asyncio.Task[None]]) -> None:
    while tasks:
        await asyncio.gather(*list(tasks))


def make(tmp_path: Path) -> tuple[AgentLines, Acd, Pbx, list[Event], set[asyncio.Task[None]]]:
    path = tmp_path / "q.yaml"
    path.write_text(QUEUES)
    events: list[Event] = []
    acd = Acd(load_queue_config(path), events.append, rona_pause=None)
    pbx = Pbx()
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    lines = AgentLines(pbx, acd, spawn, agent_dial="PJSIP/{agent}@peer", ring_timeout=15,  # type: ignore[arg-type]
                       hold_music="quiet")
    return lines, acd, pbx, events, tasks


async def test_a_line_is_called_held_used_and_lost(tmp_path: Path) -> None:
    lines, acd, pbx, _events, tasks = make(tmp_path)
    acd.login("lined")
    await settle(tasks)
    [(kind, request)] = pbx.calls
    assert kind == "originate" and request.endpoint == "PJSIP/lined@peer" and request.app_args == ("line", "lined")
    channel = request.channel_id
    assert lines.take("lined", "c0") is None, "not answered yet"
    lines.on_answered(ChannelInfo(channel, "PJSIP/lined-1", "Up", app_args=("line", "lined")))
    await settle(tasks)
    hold = f"hold-{channel}"
    assert pbx.calls[1:] == [("create_bridge", hold), ("start_bridge_moh", (hold, "quiet")),
                             ("add_to_bridge", (hold, [channel]))]
    assert acd.agents["lined"].state == "ready"
    assert lines.take("lined", "c1") == channel and lines.take("lined", "c2") is None, "one call at a time"
    await lines.hold(channel)
    assert pbx.calls[-1] == ("add_to_bridge", (hold, [channel])) and lines.take("lined", "c3") == channel
    lines.lost(channel)
    await settle(tasks)
    assert "lined" not in acd.lines_up and pbx.calls[-1] == ("destroy_bridge", hold)
    assert (acd.agents["lined"].state, acd.agents["lined"].reason) == ("not_ready", "line_down")


async def test_reconcile_adopts_live_lines_and_hangs_up_strays(tmp_path: Path) -> None:
    lines, acd, pbx, _events, tasks = make(tmp_path)
    live = ChannelInfo("line-a", "PJSIP/lined-7", "Up", app_args=("line", "lined"))
    stray = ChannelInfo("line-b", "PJSIP/rung-8", "Up", app_args=("line", "rung"))  # not a persistent agent
    snapshot = PbxSnapshot((live, stray), (BridgeInfo("hold-line-a", ("line-a",)),), datetime.now(UTC))
    kept = await lines.reconcile(snapshot, {})
    await settle(tasks)
    assert kept == {"line-a"} and "lined" in acd.lines_up
    assert ("hangup", "line-b") in pbx.calls and ("watch", (["line-a"], ["hold-line-a"])) in pbx.calls
    assert not any(kind == "add_to_bridge" for kind, _ in pbx.calls), "already in its holding bridge"
    acd.login("lined")
    assert acd.agents["lined"].state == "ready" and not any(kind == "originate" for kind, _ in pbx.calls)
    gone = PbxSnapshot((), (), datetime.now(UTC))
    assert await lines.reconcile(gone, {}) == set()
    assert (acd.agents["lined"].state, acd.agents["lined"].reason) == ("not_ready", "line_down")
