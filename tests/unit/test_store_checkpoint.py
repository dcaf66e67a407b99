"""WAL checkpoints off the commit path, on a real SQLite file: the engine's connections never
checkpoint in a commit, a writer that never pauses still gets its log started over (so the log
file stays the size of one checkpoint interval), nothing committed is lost, and a clean close
leaves no log behind."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import Engine, text

from ccengine.core.bus import EventBus
from ccengine.core.events import CallAnnounced, Event
from ccengine.store.checkpoint import WalCheckpointer
from ccengine.store.database import make_engine, upgrade
from ccengine.store.writer import StoreWriter


def file_engine(tmp_path: Path) -> tuple[Engine, Path]:
    path = tmp_path / "cc.db"
    upgrade(f"sqlite:///{path}")
    return make_engine(f"sqlite:///{path}"), path


def test_engine_connections_skip_the_automatic_checkpoint(tmp_path: Path) -> None:
    db, _ = file_engine(tmp_path)
    with db.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    assert WalCheckpointer.for_engine(db) is not None
    with db.connect() as conn:  # pooled connections were dropped: this one is new
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    assert WalCheckpointer.for_engine(make_engine("sqlite://")) is None
    assert WalCheckpointer.for_engine(make_engine("sqlite:///:memory:")) is None


def test_commits_are_synced_unless_configured_otherwise(tmp_path: Path) -> None:
    """full (2) by default: an event the stream sent survives a power cut; normal (1) on request."""
    db, path = file_engine(tmp_path)
    with db.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    with make_engine(f"sqlite:///{path}", synchronous="normal").connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1


def test_a_writer_that_never_pauses_still_gets_its_log_started_over(tmp_path: Path) -> None:
    """Commits a millisecond apart leave a PASSIVE checkpoint, which takes longer, no idle
    moment in which the log could start over: on its own the log file would hold every page
    ever committed."""
    db, path = file_engine(tmp_path)
    checkpointer = WalCheckpointer.for_engine(db, restart_wait=0.05)
    assert checkpointer is not None
    writer = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE blob_log (id INTEGER PRIMARY KEY, body BLOB)")
    stop = threading.Event()
    committed = [0]

    def write() -> None:
        while not stop.is_set():
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("INSERT INTO blob_log (body) VALUES (randomblob(16384))")
            writer.execute("COMMIT")
            committed[0] += 1
            time.sleep(0.001)  # the store writer's hop back to the event loop for its next batch

    thread = threading.Thread(target=write)
    thread.start()
    restarts_done = 0
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            time.sleep(0.05)
            busy, _, _ = checkpointer.checkpoint()
            restarts_done += not busy
    finally:
        stop.set()
        thread.join()
    log_bytes = (tmp_path / "cc.db-wal").stat().st_size
    written = committed[0] * 16384
    assert committed[0] > 200, "the writer did not run"
    assert restarts_done > 0
    assert log_bytes < written / 4, (log_bytes, written)
    assert writer.execute("SELECT count(*) FROM blob_log").fetchone()[0] == committed[0]
    writer.close()
    db.dispose()


async def test_the_store_writer_checkpoints_in_the_background_and_truncates_on_close(tmp_path: Path) -> None:
    db, path = file_engine(tmp_path)
    bus = EventBus()
    writer = StoreWriter(db, bus)
    writer.start()
    events = [Event.of(CallAnnounced(position=i), call_id=f"call-{i // 10}", queue="general") for i in range(3000)]
    try:
        for event in events:
            bus.publish(event)
        await writer.flush(within=30.0)
    finally:
        await writer.close()
    assert (tmp_path / "cc.db-wal").stat().st_size == 0
    db.dispose()
    plain = make_engine(f"sqlite:///{path}")  # a fresh process's view: everything is in the file
    with plain.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM events")).scalar() == len(events)
    plain.dispose()
