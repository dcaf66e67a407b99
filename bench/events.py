"""Event stream fan-out benchmark: ccengine's WebSocket stream vs. a bare aiohttp WebSocket broadcast.

100 WebSocket subscribers (one separate process, so receiving does not share the server's
core) follow a stream of events published at 5,000 events/s for 10 s.

* ccengine: events are published on the engine's bus, stored by the real store writer in
  SQLite (its 50 ms batching linger included), handed to the event hub after commit and
  sent by the real API server (token auth, role filter, resume offsets; plain HTTP on
  loopback unless --tls). Two latencies: publish -> subscriber (end to end, what a client
  experiences), and commit -> subscriber (the stream's own fan-out).
* baseline: a bare aiohttp WebSocket server that sends the same JSON lines to the same
  100 subscribers as they are published: no store, no auth, no filters.

Latency is measured per event and per subscriber with CLOCK_MONOTONIC (system-wide on
Linux, so comparable across the two processes). Sustained events/s is what each subscriber
received divided by the time from the first publish to its last receipt.
Run: ``.venv/bin/python bench/events.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import numpy as np
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ccengine.api.context import ApiContext
from ccengine.api.server import build
from ccengine.api.settings import ApiSettings
from ccengine.api.stream import EventHub, frame
from ccengine.api.tls import lab_certificate, server_context
from ccengine.core.bus import EventBus
from ccengine.core.events import CallAnnounced, Event
from ccengine.store.database import make_engine, upgrade
from ccengine.store.writer import StoreWriter

TICK = 0.01  # publisher tick: 50 events per tick at 5,000/s; the baseline sends each tick as one message


# -- subscriber process --------------------------------------------------------------------------
async def subscribe(url: str, n: int, expected: int, out: Path, headers: dict[str, str]) -> None:
    """n clients; per message record (client, first seq, last seq, receive ns)."""
    records: list[tuple[int, int, int, int]] = []
    ssl = False

    async def client(i: int, http: aiohttp.ClientSession, ready: asyncio.Event, connected: list[int]) -> None:
        got = 0
        async with http.ws_connect(url, headers=headers, ssl=ssl, max_msg_size=0) as ws:
            connected[0] += 1
            if connected[0] == n:
                ready.set()
            async for msg in ws:
                now = time.monotonic_ns()
                data: str = msg.data
                first = int(data[7:data.index(",", 7)])
                tail = data.rfind("\n") + 1
                last = int(data[tail + 7:data.index(",", tail + 7)])
                records.append((i, first, last, now))
                got += data.count("\n") + 1
                if got >= expected:
                    return

    ready = asyncio.Event()
    connected = [0]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        tasks = [asyncio.create_task(client(i, http, ready, connected)) for i in range(n)]
        await ready.wait()
        print("ready", flush=True)
        _done, pending = await asyncio.wait(tasks, timeout=120)
        for task in pending:
            task.cancel()
    np.save(out, np.array(records, dtype=np.int64).reshape(-1, 4))


# -- publishers -------------------------------------------------------------------------------------
async def pace(rate: int, seconds: float, publish: Callable[[int], None],
               after_tick: Callable[[], Awaitable[None]] | None = None) -> None:
    """Publish ``rate`` events/s for ``seconds`` in ticks, against the clock (no drift)."""
    total = int(rate * seconds)
    per_tick = max(1, round(rate * TICK))
    start = time.monotonic()
    sent = 0
    while sent < total:
        for _ in range(min(per_tick, total - sent)):
            publish(sent)
            sent += 1
        if after_tick is not None:
            await after_tick()
        delay = start + sent / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


def event(i: int) -> Event:
    return Event.of(CallAnnounced(position=i % 50, estimated_wait_seconds=30.0), call_id=f"call-{i // 20:08d}",
                    queue="general")


async def start_subscribers(url: str, n: int, expected: int, out: Path,
                            headers: dict[str, str]) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--subscriber", url, str(n), str(expected), str(out), json.dumps(headers),
        stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.strip() == b"ready", line
    return proc


async def run_baseline(n: int, rate: int, seconds: float, tmp: Path) -> dict[str, float]:
    clients: list[web.WebSocketResponse] = []
    publish_ns = np.zeros(int(rate * seconds) + 2, dtype=np.int64)
    pending: list[str] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        clients.append(ws)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    out = tmp / "baseline.npy"
    proc = await start_subscribers(f"http://127.0.0.1:{port}/ws", n, int(rate * seconds), out, {})

    def publish(i: int) -> None:
        seq = i + 1
        publish_ns[seq] = time.monotonic_ns()
        pending.append(frame(seq, event(i).model_dump(mode="json")))

    async def send() -> None:
        text = "\n".join(pending)
        pending.clear()
        for ws in clients:
            await ws.send_str(text)

    t0 = time.monotonic_ns()
    await pace(rate, seconds, publish, send)
    await proc.wait()
    await runner.cleanup()
    return analyse(np.load(out), publish_ns, None, t0, int(rate * seconds), n)


async def run_ccengine(n: int, rate: int, seconds: float, tmp: Path, tls: bool, linger: float) -> dict[str, float]:
    url = f"sqlite:///{tmp / 'bench.db'}"
    upgrade(url)
    db = make_engine(url)
    bus = EventBus()
    writer = StoreWriter(db, bus, linger=linger)
    hub = EventHub(db)
    total = int(rate * seconds)
    publish_ns = np.zeros(total + 2, dtype=np.int64)
    commit_ns = np.zeros(total + 2, dtype=np.int64)
    by_id: dict[str, int] = {}

    def committed(stored: list[tuple[int, Event]]) -> None:
        now = time.monotonic_ns()
        for seq, e in stored:
            commit_ns[seq] = now
            publish_ns[seq] = by_id.pop(e.id)

    writer.committed.append(committed)
    writer.committed.append(hub.on_commit)
    ctx = ApiContext(ApiSettings(tls=tls, rate_burst=10_000), db, hub)
    ctx.users.add("bench", "supervisor")
    token = ctx.users.create_token("bench")
    runner = web.AppRunner(build(ctx), access_log=None)
    await runner.setup()
    ssl_context = server_context(*lab_certificate(tmp)) if tls else None
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    writer.start()
    out = tmp / "ccengine.npy"
    scheme = "https" if tls else "http"
    proc = await start_subscribers(f"{scheme}://127.0.0.1:{port}/api/v1/events/ws", n, total, out,
                                   {"Authorization": f"Bearer {token}"})

    def publish(i: int) -> None:
        e = event(i)
        by_id[e.id] = time.monotonic_ns()
        bus.publish(e)

    t0 = time.monotonic_ns()
    await pace(rate, seconds, publish)
    await proc.wait()
    hub.close()
    await runner.cleanup()
    await writer.close()
    db.dispose()
    return analyse(np.load(out), publish_ns, commit_ns, t0, total, n)


def analyse(records: np.ndarray, publish_ns: np.ndarray, commit_ns: np.ndarray | None, t0: int, total: int,
            n: int) -> dict[str, float]:
    clients, first, last, recv = records.T
    counts = last - first + 1
    seqs = np.repeat(first - np.cumsum(np.r_[0, counts[:-1]]), counts) + np.arange(counts.sum())
    recv_each = np.repeat(recv, counts)
    client_each = np.repeat(clients, counts)
    latency = (recv_each - publish_ns[seqs]) / 1e6
    result = {"delivered": float(len(seqs)), "expected": float(total * n),
              "p50_ms": float(np.percentile(latency, 50)), "p99_ms": float(np.percentile(latency, 99)),
              "max_ms": float(latency.max())}
    if commit_ns is not None:
        fan = (recv_each - commit_ns[seqs]) / 1e6
        result |= {"fanout_p50_ms": float(np.percentile(fan, 50)), "fanout_p99_ms": float(np.percentile(fan, 99))}
    rates = []
    for c in range(n):
        mine = recv_each[client_each == c]
        rates.append(len(mine) / ((mine.max() - t0) / 1e9))
    result["events_per_s"] = float(np.mean(rates))
    # every subscriber got every event exactly once, in order
    ordered = all(np.array_equal(seqs[client_each == c], np.arange(1, total + 1)) for c in range(n))
    result["complete_in_order"] = float(ordered)
    return result


def show(name: str, r: dict[str, float]) -> None:
    extra = (f"  fan-out (commit->client) p50={r['fanout_p50_ms']:6.1f} ms p99={r['fanout_p99_ms']:6.1f} ms"
             if "fanout_p50_ms" in r else "")
    print(f"{name:<10} delivered {int(r['delivered']):>9,}/{int(r['expected']):,} "
          f"{'complete, in order' if r['complete_in_order'] else 'INCOMPLETE/OUT OF ORDER'}  "
          f"p50={r['p50_ms']:6.1f} ms  p99={r['p99_ms']:6.1f} ms  max={r['max_ms']:6.1f} ms  "
          f"{r['events_per_s']:,.0f} events/s per subscriber{extra}")


async def bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="ccengine-bench-events-") as tmp:
        print(f"{args.subscribers} subscribers, {args.rate:,} events/s for {args.seconds:.0f} s "
              f"({int(args.rate * args.seconds):,} events each); store writer linger {args.linger * 1000:.0f} ms; "
              f"TLS {'on' if args.tls else 'off'}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        base = await run_baseline(args.subscribers, args.rate, args.seconds, Path(tmp))
        show("baseline", base)
        ours = await run_ccengine(args.subscribers, args.rate, args.seconds, Path(tmp), args.tls, args.linger)
        show("ccengine", ours)
        print(f"ratio ccengine/baseline: p50 {ours['p50_ms'] / base['p50_ms']:.1f}x, "
              f"p99 {ours['p99_ms'] / base['p99_ms']:.1f}x, "
              f"events/s {ours['events_per_s'] / base['events_per_s']:.2f}x")
        print(f"stream fan-out alone (commit->client) vs the bare broadcast (publish->client): "
              f"p50 {ours['fanout_p50_ms'] / base['p50_ms']:.1f}x, p99 {ours['fanout_p99_ms'] / base['p99_ms']:.1f}x")
        ok = ours["p99_ms"] <= 50 and ours["complete_in_order"]
        print(f"target (p99 <= 50 ms end to end, nothing lost): {'met' if ok else 'NOT met'}"
              f" (stream fan-out alone p99 {ours['fanout_p99_ms']:.1f} ms)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--subscriber":
        url, n, expected, out, headers = sys.argv[2:7]
        asyncio.run(subscribe(url, int(n), int(expected), Path(out), json.loads(headers)))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--linger", type=float, default=0.05, help="store writer linger (the engine's is 0.05)")
    parser.add_argument("--tls", action="store_true")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
