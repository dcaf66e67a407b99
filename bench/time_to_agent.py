"""Time from queue entry to the agent's phone ringing: ccengine's ACD against app_queue.

Both run on the same lab PBX, in the same run, with the same 20 softphones
(agent1..agent20, one PJSIP endpoint each), the same traffic (200 calls) and
the same talk times. app_queue is configured as equivalently as it allows:
strategy leastrecent (longest idle), ringinuse=no, retry 1 s, no wrap-up,
no announcements (config/asterisk/pbx/queues.conf, reached by dialing 200).

Measured on one clock by this process:
- queue entry: ccengine's ``call.queued`` event; app_queue's AMI QueueCallerJoin;
- ringing: the INVITE reaching the agent's softphone (AMI Newchannel on `peer`).

Two load points by default: 4 calls/s leaves agents idle (pure dispatch
latency: both systems create the same PJSIP channel, so the gap is the cost of
one ARI request), 8 calls/s keeps all 20 agents busy and callers waiting (the
ACD's reaction when an agent frees up: app_queue polls every ``retry``
seconds, ccengine offers at once).

Run after `ccengine lab up`:  .venv/bin/python bench/time_to_agent.py [--calls 200 --rates 4,8]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

from sqlalchemy import select
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
from ccengine.store.schema import CallRow, EventRow

AGENTS = 20


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
                self.rang.setdefault(str(event.get("CallerIDNum", "")), time.time())

    def close(self) -> None:
        self._task.cancel()


async def drive(peer: PeerDriver, numbers: list[str], dialed: str, rate: float,
                done: Callable[[], bool], limit: float) -> None:
    start = time.monotonic()
    for i, number in enumerate(numbers):
        await peer.call(Customer(number=number, dialed=dialed, digit="1", prompt_wait=0.3, patience=120))
        await asyncio.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not done():  # noqa: ASYNC110 (polls a database)
        await asyncio.sleep(0.5)


async def run_ccengine(settings: Settings, numbers: list[str], rate: float) -> list[float]:
    workdir = ROOT / "var" / "bench" / "time_to_agent"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    path = write_engine_config(workdir, queues=write_general_queue(workdir / "queues.yaml", AGENTS, wrap_up=0),
                               flow={"menu": {"1": "general"}})
    db = make_engine(load_settings(path).database.url)
    proc = spawn_engine(path, workdir / "engine.log")

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
            await drive(peer, numbers, "100", rate,
                        lambda: len(rows()) >= len(numbers) and all(r.ended_at for r in rows()), 180)
            watch.close()
    finally:
        proc.terminate()
        proc.wait(15)
    queued: dict[str, float] = {}
    callers = {r.id: r.caller_number for r in rows()}
    for event in _events(db, "call.queued"):
        number = callers.get(event.call_id or "")
        if number and number not in queued:
            at = event.occurred_at
            queued[number] = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    return [watch.rang[n] - queued[n] for n in numbers if n in watch.rang and n in queued]


def _events(db, kind: str) -> list[EventRow]:  # type: ignore[no-untyped-def]
    try:
        with Session(db) as s:
            return list(s.scalars(select(EventRow).where(EventRow.type == kind)))
    except Exception:
        return []


async def run_app_queue(settings: Settings, numbers: list[str], rate: float) -> list[float]:
    ami = settings.pbx.ami
    client = AmiClient(ami.host, ami.port, ami.username, ami.secret, events="agent")

    async def ignore(_up: bool, _reason: str) -> None:
        return None

    await client.start(ignore)
    joined: dict[str, float] = {}
    left: set[str] = set()

    async def watch_pbx() -> None:
        while True:
            event = await client.queue.get()
            name = event.get("Event")
            number = str(event.get("CallerIDNum", ""))
            if name == "QueueCallerJoin":
                joined.setdefault(number, time.time())
            elif name in ("AgentComplete", "QueueCallerAbandon"):
                left.add(number)

    pbx_task = asyncio.create_task(watch_pbx())
    try:
        async with PeerDriver(settings) as peer:
            await peer.agent_talk_time(2, 3)
            watch = RingWatch(peer)
            await drive(peer, numbers, "200", rate, lambda: len(left) >= len(numbers), 180)
            watch.close()
    finally:
        pbx_task.cancel()
        await client.close()
    return [watch.rang[n] - joined[n] for n in numbers if n in watch.rang and n in joined]


def report(name: str, values: list[float], total: int) -> float:
    median = statistics.median(values)
    print(f"  {name:<10} measured {len(values):3d}/{total}  median {median * 1000:7.1f} ms  "
          f"p90 {percentile(values, 90) * 1000:7.1f} ms  p99 {percentile(values, 99) * 1000:7.1f} ms")
    return median


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rates", default="4,8", help="comma-separated offered loads, calls per second")
    args = parser.parse_args()
    settings = load_settings(ROOT / "config" / "ccengine.yaml")
    for n, rate in enumerate(float(r) for r in args.rates.split(",")):
        ours = await run_ccengine(settings, [f"556{n}1{i:03d}" for i in range(args.calls)], rate)
        await asyncio.sleep(3)
        theirs = await run_app_queue(settings, [f"556{n}2{i:03d}" for i in range(args.calls)], rate)
        print(f"time from queue entry to the agent's phone ringing ({args.calls} calls at {rate}/s, "
              f"{AGENTS} agents, talk 2-3 s):")
        a = report("ccengine", ours, args.calls)
        b = report("app_queue", theirs, args.calls)
        print(f"  ratio ccengine/app_queue (median): {a / b:.2f}x  (target <= 0.5x)", flush=True)
        await asyncio.sleep(3)


if __name__ == "__main__":
    asyncio.run(main())
