"""Time from queue entry to the agent's phone ringing: ccengine's ACD against app_queue.

Both run on the same lab PBX, in the same run, with the same 20 softphones
(agent1..agent20, one PJSIP endpoint each), the same traffic (200 calls) and
the same talk times. app_queue is configured as equivalently as it allows:
strategy leastrecent (longest idle), ringinuse=no, retry 1 s, no wrap-up,
no announcements (config/asterisk/pbx/queues.conf, reached by dialing 200).

Measured on the host's clock, each instant as it happened (the engine's event times; the
switches' AMI event timestamps, manager.conf timestampevents):
- queue entry: ccengine's ``call.queued`` event; app_queue's AMI QueueCallerJoin;
- ringing: the INVITE reaching the agent's softphone (AMI Newchannel on `peer`).

Two load points by default: 4 calls/s leaves agents idle (pure dispatch
latency: both systems create the same PJSIP channel, so the gap is the cost of
one ARI request), 8 calls/s keeps all 20 agents busy and callers waiting (the
ACD's reaction when an agent frees up: app_queue polls every ``retry``
seconds, ccengine offers at once).

Persistent lines (``--lines-rate``, default 4 calls/s; 0 skips it): the same 20
agents sit on open lines - ccengine's ``connection: persistent`` agents against
app_queue's own equivalent, app_agent_pool (agents logged in with AgentLogin,
queue bench_agents reaching them through AgentRequest; pbx agents.conf,
queues.conf, pbx.conf extension 201). Nobody rings: what is measured is queue
entry (as above) to the agent connected to the caller, for both systems from the
switch's AMI bridge events on this process's clock - the first moment the
caller's bridge holds the agent's channel, or a Local channel whose other half
is bridged with it (app_agent_pool before Local channel optimisation). Callers
hang up after ``--lines-talk`` seconds; the agents never do. app_agent_pool
plays its alert (``custom_beep``) to the agent *before* it joins the caller, so
the lab sets it empty: otherwise the 0.44 s of Asterisk's ``beep`` would be
measured, not dispatch. ccengine plays its zip tone as the call is put through.

Run after `ccengine lab up`:  .venv/bin/python bench/time_to_agent.py [--calls 200 --rates 4,8 --lines-rate 4]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ccengine.config import Settings, load_settings
from ccengine.lab.engine_process import spawn_engine, write_engine_config
from ccengine.lab.measure import percentile
from ccengine.lab.queues import write_general_queue
from ccengine.lab.traffic import Customer, PeerDriver
from ccengine.pbx.asterisk.ami import AmiClient
from ccengine.store.database import make_engine
from ccengine.store.schema import AgentRow, CallRow, EventRow

AGENTS = 20


def happened(event: dict[str, object]) -> float:
    """When the switch says an AMI event happened (manager.conf timestampevents), not when this
    process read it: AMI delivery and this process's scheduling stay out of every figure."""
    stamp = event.get("Timestamp")
    return float(str(stamp)) if stamp else time.time()


class RingWatch:
    """Wall-clock time at which each caller's call first rang an agent phone on `peer`."""

    def __init__(self, peer: PeerDriver):
        self.peer = peer
        self.rang: dict[str, float] = {}
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            event = await self.peer.ami.queue.get()
            if event.get("Event") == "Newchannel" and str(event.get("Exten", "")).startswith("agent"):
                self.rang.setdefault(str(event.get("CallerIDNum", "")), happened(event))

    def close(self) -> None:
        self._task.cancel()


def customers(patience: float) -> Callable[[str, str], Customer]:
    """Callers who press 1 (ccengine's menu) and hang up ``patience`` seconds later."""
    return lambda number, dialed: Customer(number=number, dialed=dialed, digit="1", prompt_wait=0.3,
                                           patience=patience)


async def drive(peer: PeerDriver, numbers: list[str], dialed: str, rate: float,
                customer: Callable[[str, str], Customer], done: Callable[[], bool], limit: float) -> None:
    start = time.monotonic()
    for i, number in enumerate(numbers):
        await peer.call(customer(number, dialed))
        await asyncio.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not done():  # noqa: ASYNC110 (polls a database)
        await asyncio.sleep(0.5)


