"""Measuring lab runs (benchmarks): a process's CPU time, percentiles, and waiting until
every call of a run has ended in the store."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ..store.schema import CallRow


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def calls_settled(db: Engine, expected: int, limit: float = 120.0) -> list[CallRow]:
    """Poll the store until ``expected`` calls exist and all have ended with a disposition
    (or ``limit`` seconds pass); returns the calls as last read."""
    deadline = time.monotonic() + limit
    while True:
        with Session(db) as session:
            rows = list(session.scalars(select(CallRow)))
        done = len(rows) >= expected and all(r.ended_at and r.disposition for r in rows)
        if done or time.monotonic() >= deadline:
            return rows
        await asyncio.sleep(0.5)
