"""Persist every bus event and keep the call/agent projections up to date.

Writes are batched and run in a worker thread so the event loop never waits
on disk. One writer, applied in publish order, so projections are consistent
with the event log they are derived from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import JSON, Connection, Dialect, Engine, TypeDecorator, bindparam, func, insert, select, text, update
from sqlalchemy.orm import Session

from ..core.bus import EventBus, Subscription
from ..core.events import Event
from .checkpoint import WalCheckpointer
from .schema import AgentRow, Base, CallRow, EventRow, LegRow, QueueLogRow, RecordingRow, RetentionRow

log = logging.getLogger(__name__)

Projector = Callable[[Session, Event], None]
RowT = TypeVar("RowT")


def _cached(session: Session, model: type[RowT], key: str) -> RowT | None:
    """``session.get`` that keeps a strong reference for the batch: the session's identity map is
    weak, so a clean row would otherwise be reloaded by every event that touches it."""
    cache: dict[tuple[type[Any], str], Any] = session.info.setdefault("rows", {})
    if (model, key) not in cache:
        cache[(model, key)] = session.get(model, key)
    row: RowT | None = cache[(model, key)]
    return row


def _keep(session: Session, row: Any, key: str) -> None:
    session.info.setdefault("rows", {})[(type(row), key)] = row


def _call(session: Session, event: Event) -> CallRow | None:
    return _cached(session, CallRow, event.call_id) if event.call_id else None


def _offered(session: Session, e: Event) -> None:
    d = e.data
    call = CallRow(id=e.call_id, caller_number=d["caller_number"], caller_name=d.get("caller_name", ""),
                   dialed=d["dialed"], state="ivr", offered_at=e.occurred_at)
    session.add(call)
    _keep(session, call, str(e.call_id))
    session.flush()  # the leg's foreign key needs the call row first
    session.add(LegRow(channel_id=d["channel_id"], call_id=e.call_id, role="customer",
                       created_at=e.occurred_at, answered_at=e.occurred_at))


def _menu(session: Session, e: Event) -> None:
    if call := _call(session, e):
        call.menu_digit = e.data["digit"] or None
        call.menu_at = e.occurred_at


def _queued(session: Session, e: Event) -> None:
    if call := _call(session, e):
        call.state = "queued"
        call.queue = e.data["queue"]
        call.queued_at = call.queued_at or e.occurred_at


def _callback_requested(session: Session, e: Event) -> None:
    """The caller hung up keeping their place: a restarted engine must call them back, not
    close the call as abandoned."""
    if call := _call(session, e):
        call.state = "callback"


def _leg_id(channel_id: str, call_id: str, line: bool) -> str:
    """A persistent line carries many calls on one channel: each call gets its own leg row."""
    return f"{channel_id}/{call_id}" if line else channel_id


def _agent_offered(session: Session, e: Event) -> None:
    if call := _call(session, e):
        call.agent_offered_at = e.occurred_at
        session.merge(LegRow(channel_id=_leg_id(e.data["channel_id"], call.id, e.data.get("line", False)),
                             call_id=call.id, role="agent", agent_id=e.data["agent_id"], created_at=e.occurred_at))


def _overflowed(session: Session, e: Event) -> None:
    if call := _call(session, e):
        call.queue = e.data["to_queue"]


def _answered(session: Session, e: Event) -> None:
    if call := _call(session, e):
        call.queue = e.data["queue"]
        call.state = "talking"
        call.agent_id = e.data["agent_id"]
        call.answered_at = call.answered_at or e.occurred_at  # a transferred call is answered again


def _bridged(session: Session, e: Event) -> None:
    if call := _call(session, e):
        call.bridged_at = e.occurred_at
        channel = e.data["agent_channel_id"]
        leg = session.get(LegRow, _leg_id(channel, call.id, True)) or session.get(LegRow, channel)
        if leg is not None:
            leg.answered_at = e.occurred_at


def _transferred(session: Session, e: Event) -> None:
    if call := _call(session, e):
        call.state = "transferring"
        leg = session.get(LegRow, e.data["from_channel_id"])
        if leg is not None:
            leg.ended_at, leg.end_cause = e.occurred_at, f"transferred to {e.data['kind']} {e.data['target']}"[:128]


def _transfer_answered(session: Session, e: Event) -> None:
    if call := _call(session, e):
        call.state = "talking"
        session.merge(LegRow(channel_id=e.data["channel_id"], call_id=call.id, role="transfer",
                             created_at=e.occurred_at, answered_at=e.occurred_at))


def _recording_started(session: Session, e: Event) -> None:
    session.merge(RecordingRow(id=e.data["recording_id"], call_id=e.call_id, path=e.data["path"],
                               started_at=e.occurred_at))


def _recording_stopped(session: Session, e: Event) -> None:
    row = session.get(RecordingRow, e.data["recording_id"])
    if row is not None:
        row.ended_at = e.occurred_at
        row.duration_seconds = e.data["duration_seconds"]
        row.size_bytes = e.data["size_bytes"]


def _recording_sealed(session: Session, e: Event) -> None:
    d = e.data
    session.merge(RetentionRow(recording_id=d["recording_id"], call_id=e.call_id, policy=d["retention_policy"],
                               sealed_at=e.occurred_at, retain_until=datetime.fromisoformat(d["retain_until"])))


def _ended(session: Session, e: Event) -> None:
    if call := _call(session, e):
        call.state = "ended"
        call.ended_at = e.occurred_at
        call.disposition = e.data["disposition"]
        call.ended_by = e.data["ended_by"]
        call.end_cause = e.data.get("cause") or None
        session.execute(update(LegRow).where(LegRow.call_id == call.id, LegRow.ended_at.is_(None))
                        .values(ended_at=e.occurred_at, end_cause=call.end_cause))


def _agent_state(session: Session, e: Event) -> None:
    state = e.data["state"]
    agent_id = str(e.agent_id)
    agent = _cached(session, AgentRow, agent_id)
    if agent is None:
        agent = AgentRow(id=agent_id)
        session.add(agent)
        _keep(session, agent, agent_id)
    agent.state, agent.state_since, agent.reason = state, e.occurred_at, e.data.get("reason", "")
    agent.call_id = e.call_id if state in ("reserved", "ringing", "on_call", "wrapup") else None
    if e.data["previous"] == "wrapup" and e.call_id and (call := _call(session, e)):
        call.wrapup_ended_at = call.wrapup_ended_at or e.occurred_at


def _seconds_since(start: datetime | None, end: datetime) -> float | None:
    if start is None:
        return None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return round((end - start).total_seconds(), 3)


@dataclass
class _QueueLine:
    at: datetime
    call_id: str | None
    queue: str | None
    agent_id: str | None
    verb: str = ""
    wait_seconds: float | None = None
    talk_seconds: float | None = None
    detail: str = ""


def queue_log_entry(session: Session, e: Event) -> dict[str, object] | None:
    """The queue-log line an event stands for, if any (verbs follow Asterisk's queue_log)."""
    d = e.data
    call = _call(session, e) if e.type in ("call.queued", "call.ended") else None  # only they read the call
    row = _QueueLine(at=e.occurred_at, call_id=e.call_id, queue=e.queue, agent_id=e.agent_id)
    if e.type == "call.queued":
        row.verb = "ENTERQUEUE" if call is None or call.queued_at is None else "REQUEUE"
        row.detail = f"position {d['position']}"
    elif e.type == "call.overflowed":
        row.verb, row.wait_seconds = "OVERFLOW", d["waited_seconds"]
        row.queue, row.detail = d["from_queue"], f"to {d['to_queue']}"
    elif e.type == "call.agent_offered":
        row.verb = "RINGING"
    elif e.type == "call.agent_no_answer":
        row.verb, row.detail = "RINGNOANSWER", d["cause"][:128]
    elif e.type == "call.answered":
        row.verb, row.wait_seconds = "CONNECT", d["wait_seconds"]
    elif e.type == "call.transferred":
        row.verb, row.detail = "BLINDTRANSFER", f"to {d['kind']} {d['target']}"[:128]
    elif e.type == "call.ended" and call is not None and call.queued_at is not None:
        if d["disposition"] == "completed":
            row.verb = "COMPLETEAGENT" if d["ended_by"] == "agent" else "COMPLETECALLER"
            row.talk_seconds, row.agent_id = d.get("talk_seconds"), call.agent_id
        elif d["disposition"] == "abandoned":
            row.verb, row.wait_seconds = "ABANDON", _seconds_since(call.queued_at, e.occurred_at)
        elif d["disposition"] == "timed_out":
            row.verb, row.wait_seconds = "EXITWITHTIMEOUT", _seconds_since(call.queued_at, e.occurred_at)
        elif d["disposition"] == "voicemail":
            row.verb, row.wait_seconds = "EXITVOICEMAIL", _seconds_since(call.queued_at, e.occurred_at)
        elif d["disposition"] != "transferred":  # to a number: BLINDTRANSFER closed the agent's part
            row.verb = "FAILED"
        row.queue = row.queue or call.queue
    elif e.type == "agent.state_changed":
        row.verb, row.detail = "AGENT_" + d["state"].upper(), d.get("reason", "")[:128]
    elif e.type == "callback.scheduled":
        row.verb, row.detail = "CALLBACK_SCHEDULED", f"until {d['expires_at']}, {d['attempts']} attempts"
    elif e.type == "callback.attempted":
        row.verb, row.detail = "CALLBACK_ATTEMPT", f"attempt {d['attempt']} of {d['callback_id']}"
    elif e.type == "callback.finished":
        row.verb, row.detail = "CALLBACK_" + d["outcome"].upper(), f"after {d['attempts']} attempts"
    else:
        return None
    return row.__dict__ if row.verb else None


PROJECTORS: dict[str, Projector] = {
    "call.offered": _offered,
    "call.menu_selected": _menu,
    "call.queued": _queued,
    "call.callback_requested": _callback_requested,
    "call.overflowed": _overflowed,
    "call.agent_offered": _agent_offered,
    "call.answered": _answered,
    "call.bridged": _bridged,
    "call.transferred": _transferred,
    "call.transfer_answered": _transfer_answered,
    "call.recording_started": _recording_started,
    "call.recording_stopped": _recording_stopped,
    "call.recording_sealed": _recording_sealed,
    "call.ended": _ended,
    "agent.state_changed": _agent_state,
}


_EVENTS = Base.metadata.tables[EventRow.__tablename__]
_QUEUE_LOG = Base.metadata.tables[QueueLogRow.__tablename__]


class _EncodedJSON(TypeDecorator[str]):
    """A JSON column written from text already encoded (``Event.data_json``): no second encoding."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        return None


_LOG_COLUMNS = [column.name for column in _EVENTS.c]
_LAST_SEQ = select(func.max(_EVENTS.c.seq))
_PG_SEQS = text("SELECT nextval(pg_get_serial_sequence('events', 'seq')) FROM generate_series(1, :n)")


class _LogInsert:
    """The event-log INSERT compiled once per dialect and run by the driver's executemany:
    one statement whatever the batch size, and no per-row parameter handling by SQLAlchemy
    (which cost more CPU than the database's own work). Values get the dialect's own bind
    processing (SQLite's text timestamps), the payload goes in as ``Event.data_json``."""

    _compiled: dict[tuple[str, str, str], _LogInsert] = {}

    def __init__(self, dialect: Dialect):
        stmt = insert(_EVENTS).values(data=bindparam("data", type_=_EncodedJSON()))
        compiled = stmt.compile(dialect=dialect, column_keys=_LOG_COLUMNS)
        self.sql = str(compiled)
        self.positional = list(compiled.positiontup or []) if compiled.positional else None
        self.processors = [(name, process) for name, bind in compiled.binds.items()
                           if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None]

    @classmethod
    def of(cls, dialect: Dialect) -> _LogInsert:
        key = (dialect.name, dialect.driver, dialect.paramstyle)
        if key not in cls._compiled:
            cls._compiled[key] = cls(dialect)
        return cls._compiled[key]

    def run(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        for name, process in self.processors:
            for row in rows:
                row[name] = process(row[name])
        if self.positional is None:
            conn.exec_driver_sql(self.sql, rows)
        else:
            names = self.positional
            conn.exec_driver_sql(self.sql, [tuple([row[name] for name in names]) for row in rows])


def allocate_seqs(conn: Connection, n: int) -> list[int]:
    """``n`` new seqs, ascending. PostgreSQL takes them from the column's sequence (never handed out
    twice, even by a rolled-back transaction); elsewhere they follow the highest stored seq. A seq
    reaches the stream only once committed, so one a crash lost was never seen, and the primary
    key refuses a seq taken twice rather than storing it."""
    if conn.dialect.name == "postgresql":
        return sorted(conn.execute(_PG_SEQS, {"n": n}).scalars())
    last = conn.execute(_LAST_SEQ).scalar() or 0
    return list(range(last + 1, last + 1 + n))


def apply_events(engine: Engine, events: list[Event]) -> list[int]:
    """Append ``events`` to the log and project them, in one transaction; returns their ``seq``.

    The log rows go in by one executemany (``_LogInsert``) with seqs taken beforehand (no
    RETURNING, so no multi-row VALUES rebuilt per batch size); only the projections use the
    ORM (rows of one batch stay in the session's identity map, so a call touched by many
    events is read once)."""
    log_rows: list[dict[str, Any]] = []
    queue_rows: list[dict[str, object]] = []
    with engine.begin() as conn:
        with Session(bind=conn) as session:
            for e in events:
                # SQLite keeps no offset: normalise to UTC so every stored instant compares correctly
                at = e.occurred_at.astimezone(UTC)
                if at is not e.occurred_at:
                    e = e.model_copy(update={"occurred_at": at})
                log_rows.append({"id": e.id, "type": e.type, "version": e.version, "occurred_at": at,
                                 "call_id": e.call_id, "agent_id": e.agent_id, "queue": e.queue,
                                 "data": e.data_json})
                entry = queue_log_entry(session, e)
                if entry is not None:
                    queue_rows.append(entry)
                projector = PROJECTORS.get(e.type)
                if projector is not None:
                    projector(session, e)
            session.flush()
        seqs = allocate_seqs(conn, len(log_rows))
        for row, seq in zip(log_rows, seqs, strict=True):
            row["seq"] = seq
        _LogInsert.of(conn.dialect).run(conn, log_rows)
        if queue_rows:
            conn.execute(insert(_QUEUE_LOG), queue_rows)
    return seqs


class StoreWriter:
    """Group commit: whatever is waiting when the previous commit finishes goes in the next
    transaction (up to ``batch``), so under load batches grow by themselves and an event waits
    for at most one commit before its own. With a ``linger`` the first event of a batch also
    waits that long for companions (a call's burst then shares one transaction: fewer
    transactions for more latency) unless ``min_batch`` are already waiting."""

    def __init__(self, engine: Engine, bus: EventBus, batch: int = 500, linger: float = 0.0, min_batch: int = 50):
        self.engine = engine
        # SQLite's own checkpoints would stall a commit every few seconds (see checkpoint.py)
        self._checkpointer = WalCheckpointer.for_engine(engine)
        self._subscription: Subscription = bus.subscribe("store", maxsize=100_000)
        self._batch = batch
        self._linger = linger
        self._min_batch = min(min_batch, batch)
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        # called after each commit with the stored events and their seq (the API stream's offsets)
        self.committed: list[Callable[[list[tuple[int, Event]]], None]] = []

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="store-writer")
        if self._checkpointer:
            self._checkpointer.start()

    async def _run(self) -> None:
        queue = self._subscription.queue
        while True:
            if queue.empty():
                self._idle.set()
            events = [await queue.get()]
            self._idle.clear()
            await self._fill(events)
            try:
                self._notify(zip(await asyncio.to_thread(apply_events, self.engine, events), events, strict=True))
            except Exception:
                log.exception("store write of %d events failed; retrying one by one", len(events))
                for single in events:
                    try:
                        self._notify(zip(await asyncio.to_thread(apply_events, self.engine, [single]), [single],
                                         strict=True))
                    except Exception:
                        log.exception("event %s (%s) could not be stored", single.id, single.type)

    async def _fill(self, events: list[Event]) -> None:
        """Add what is waiting to ``events``; with a linger, wait for more while fewer than ``min_batch``."""
        queue = self._subscription.queue

        def take_waiting() -> None:
            while len(events) < self._batch and not queue.empty():
                events.append(queue.get_nowait())

        take_waiting()
        if not self._linger:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._linger):
                while len(events) < self._min_batch:
                    events.append(await queue.get())
                    take_waiting()

    def _notify(self, stored: Iterable[tuple[int, Event]]) -> None:
        if self.committed:
            batch = list(stored)
            for listener in self.committed:
                try:
                    listener(batch)
                except Exception:  # a listener must never make the writer store a batch twice
                    log.exception("commit listener %r failed", listener)

    async def flush(self, within: float = 10.0) -> None:
        """Wait until everything published so far is on disk (TimeoutError after ``within`` s)."""
        await asyncio.sleep(0)
        if not self._subscription.queue.empty():
            self._idle.clear()
        await asyncio.wait_for(self._idle.wait(), within)

    async def close(self) -> None:
        try:
            await self.flush()
        except TimeoutError:
            log.error("store writer did not drain before shutdown")
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._checkpointer:
            await self._checkpointer.close()
        self._subscription.close()