class DialWatch:
    """When the switch created each caller's agent channel (AMI Newchannel of ``PJSIP/agentN-…``
    on `pbx`; the channel is tied to its caller by the DialBegin that follows: the calling
    channel's caller id for app_queue, the dialed leg's caller id for an ARI originate).
    This splits queue entry → agent ringing into the queue's own dispatch (up to the agent's
    channel existing) and the rest - the switch setting up the PJSIP call and the INVITE
    reaching the phone - which is the same work for both systems and no controller can shorten."""

    def __init__(self) -> None:
        self.created: dict[str, float] = {}  # caller number → the agent channel's creation
        self._born: dict[str, float] = {}  # agent channel name → its creation

    def see(self, event: Mapping[str, str]) -> None:
        name, channel = event.get("Event"), str(event.get("Channel", ""))
        if name == "Newchannel" and channel.startswith("PJSIP/agent"):
            self._born[channel] = happened(event)
        elif name == "DialBegin" and str(event.get("DestChannel", "")).startswith("PJSIP/agent"):
            number = str(event.get("CallerIDNum") or event.get("DestCallerIDNum") or "")
            born = self._born.pop(str(event.get("DestChannel")), None)
            if born is not None:
                self.created.setdefault(number, born)


@dataclass
class Split:
    """Per call: queue entry → agent channel created (the queue's dispatch) and from there to the
    INVITE at the phone."""

    total: list[float]
    dispatch: list[float]
    sip_leg: list[float]

    @classmethod
    def of(cls, numbers: list[str], entered: dict[str, float], dialed: dict[str, float],
           rang: dict[str, float]) -> Split:
        whole = [n for n in numbers if n in entered and n in rang]
        parts = [n for n in whole if n in dialed]
        return cls([rang[n] - entered[n] for n in whole], [dialed[n] - entered[n] for n in parts],
                   [rang[n] - dialed[n] for n in parts])


class ConnectWatch:
    """Wall-clock time at which each caller first had a media path to an agent's channel, from
    the switch's AMI bridge events: the caller's bridge holds the agent's channel (ccengine's
    line ``PJSIP/agentN-…``; app_agent_pool's logged-in call, caller id ``agentN``), or a Local
    channel whose other half is bridged with it."""

    def __init__(self, ami: AmiClient, numbers: list[str]):
        self.ami = ami
        self.numbers = set(numbers)
        self.connected: dict[str, float] = {}
        self.joined: dict[str, float] = {}  # app_queue's QueueCallerJoin
        self.left: set[str] = set()
        self.logged_in: set[str] = set()  # app_agent_pool agents
        self._bridge_of: dict[str, str] = {}
        self._members: dict[str, set[str]] = {}
        self._number_of: dict[str, str] = {}
        self._agents: set[str] = set()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            event = await self.ami.queue.get()
            name, channel = event.get("Event"), str(event.get("Channel", ""))
            number = str(event.get("CallerIDNum", ""))
            if name == "BridgeEnter":
                bridge = str(event.get("BridgeUniqueid", ""))
                self._bridge_of[channel] = bridge
                self._members.setdefault(bridge, set()).add(channel)
                if channel.startswith("Local/"):
                    pass  # a hop between the two, neither party (app_agent_pool's AgentRequest)
                elif number in self.numbers:
                    self._number_of[channel] = number
                elif channel.startswith("PJSIP/agent") or number.startswith("agent"):
                    self._agents.add(channel)
                self._check(happened(event))
            elif name in ("BridgeLeave", "Hangup"):
                self._members.get(self._bridge_of.pop(channel, ""), set()).discard(channel)
            elif name == "QueueCallerJoin":
                self.joined.setdefault(number, happened(event))
            elif name in ("AgentComplete", "QueueCallerAbandon"):
                self.left.add(number)
            elif name == "AgentLogin":
                self.logged_in.add(str(event.get("Agent", "")))

    def _reaches_agent(self, bridge: str) -> bool:
        for channel in self._members.get(bridge, ()):
            if channel in self._agents:
                return True
            if channel.startswith("Local/") and channel.endswith(";1"):
                other = self._bridge_of.get(channel[:-1] + "2")
                if other and self._members.get(other, set()) & self._agents:
                    return True
        return False

    def _check(self, now: float) -> None:
        for channel, number in self._number_of.items():
            if number not in self.connected and channel in self._bridge_of \
                    and self._reaches_agent(self._bridge_of[channel]):
                self.connected[number] = now

    def close(self) -> None:
        self._task.cancel()


async def pbx_ami(settings: Settings) -> AmiClient:
    ami = settings.pbx.ami
    client = AmiClient(ami.host, ami.port, ami.username, ami.secret, events="call,agent")

    async def ignore(_up: bool, _reason: str) -> None:
        return None

    await client.start(ignore)
    return client


def start_engine(workdir: Path, connection: str) -> tuple[Engine, subprocess.Popen[bytes]]:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    queues = write_general_queue(workdir / "queues.yaml", AGENTS, wrap_up=0, connection=connection)
    path = write_engine_config(workdir, queues=queues, flow={"menu": {"1": "general"}})
    return make_engine(load_settings(path).database.url), spawn_engine(path, workdir / "engine.log")


