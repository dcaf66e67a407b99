"""Call-setup benchmark on the lab PBX, plus the event path against panoramisk's raw parser.

1. Live: the engine runs as its own process; `peer` places calls through the
   minimal flow (prompt with barge-in → digit → FIFO → agent → bridge →
   recording). Reports setups/s, setup latency (digit to bridged) and the
   engine's CPU time per call, read from /proc.
2. In-process: events/s through the adapter's dispatch path (ARI JSON and AMI
   messages → typed events → consumer) against panoramisk's raw
   ``Message.from_line`` parse rate measured in the same run.

Run after `ccengine lab up`:  .venv/bin/python bench/call_setup.py [--calls 60 --rate 10 --agents 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from pathlib import Path

from panoramisk.message import Message
from sqlalchemy import select
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ccengine.config import load_settings
from ccengine.lab.engine_process import spawn_engine, write_engine_config
from ccengine.lab.measure import calls_settled, cpu_seconds, percentile
from ccengine.lab.queues import write_general_queue
from ccengine.lab.traffic import Customer, PeerDriver
from ccengine.pbx.asterisk.adapter import AsteriskAdapter
from ccengine.store.database import make_engine
from ccengine.store.schema import CallRow, EventRow


async def live(calls: int, rate: float, agents: int) -> None:
    workdir = ROOT / "var" / "bench" / "call_setup"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    path = write_engine_config(workdir, queues=write_general_queue(workdir / "queues.yaml", agents, wrap_up=0),
                               flow={"menu": {"1": "general"}})
    settings = load_settings(path)
    db = make_engine(settings.database.url)
    proc = spawn_engine(path, workdir / "engine.log")

    def count(kind: str) -> int:
        try:
            with Session(db) as s:
                return len(s.scalars(select(EventRow.seq).where(EventRow.type == kind)).all())
        except Exception:
            return 0

    try:
        while count("engine.resynced") == 0:
            if proc.poll() is not None:
                raise SystemExit("engine failed to start; see " + str(workdir / "engine.log"))
            await asyncio.sleep(0.1)
        async with PeerDriver(settings) as peer:
            await peer.agent_talk_time(2, 2)
            cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
            for i in range(calls):
                await peer.call(Customer(number=f"559{i:04d}", digit="1", prompt_wait=0.2, patience=120))
                await asyncio.sleep(1 / rate)
            await calls_settled(db, calls)
            wall, cpu = time.monotonic() - wall0, cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(15)
    with Session(db) as s:
        rows = s.scalars(select(CallRow)).all()
    bridged = [r for r in rows if r.bridged_at]
    setup = [(r.bridged_at - r.menu_at).total_seconds() for r in bridged if r.menu_at]
    first = min(r.offered_at for r in rows)
    last_bridge = max(r.bridged_at for r in bridged)
    span = (last_bridge - first).total_seconds()
    print(f"live: {len(rows)} calls offered, {len(bridged)} bridged to {agents} agents, "
          f"dispositions {sorted({r.disposition for r in rows})}")
    print(f"  setups/s (first offer → last bridge)  {len(bridged) / span:7.2f}  (offered at {rate:.1f}/s)")
    print(f"  setup latency digit→bridged           p50 {percentile(setup, 50) * 1000:6.0f} ms   "
          f"p99 {percentile(setup, 99) * 1000:6.0f} ms")
    print(f"  engine CPU                            {cpu:7.2f} s over {wall:.1f} s wall = "
          f"{cpu / len(rows) * 1000:6.1f} ms per call ({cpu / wall * 100:.0f}% of a core)")


def ari_messages(n: int) -> list[str]:
    channel = {"id": "pbx-1.1", "name": "PJSIP/peer-00000001", "state": "Up",
               "caller": {"name": "Customer", "number": "5550001"}, "connected": {"name": "", "number": ""},
               "dialplan": {"context": "from-peer", "exten": "100", "priority": 2, "app_name": "Stasis",
                            "app_data": "ccengine,inbound,100"},
               "creationtime": "2026-11-26T06:00:00.000+0000", "language": "en"}
    kinds = [
        {"type": "ChannelDtmfReceived", "digit": "1", "duration_ms": 100, "channel": channel},
        {"type": "ChannelStateChange", "channel": channel},
        {"type": "PlaybackFinished", "playback": {"id": "p1", "target_uri": "channel:pbx-1.1", "state": "done"}},
        {"type": "ChannelVarset", "variable": "X", "value": "1", "channel": channel},
    ]
    return [json.dumps({**kinds[i % len(kinds)], "timestamp": "2026-11-26T06:00:00.000+0000",
                        "application": "ccengine"}) for i in range(n)]


AMI_EVENT = ("Event: Newstate\r\nPrivilege: call,all\r\nChannel: PJSIP/peer-00000001\r\nChannelState: 6\r\n"
             "ChannelStateDesc: Up\r\nCallerIDNum: 5550001\r\nCallerIDName: Customer\r\nConnectedLineNum: <unknown>\r\n"
             "Language: en\r\nAccountCode: \r\nContext: from-peer\r\nExten: 100\r\nPriority: 2\r\n"
             "Uniqueid: pbx-1.1\r\nLinkedid: pbx-1.1")


async def event_path(n: int) -> None:
    settings = load_settings(ROOT / "config" / "ccengine.yaml")
    raw_ami = [AMI_EVENT] * n
    t = time.perf_counter()
    for line in raw_ami:
        Message.from_line(line)
    panoramisk_rate = n / (time.perf_counter() - t)

    adapter = AsteriskAdapter(settings.pbx)
    messages = ari_messages(n)

    async def consume(expected: int) -> None:
        seen = 0
        async for _ in adapter.events():
            seen += 1
            if seen == expected:
                return

    consumer = asyncio.create_task(consume(n * 3 // 4))  # ChannelVarset is ignored by design
    t = time.perf_counter()
    for text in messages:
        await adapter._on_ari(json.loads(text))
    await consumer
    ari_rate = n / (time.perf_counter() - t)

    mixmon = ("Event: MixMonitorStart\r\nPrivilege: call,all\r\nChannel: PJSIP/peer-00000001\r\n"
              "Uniqueid: pbx-1.1\r\nLinkedid: pbx-1.1")
    pump = asyncio.create_task(adapter._pump_ami())
    consumer = asyncio.create_task(consume(n))
    t = time.perf_counter()
    for _ in range(n):
        adapter.ami._enqueue(Message.from_line(mixmon))
        if adapter.ami.queue.qsize() > 1000:
            await asyncio.sleep(0)
    await consumer
    ami_rate = n / (time.perf_counter() - t)
    pump.cancel()
    print(f"event path ({n} events each):")
    print(f"  panoramisk Message.from_line (baseline)    {panoramisk_rate:10.0f} msg/s")
    print(f"  ARI JSON → typed event → consumer          {ari_rate:10.0f} ev/s  ({ari_rate / panoramisk_rate:.2f}x)")
    print(f"  AMI parse → bounded queue → typed → consumer {ami_rate:8.0f} ev/s  ({ami_rate / panoramisk_rate:.2f}x)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--skip-live", action="store_true")
    args = parser.parse_args()
    await event_path(args.events)
    if not args.skip_live:
        await live(args.calls, args.rate, args.agents)


if __name__ == "__main__":
    asyncio.run(main())
