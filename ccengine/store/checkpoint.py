"""SQLite WAL checkpoints off the commit path.

SQLite copies its write-ahead log back into the database file inside the commit
that takes the log past 1,000 pages (about every 3 s at 5,000 events/s), and
that commit waits for the copy and its fsync: 30-80 ms during which every event
published meanwhile waits for its own commit. That pause was the whole p99 of
the event stream (bench/events.py). The engine's connections therefore never
checkpoint; a background task does it every ``interval`` on a pool connection
in a worker thread (sqlite3 releases the GIL while it copies): a PASSIVE copy
that never blocks the writer or a reader, then a short RESTART so the log
starts again from its beginning. A clean shutdown truncates the log.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import Engine, event

from .database import BUSY_TIMEOUT_MS

log = logging.getLogger(__name__)


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


class WalCheckpointer:
    def __init__(self, engine: Engine, interval: float = 0.5, restart_wait: float = 0.02,
                 max_log_pages: int = 16_384):
        self.engine = engine
        self.interval = interval
        self.restart_wait = restart_wait
        self.max_log_pages = max_log_pages
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_engine(cls, engine: Engine, **kwargs: Any) -> WalCheckpointer | None:
        """Take over checkpointing for a file-backed SQLite ``engine``; None for any other database.
        Connections opened from now on skip the automatic checkpoint (pooled ones are dropped)."""
        database = engine.url.database or ""
        if engine.dialect.name != "sqlite" or database in ("", ":memory:") or "mode=memory" in database:
            return None
        event.listen(engine, "connect", _no_autocheckpoint)
        engine.dispose()
        return cls(engine, **kwargs)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="wal-checkpointer")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.checkpoint)
            except Exception:  # a failed checkpoint loses nothing: the log keeps every page
                log.exception("WAL checkpoint failed")

    def checkpoint(self, mode: str = "PASSIVE") -> tuple[int, int, int]:
        """One checkpoint; returns SQLite's (busy, log pages, pages checkpointed).

        PASSIVE copies the log while the writer goes on; a log that a busy writer never leaves
        idle would then never start again from its beginning and would grow without end. So a
        RESTART follows, waiting at most ``restart_wait`` for the writer's current transaction:
        it has only the pages committed during the copy left to copy, and it lets the next
        commit write the log from its beginning (reusing the file's blocks)."""
        with self.engine.connect() as conn:
            busy, pages, done = conn.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})").one()
            if mode == "PASSIVE" and pages > 0:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={int(self.restart_wait * 1000)}")
                try:
                    busy, pages, done = conn.exec_driver_sql("PRAGMA wal_checkpoint(RESTART)").one()
                finally:
                    conn.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                if busy and pages > self.max_log_pages:
                    log.warning("WAL log at %d pages and still in use (%d checkpointed)", pages, done)
        return int(busy), int(pages), int(done)

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await asyncio.to_thread(self.checkpoint, "TRUNCATE")
        except Exception:
            log.exception("final WAL checkpoint failed; SQLite replays the log at next open")