def queued_at(db: Engine) -> dict[str, float]:
    """Caller number → wall-clock time of the call's first ``call.queued`` event."""
    with Session(db) as s:
        callers = {r.id: r.caller_number for r in s.scalars(select(CallRow))}
    queued: dict[str, float] = {}
    for event in _events(db, "call.queued"):
        number = callers.get(event.call_id or "")
        if number and number not in queued:
            at = event.occurred_at
            queued[number] = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    return queued


async def run_ccengine(settings: Settings, numbers: list[str], rate: float) -> Split:
    workdir = ROOT / "var" / "bench" / "time_to_agent"
    db, proc = start_engine(workdir, "per_call")
    client = await pbx_ami(settings)
    dials = DialWatch()

    async def watch_pbx() -> None:
        while True:
            dials.see(await client.queue.get())

    pbx_task = asyncio.create_task(watch_pbx())

    def rows() -> list[CallRow]:
        try:
            with Session(db) as s:
                return list(s.scalars(select(CallRow)))
        except Exception:
            return []

    try:
        while not any(True for _ in _events(db, "engine.resynced")):
            if proc.poll() is not None:
                raise SystemExit(f"engine failed; see {workdir / 'engine.log'}")
            await asyncio.sleep(0.2)
        async with PeerDriver(settings) as peer:
            await peer.agent_talk_time(2, 3)
            watch = RingWatch(peer)
            await drive(peer, numbers, "100", rate, customers(120),
                        lambda: len(rows()) >= len(numbers) and all(r.ended_at for r in rows()), 180)
            watch.close()
    finally:
        proc.terminate()
        proc.wait(15)
        pbx_task.cancel()
        await client.close()
    return Split.of(numbers, queued_at(db), dials.created, watch.rang)


async def run_ccengine_lines(settings: Settings, numbers: list[str], rate: float, talk: float) -> list[float]:
    """ccengine with every agent on a persistent line (called once, before the traffic)."""
    workdir = ROOT / "var" / "bench" / "time_to_agent_lines"
    db, proc = start_engine(workdir, "persistent")

    def ended() -> bool:
        with Session(db) as s:
            rows = list(s.scalars(select(CallRow)))
        return len(rows) >= len(numbers) and all(r.ended_at for r in rows)

    def lines_up() -> bool:
        try:
            with Session(db) as s:
                return len(list(s.scalars(select(AgentRow).where(AgentRow.state == "ready")))) >= AGENTS
        except Exception:
            return False

    client = await pbx_ami(settings)
    try:
        deadline = time.monotonic() + 60
        while not lines_up():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the agents' lines did not come up; see {workdir / 'engine.log'}")
            await asyncio.sleep(0.2)
        watch = ConnectWatch(client, numbers)
        async with PeerDriver(settings) as peer:
            await drive(peer, numbers, "100", rate, customers(talk), ended, 180)
        watch.close()
    finally:
        proc.terminate()
        proc.wait(15)
        # a stopped engine leaves its lines for a successor to adopt: this run has none
        await client.action({"Action": "Hangup", "Channel": "/^PJSIP\\/agent[0-9]+-/"})
        await client.close()
    queued = queued_at(db)
    return [watch.connected[n] - queued[n] for n in numbers if n in watch.connected and n in queued]


async def run_agent_pool(settings: Settings, numbers: list[str], rate: float, talk: float) -> list[float]:
    """app_queue with app_agent_pool: the agents' phones log in once (AgentLogin) and stay on."""
    client = await pbx_ami(settings)
    watch = ConnectWatch(client, numbers)
    agents = [f"agent{i}" for i in range(1, AGENTS + 1)]
    try:
        async with PeerDriver(settings) as peer:
            for agent in agents:
                await peer.ami.action({"Action": "Originate", "Channel": "PJSIP/agentlogin@pbx",
                                       "CallerID": f"{agent} <{agent}>", "Application": "MusicOnHold",
                                       "Data": "agent", "Async": "true"})
            deadline = time.monotonic() + 60
            while len(watch.logged_in) < AGENTS:
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {len(watch.logged_in)} agents logged in to app_agent_pool")
                await asyncio.sleep(0.2)
            await asyncio.sleep(5)  # app_queue learns the agents' device states asynchronously
            await drive(peer, numbers, "201", rate, customers(talk), lambda: len(watch.left) >= len(numbers), 180)
    finally:
        watch.close()
        for agent in agents:
            await client.action({"Action": "AgentLogoff", "Agent": agent})
        await client.close()
    return [watch.connected[n] - watch.joined[n] for n in numbers if n in watch.connected and n in watch.joined]


