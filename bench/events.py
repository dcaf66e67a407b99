"""Event stream fan-out benchmark: ccengine's WebSocket stream vs. a bare aiohttp WebSocket broadcast.

100 WebSocket subscribers follow a stream of events published at 5,000 events/s for 10 s.
They run in their own process(es) (``--subscriber-processes``) and are the same cheap
raw-protocol clients for both sides (bench/ws_subscribers.py: no decoding, no task wake-up
per message), so the server is what is measured; their CPU time is printed to show it.

* ccengine: events are published on the engine's bus, stored by the real store writer in
  SQLite (group commit: what waited during one commit is the next batch; WAL checkpoints
  in the background, ccengine/store/checkpoint.py), handed to the
  event hub after commit and sent by the real API server (token auth, role filter, resume offsets; plain HTTP on
  loopback unless --tls). Two latencies: publish -> subscriber (end to end, what a client
  experiences), and commit -> subscriber (the stream's own fan-out).
* baseline: a bare aiohttp WebSocket server that sends the same JSON lines to the same
  100 subscribers as they are published (each 10 ms tick encoded once, one frame per
  subscriber): no store, no auth, no filters.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from aiohttp import WSMsgType, web

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

SUBSCRIBERS = Path(__file__).resolve().parent / "ws_subscribers.py"
TICK = 0.01  # publisher tick: 50 events per tick at 5,000/s; the baseline sends each tick as one message


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


@dataclass
class Subscribers:
    """The subscriber processes of one run (bench/ws_subscribers.py)."""

    procs: list[asyncio.subprocess.Process]
    outs: list[Path]

    @classmethod
    async def start(cls, url: str, n: int, processes: int, expected: int, tmp: Path, name: str,
                    headers: dict[str, str]) -> Subscribers:
        procs, outs = [], []
        for k in range(processes):
            first, count = k * n // processes, (k + 1) * n // processes - k * n // processes
            out = tmp / f"{name}-{k}.npy"
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(SUBSCRIBERS), url, str(count), str(expected), str(out), json.dumps(headers),
                str(first), stdout=subprocess.PIPE)
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert line.strip() == b"ready", line
            procs.append(proc)
            outs.append(out)
        return cls(procs, outs)

    async def results(self) -> tuple[np.ndarray, float]:
        """Every receipt, and the subscribers' CPU seconds."""
        cpu = 0.0
        for proc in self.procs:
            assert proc.stdout is not None
            tail = (await proc.stdout.read()).split()
            await proc.wait()
            cpu += float(tail[tail.index(b"cpu") + 1])
        return np.concatenate([np.load(out) for out in self.outs]), cpu


async def run_baseline(n: int, rate: int, seconds: float, tmp: Path, processes: int) -> dict[str, float]:
    """The floor: each tick's events joined and encoded once, then one frame per subscriber."""
    clients: list[web.WebSocketResponse] = []
    total = int(rate * seconds)
    publish_ns = np.zeros(total + 2, dtype=np.int64)
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
    subscribers = await Subscribers.start(f"http://127.0.0.1:{port}/ws", n, processes, total, tmp, "baseline", {})

    def publish(i: int) -> None:
        seq = i + 1
        publish_ns[seq] = time.monotonic_ns()
        pending.append(frame(seq, event(i).model_dump(mode="json")))

    async def send() -> None:
        data = "\n".join(pending).encode()
        pending.clear()
        for ws in clients:
            await ws.send_frame(data, WSMsgType.TEXT)

    t0, cpu0 = time.monotonic_ns(), time.process_time()
    await pace(rate, seconds, publish, send)
    records, subscribers_cpu = await subscribers.results()
    server_cpu = time.process_time() - cpu0
    await runner.cleanup()
    return analyse(records, publish_ns, None, t0, total, n) | {"server_cpu_s": server_cpu,
                                                               "subscribers_cpu_s": subscribers_cpu}


async def run_ccengine(n: int, rate: int, seconds: float, tmp: Path, processes: int, tls: bool,
                       linger: float, min_batch: int) -> dict[str, float]:
    url = f"sqlite:///{tmp / 'bench.db'}"
    upgrade(url)
    db = make_engine(url)
    bus = EventBus()
    writer = StoreWriter(db, bus, linger=linger, min_batch=min_batch)
    hub = EventHub(db)
    total = int(rate * seconds)
    publish_ns = np.zeros(total + 2, dtype=np.int64)
    commit_ns = np.zeros(total + 2, dtype=np.int64)
    by_id: dict[str, int] = {}
    commits = [0]

    def committed(stored: list[tuple[int, Event]]) -> None:
        now = time.monotonic_ns()
        commits[0] += 1
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
    scheme = "https" if tls else "http"
    subscribers = await Subscribers.start(f"{scheme}://127.0.0.1:{port}/api/v1/events/ws", n, processes, total,
                                          tmp, "ccengine", {"Authorization": f"Bearer {token}"})

    def publish(i: int) -> None:
        e = event(i)
        by_id[e.id] = time.monotonic_ns()
        bus.publish(e)

    t0, cpu0 = time.monotonic_ns(), time.process_time()
    await pace(rate, seconds, publish)
    records, subscribers_cpu = await subscribers.results()
    server_cpu = time.process_time() - cpu0
    hub.close()
    await runner.cleanup()
    await writer.close()
    db.dispose()
    stored = (commit_ns[1:total + 1] - publish_ns[1:total + 1]) / 1e6
    return analyse(records, publish_ns, commit_ns, t0, total, n) | {
        "server_cpu_s": server_cpu, "subscribers_cpu_s": subscribers_cpu, "commits": float(commits[0]),
        "store_p50_ms": float(np.percentile(stored, 50)), "store_p99_ms": float(np.percentile(stored, 99))}


