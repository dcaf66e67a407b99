"""Store writer batching on a real SQLite file: a burst shares one transaction (the linger), a
batch that is already full is written at once (no linger under load), every event gets the
seq it is stored under, in publish order (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ccengine.core.bus import EventBus
from ccengine.core.events import CallAnnounced, Event
from ccengine.store.database import make_engine, upgrade
from ccengine.store.schema import EventRow
from ccengine.store.writer import StoreWriter, apply_events


def announced(i: int) -> Event:
    return Event.of(CallAnnounced(position=i), call_id=f"call-{i // 10}", queue="general")


def stored_seqs(db: Engine) -> dict[str, int]:
    with Session(db) as session:
        return {event_id: seq for event_id, seq in session.execute(select(EventRow.id, EventRow.seq))}


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Engine]:
    url = f"sqlite:///{tmp_path / 'cc.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


async def run_writer(db: Engine, publish: list[Event], *, linger: float, min_batch: int, batch: int = 500,
                     pause: float = 0.0) -> list[list[tuple[int, Event]]]:
    """Publish events (``pause`` s apart, 0: all at once) to a writer, wait until stored; the commits."""
    bus = EventBus()
    writer = StoreWriter(db, bus, batch=batch, linger=linger, min_batch=min_batch)
    commits: list[list[tuple[int, Event]]] = []
    writer.committed.append(commits.append)
    writer.start()
    try:
        for event in publish:
            bus.publish(event)
            if pause:
                await asyncio.sleep(pause)
        await writer.flush(within=30.0)
    finally:
        await writer.close()
    return commits


async def test_a_burst_shorter_than_the_linger_shares_one_transaction(db: Engine) -> None:
    burst = [announced(i) for i in range(3)]
    commits = await run_writer(db, burst, pause=0.02, linger=3.0, min_batch=50)
    assert [[event for _seq, event in commit] for commit in commits] == [burst]


async def test_full_batches_are_written_without_lingering(db: Engine) -> None:
    """A linger far longer than the flush allows: only batches that skip it are stored in time."""
    events = [announced(i) for i in range(130)]
    commits = await run_writer(db, events, linger=120.0, min_batch=20, batch=50)
    assert [len(commit) for commit in commits] == [50, 50, 30]
    assert [event for commit in commits for _seq, event in commit] == events


async def test_committed_seqs_are_the_stored_ones_in_publish_order(db: Engine) -> None:
    events = [announced(i) for i in range(120)]
    commits = await run_writer(db, events, linger=0.01, min_batch=20, batch=40)
    seqs = [seq for commit in commits for seq, _event in commit]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(events)
    assert stored_seqs(db) == {event.id: seq for commit in commits for seq, event in commit}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_apply_events_returns_each_events_seq(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """More rows than one multi-row INSERT carries (1,000): the seqs still follow the events."""
    url = (str(request.getfixturevalue("postgres_url")) if backend == "postgresql"
           else f"sqlite:///{tmp_path / 'cc.db'}")
    upgrade(url)
    engine = make_engine(url)
    try:
        first = [announced(i) for i in range(5)]
        second = [announced(i) for i in range(5, 1205)]
        seqs = apply_events(engine, first) + apply_events(engine, second)
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert stored_seqs(engine) == {event.id: seq for event, seq in zip(first + second, seqs, strict=True)}
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_seqs_are_never_reused_after_a_crash_and_restart(backend: str, tmp_path: Path,
                                                         request: pytest.FixtureRequest) -> None:
    """A batch that dies inside its transaction (here on a duplicate event id, after its seqs were
    taken) leaves nothing behind; the engine is then dropped without closing anything and a new
    one writes on: every new seq is above every seq ever committed, in publish order, and the
    payload is stored as JSON (an object, not the text of one)."""
    url = (str(request.getfixturevalue("postgres_url")) if backend == "postgresql"
           else f"sqlite:///{tmp_path / 'cc.db'}")
    upgrade(url)
    engine = make_engine(url)
    before = [announced(i) for i in range(30)]
    committed = apply_events(engine, before)
    with pytest.raises(IntegrityError):
        apply_events(engine, [announced(30), before[0]])
    engine.dispose()  # the crash: nothing closed, the next engine starts from the database alone

    engine = make_engine(url)
    try:
        after = [announced(i) for i in range(31, 40)]
        seqs = apply_events(engine, after)
        assert min(seqs) > max(committed) and seqs == sorted(seqs)
        if backend == "sqlite":
            assert seqs == list(range(max(committed) + 1, max(committed) + 10))
        assert stored_seqs(engine) == {e.id: s for e, s in zip(before + after, committed + seqs, strict=True)}
        with Session(engine) as session:
            assert session.scalar(select(EventRow.data).where(EventRow.seq == seqs[0])) == after[0].data
    finally:
        engine.dispose()


async def test_a_writer_restarted_on_the_same_database_continues_the_seqs(db: Engine) -> None:
    first = await run_writer(db, [announced(i) for i in range(25)], linger=0.0, min_batch=50)
    second = await run_writer(db, [announced(i) for i in range(25, 50)], linger=0.0, min_batch=50)
    seqs = [seq for commits in (first, second) for commit in commits for seq, _event in commit]
    assert seqs == list(range(1, 51))
