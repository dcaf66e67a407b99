"""IVR benchmark: the pure interpreter alone, then concurrent callers walking a 4-level tree on the lab.

1. In-process: interpreter steps/s walking a 4-level tree with random input, against the cost
   of building the ``call.ivr_step`` event every step publishes (baseline, same run).
2. Live: callers on `peer` walk a 4-level menu tree with DTMF (each prompt barged into) and
   are served at the leaf; the same callers then walk a 1-level tree (baseline). Reports
   calls/s handled and the engine's CPU time per call and per IVR step (read from /proc), the
   marginal cost of a step being (CPU 4-level - CPU 1-level) / (steps 4-level - steps 1-level).

Run after `ccengine lab up`:  .venv/bin/python bench/ivr.py [--calls 40 --rate 8]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ccengine.config import load_settings
from ccengine.core.events import CallIvrStep, Event
from ccengine.ivr.interpreter import Collect, Context, Digits, Done, Play, Walk
from ccengine.ivr.model import tree_from_text
from ccengine.lab.engine_process import spawn_engine, write_engine_config
from ccengine.lab.measure import calls_settled, cpu_seconds
from ccengine.lab.queues import write_general_queue
from ccengine.lab.traffic import Customer, PeerDriver, dtmf_script
from ccengine.store.database import make_engine
from ccengine.store.schema import CallRow, EventRow


def menu_tree(levels: int, tree_id: str) -> str:
    """Each level: a menu of 4 choices; choice 1 goes one level deeper, the rest to served leaves."""
    nodes: dict[str, object] = {}
    for level in range(1, levels + 1):
        deeper = f"level{level + 1}" if level < levels else "served"
        nodes[f"level{level}"] = {
            "type": "menu", "prompt": f"Level {level}. Press one to go on.", "timeout": 4, "attempts": 2,
            "invalid": "Sorry.", "choices": {"1": deeper, "2": "served", "3": "mark", "4": "served"},
            "fallback": "served"}
    nodes["mark"] = {"type": "set", "vars": {"intent": "bench"}, "next": "served"}
    nodes["served"] = {"type": "hangup", "served": True, "say": "Goodbye."}
    return yaml.safe_dump({"version": 1, "id": tree_id, "start": "level1", "nodes": nodes}, sort_keys=False)


def pure(walks: int) -> None:
    tree = tree_from_text(menu_tree(4, "bench4"))
    rng = random.Random(7)
    scripts = [[rng.choice("1111234#9") for _ in range(12)] for _ in range(walks)]
    context = Context("5550000", lambda: datetime.now(UTC))
    steps = 0
    t = time.perf_counter()
    for script in scripts:
        walk = Walk(tree, context)
        action = walk.start()
        for digit in script:
            if walk.ended is not None:
                break
            action = walk.feed(Done() if isinstance(action, Play) else Digits(digit))
            assert isinstance(action, (Play, Collect)) or walk.ended is not None
        steps += len(walk.take_steps())
    interp = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(steps):
        Event.of(CallIvrStep(tree="bench4", tree_version=tree.version, node=f"level{i % 4 + 1}", kind="menu",
                             exit="press 1"), call_id="c")
    baseline = time.perf_counter() - t
    print(f"pure interpreter ({walks} walks, {steps} node steps):")
    print(f"  event construction per step (baseline)  {steps / baseline:10.0f} steps/s")
    print(f"  interpreter                              {steps / interp:10.0f} steps/s  "
          f"({baseline / interp:.2f}x the baseline; {interp / steps * 1e6:.1f} us per step)")


async def live(levels: int, calls: int, rate: float, label: str) -> tuple[float, int, int, float]:
    workdir = ROOT / "var" / "bench" / f"ivr{levels}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    tree = workdir / "tree.yaml"
    tree.write_text(menu_tree(levels, f"bench{levels}"))
    path = write_engine_config(workdir, queues=write_general_queue(workdir / "queues.yaml", 2, wrap_up=0),
                               ivr={"tree": str(tree)})
    settings = load_settings(path)
    db = make_engine(settings.database.url)
    proc = spawn_engine(path, workdir / "engine.log")

    def count(kind: str) -> int:
        try:
            with Session(db) as s:
                return int(s.scalar(select(func.count()).select_from(EventRow).where(EventRow.type == kind)) or 0)
        except Exception:
            return 0

    script = dtmf_script(*[part for _ in range(levels) for part in ("1", 0.5)])
    try:
        while count("engine.resynced") == 0:
            if proc.poll() is not None:
                raise SystemExit("engine failed to start; see " + str(workdir / "engine.log"))
            await asyncio.sleep(0.1)
        async with PeerDriver(settings) as peer:
            cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
            for i in range(calls):
                await peer.call(Customer(number=f"558{i:04d}", digit="", prompt_wait=0.5, patience=40,
                                         script=script))
                await asyncio.sleep(1 / rate)
            await calls_settled(db, calls)
            wall, cpu = time.monotonic() - wall0, cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(15)
    with Session(db) as s:
        rows = s.scalars(select(CallRow)).all()
    steps = count("call.ivr_step")
    served = sum(1 for r in rows if r.disposition == "self_served")
    span = (max(r.ended_at for r in rows if r.ended_at) - min(r.offered_at for r in rows)).total_seconds()
    db.dispose()
    print(f"live {label}: {len(rows)} calls, {served} self-served, {steps} IVR steps, "
          f"dispositions {sorted({str(r.disposition) for r in rows})}")
    print(f"  calls/s handled (first offer → last end)  {len(rows) / span:6.2f}  (offered at {rate:.1f}/s)")
    print(f"  engine CPU  {cpu:6.2f} s over {wall:.1f} s = {cpu / len(rows) * 1000:6.1f} ms per call, "
          f"{cpu / max(steps, 1) * 1000:6.2f} ms per IVR step ({cpu / wall * 100:.0f}% of a core)")
    return cpu, len(rows), steps, len(rows) / span


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--walks", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--rate", type=float, default=8.0)
    parser.add_argument("--skip-live", action="store_true")
    args = parser.parse_args()
    pure(args.walks)
    if args.skip_live:
        return
    cpu1, calls1, steps1, _ = await live(1, args.calls, args.rate, "1-level tree (baseline)")
    cpu4, calls4, steps4, _ = await live(4, args.calls, args.rate, "4-level tree")
    if steps4 > steps1:
        marginal = (cpu4 / calls4 - cpu1 / calls1) / ((steps4 / calls4) - (steps1 / calls1))
        print(f"marginal engine CPU per extra IVR step (4-level vs 1-level): {marginal * 1000:.2f} ms "
              f"({cpu4 / calls4 / (cpu1 / calls1):.2f}x the CPU per call of the 1-level tree)")


if __name__ == "__main__":
    asyncio.run(main())
