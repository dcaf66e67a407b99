"""The benchmarks' measuring helpers."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from ccengine.lab.measure import calls_settled, cpu_seconds, percentile
from ccengine.store.database import make_engine, upgrade
from ccengine.store.schema import CallRow


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 51.0 and percentile(values, 99) == 99.0 and percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0


def test_cpu_seconds_counts_this_process_work() -> None:
    before = cpu_seconds(os.getpid())
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    assert cpu_seconds(os.getpid()) - before >= 0.03


async def test_calls_settled_waits_for_every_call_to_end(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    db = make_engine(url)
    now = datetime.now(UTC)
    with Session(db) as session, session.begin():
        session.add(CallRow(id="a", caller_number="1", dialed="100", state="ended", offered_at=now, ended_at=now,
                            disposition="completed"))
        session.add(CallRow(id="b", caller_number="2", dialed="100", state="ivr", offered_at=now))
    started = time.monotonic()
    rows = await calls_settled(db, 2, limit=1.0)
    assert len(rows) == 2 and time.monotonic() - started >= 1.0  # b never ended: waited the whole limit
    assert [r.id for r in await calls_settled(db, 1, limit=5.0) if r.disposition] == ["a"]
    db.dispose()