def _events(db, kind: str) -> list[EventRow]:  # type: ignore[no-untyped-def]
    try:
        with Session(db) as s:
            return list(s.scalars(select(EventRow).where(EventRow.type == kind)))
    except Exception:
        return []


async def run_app_queue(settings: Settings, numbers: list[str], rate: float) -> Split:
    ami = settings.pbx.ami
    client = AmiClient(ami.host, ami.port, ami.username, ami.secret, events="agent,call")

    async def ignore(_up: bool, _reason: str) -> None:
        return None

    await client.start(ignore)
    joined: dict[str, float] = {}
    left: set[str] = set()

    dials = DialWatch()

    async def watch_pbx() -> None:
        while True:
            event = await client.queue.get()
            dials.see(event)
            name = event.get("Event")
            number = str(event.get("CallerIDNum", ""))
            if name == "QueueCallerJoin":
                joined.setdefault(number, happened(event))
            elif name in ("AgentComplete", "QueueCallerAbandon"):
                left.add(number)

    pbx_task = asyncio.create_task(watch_pbx())
    try:
        async with PeerDriver(settings) as peer:
            await peer.agent_talk_time(2, 3)
            watch = RingWatch(peer)
            await drive(peer, numbers, "200", rate, customers(120), lambda: len(left) >= len(numbers), 180)
            watch.close()
    finally:
        pbx_task.cancel()
        await client.close()
    return Split.of(numbers, joined, dials.created, watch.rang)


def report(name: str, values: list[float], total: int) -> float:
    median = statistics.median(values)
    print(f"  {name:<10} measured {len(values):3d}/{total}  median {median * 1000:7.1f} ms  "
          f"p90 {percentile(values, 90) * 1000:7.1f} ms  p99 {percentile(values, 99) * 1000:7.1f} ms")
    return median


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rates", default="4,8", help="comma-separated offered loads, calls per second")
    parser.add_argument("--lines-rate", type=float, default=4.0,
                        help="offered load of the persistent-line variant, calls per second (0: skip it)")
    parser.add_argument("--lines-talk", type=float, default=3.0, help="seconds a caller stays on a persistent line")
    args = parser.parse_args()
    settings = load_settings(ROOT / "config" / "ccengine.yaml")
    for n, rate in enumerate(float(r) for r in args.rates.split(",") if float(r) > 0):
        ours = await run_ccengine(settings, [f"556{n}1{i:03d}" for i in range(args.calls)], rate)
        await asyncio.sleep(3)
        theirs = await run_app_queue(settings, [f"556{n}2{i:03d}" for i in range(args.calls)], rate)
        print(f"time from queue entry to the agent's phone ringing ({args.calls} calls at {rate}/s, "
              f"{AGENTS} agents, talk 2-3 s):")
        a = report("ccengine", ours.total, args.calls)
        b = report("app_queue", theirs.total, args.calls)
        print(f"  ratio ccengine/app_queue (median): {a / b:.2f}x  (target <= 0.5x)")
        print("  of which queue entry -> the agent's channel created on pbx (the queue's own dispatch):")
        da = report("ccengine", ours.dispatch, args.calls)
        db = report("app_queue", theirs.dispatch, args.calls)
        print("  and agent channel created -> INVITE at the phone (the same switch + SIP work for both):")
        report("ccengine", ours.sip_leg, args.calls)
        leg = report("app_queue", theirs.sip_leg, args.calls)
        floor = leg / b
        print(f"  dispatch ratio (median): {da / db:.2f}x" + (
            f"; the SIP leg alone is {floor:.2f}x of app_queue's whole median: no controller's total can go "
            "below that ratio" if floor >= 0.05 else "; callers wait for agents: the SIP leg is no floor here"),
            flush=True)
        await asyncio.sleep(3)
    if args.lines_rate > 0:
        rate = args.lines_rate
        lines_ours = await run_ccengine_lines(settings, [f"55681{i:03d}" for i in range(args.calls)], rate,
                                              args.lines_talk)
        await asyncio.sleep(3)
        lines_theirs = await run_agent_pool(settings, [f"55682{i:03d}" for i in range(args.calls)], rate,
                                            args.lines_talk)
        print(f"persistent lines: time from queue entry to the agent connected to the caller ({args.calls} calls "
              f"at {rate}/s, {AGENTS} agents, callers stay {args.lines_talk:g} s):")
        a = report("ccengine", lines_ours, args.calls)
        b = report("agentpool", lines_theirs, args.calls)
        print(f"  ratio ccengine/app_agent_pool (median): {a / b:.2f}x, p99: "
              f"{percentile(lines_ours, 99) / percentile(lines_theirs, 99):.2f}x", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