def analyse(records: np.ndarray, publish_ns: np.ndarray, commit_ns: np.ndarray | None, t0: int, total: int,
            n: int) -> dict[str, float]:
    clients, first, last, recv = records.T
    counts = last - first + 1
    seqs = np.repeat(first - np.cumsum(np.r_[0, counts[:-1]]), counts) + np.arange(counts.sum())
    recv_each = np.repeat(recv, counts)
    client_each = np.repeat(clients, counts)
    latency = (recv_each - publish_ns[seqs]) / 1e6
    p50, p99, p999 = np.percentile(latency, [50, 99, 99.9])
    result = {"delivered": float(len(seqs)), "expected": float(total * n), "p50_ms": float(p50),
              "p99_ms": float(p99), "p999_ms": float(p999), "max_ms": float(latency.max())}
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


def show(name: str, r: dict[str, float], total: int) -> None:
    print(f"{name:<9} delivered {int(r['delivered']):>9,}/{int(r['expected']):,} "
          f"{'complete, in order' if r['complete_in_order'] else 'INCOMPLETE/OUT OF ORDER'}; "
          f"publish->subscriber p50={r['p50_ms']:6.1f} p99={r['p99_ms']:6.1f} p99.9={r['p999_ms']:6.1f} "
          f"max={r['max_ms']:6.1f} ms; {r['events_per_s']:,.0f} events/s per subscriber")
    parts = [f"server CPU {r['server_cpu_s']:.1f} s ({r['server_cpu_s'] / total * 1e6:.0f} us/event)",
             f"subscribers' CPU {r['subscribers_cpu_s']:.1f} s"]
    if "fanout_p50_ms" in r:
        parts = [f"{int(r['commits'])} commits; publish->commit p50={r['store_p50_ms']:.1f} "
                 f"p99={r['store_p99_ms']:.1f} ms; commit->subscriber p50={r['fanout_p50_ms']:.1f} "
                 f"p99={r['fanout_p99_ms']:.1f} ms", *parts]
    print(" " * 10 + "; ".join(parts))


async def bench(args: argparse.Namespace) -> None:
    total = int(args.rate * args.seconds)
    with tempfile.TemporaryDirectory(prefix="ccengine-bench-events-") as tmp:
        print(f"{args.subscribers} subscribers in {args.subscriber_processes} process(es), {args.rate:,} events/s "
              f"for {args.seconds:.0f} s ({total:,} events each); store writer linger {args.linger * 1000:.0f} ms "
              f"or {args.min_batch} events; "
              f"TLS {'on' if args.tls else 'off'}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        base = await run_baseline(args.subscribers, args.rate, args.seconds, Path(tmp), args.subscriber_processes)
        show("baseline", base, total)
        ours = await run_ccengine(args.subscribers, args.rate, args.seconds, Path(tmp), args.subscriber_processes,
                                  args.tls, args.linger, args.min_batch)
        show("ccengine", ours, total)
        print(f"ratio ccengine/baseline: p50 {ours['p50_ms'] / base['p50_ms']:.1f}x, "
              f"p99 {ours['p99_ms'] / base['p99_ms']:.1f}x, p99.9 {ours['p999_ms'] / base['p999_ms']:.1f}x, "
              f"events/s {ours['events_per_s'] / base['events_per_s']:.2f}x, "
              f"server CPU {ours['server_cpu_s'] / base['server_cpu_s']:.1f}x")
        ok = ours["p99_ms"] <= 50 and ours["complete_in_order"]
        print(f"target (p99 <= 50 ms end to end, nothing lost): {'met' if ok else 'NOT met'} "
              f"(baseline p99 {base['p99_ms']:.1f} ms); load average {os.getloadavg()[0]:.1f} after the run")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--linger", type=float, default=0.0,
                        help="store writer linger, s (the engine's database.write_linger, default 0: group commit)")
    parser.add_argument("--min-batch", type=int, default=50,
                        help="events that end the linger at once (database.write_min_batch, default 50)")
    parser.add_argument("--subscriber-processes", type=int, default=1,
                        help="processes the subscribers are spread over (one per spare core)")
    parser.add_argument("--tls", action="store_true")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
