"""Event log + projections + KPIs on a real SQLite file and a real PostgreSQL, migrated by Alembic.

Three calls with controlled timestamps: one answered and completed, one
abandoned in queue, one hung up in the IVR. KPI expectations are the time
differences constructed below.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, select
from sqlalchemy.orm import Session

from ccengine.core.events import (
    AgentStateChanged,
    CallAgentOffered,
    CallAnswered,
    CallBridged,
    CallEnded,
    CallMenuSelected,
    CallOffered,
    CallQueued,
    CallRecordingStarted,
    CallRecordingStopped,
    CallTransferAnswered,
    CallTransferred,
    EnginePbxLink,
    Event,
    Payload,
)
from ccengine.store.database import current_revision, head_revision, make_engine, upgrade
from ccengine.store.reports import format_kpis, kpis
from ccengine.store.schema import AgentRow, CallRow, EventRow, LegRow, QueueLogRow, RecordingRow
from ccengine.store.writer import apply_events

T0 = datetime(2024, 5, 24, 9, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def naive(dt: datetime | None) -> datetime | None:
    """SQLite keeps no offset: compare stored values as UTC wall-clock times."""
    if dt is None:
        return None
    return dt.astimezone(UTC).replace(tzinfo=None) if dt.tzinfo else dt


# Call A: completed.  queued at +4, answered at +14 (ASA 10 s), wrap-up ends at +80 (AHT 66 s)
A_QUEUED, A_ANSWERED, A_ENDED, A_WRAPUP_END = 4.0, 14.0, 74.0, 80.0
# Call B: abandoned in queue.  Call C: IVR hang-up.
B0, C0 = 100.0, 200.0


def ev(payload: Payload, seconds: float, *, call_id: str | None = None, agent_id: str | None = None,
       queue: str | None = None) -> Event:
    return Event.of(payload, call_id=call_id, agent_id=agent_id, queue=queue, occurred_at=at(seconds))


def call_a() -> list[Event]:
    a = "call-a"
    return [
        ev(AgentStateChanged(state="ready", previous="logged_out"), 0.0, agent_id="agent1"),
        ev(CallOffered(caller_number="+441632960001", caller_name="Ada", dialed="8000", channel_id="ch-a"),
           0.0, call_id=a),
        ev(CallMenuSelected(digit="1", attempts=1), 3.0, call_id=a),
        ev(CallQueued(queue="general", position=1), A_QUEUED, call_id=a, queue="general"),
        ev(AgentStateChanged(state="reserved", previous="ready"), 5.0, call_id=a, agent_id="agent1"),
        ev(CallAgentOffered(queue="general", agent_id="agent1", channel_id="ch-a-agent"), 5.0, call_id=a,
           agent_id="agent1", queue="general"),
        ev(AgentStateChanged(state="ringing", previous="reserved"), 5.0, call_id=a, agent_id="agent1"),
        ev(CallAnswered(queue="general", agent_id="agent1", wait_seconds=A_ANSWERED - A_QUEUED),
           A_ANSWERED, call_id=a, agent_id="agent1", queue="general"),
        ev(AgentStateChanged(state="on_call", previous="ringing"), A_ANSWERED, call_id=a, agent_id="agent1"),
        ev(CallBridged(bridge_id="br-a", agent_channel_id="ch-a-agent"), 14.5, call_id=a, agent_id="agent1"),
        ev(CallRecordingStarted(recording_id="rec-a", path="/rec/rec-a.wav"), 14.5, call_id=a),
        ev(CallEnded(disposition="completed", ended_by="customer", cause="Normal Clearing",
                     talk_seconds=A_ENDED - 14.5), A_ENDED, call_id=a, agent_id="agent1", queue="general"),
        ev(AgentStateChanged(state="wrapup", previous="on_call"), A_ENDED, call_id=a, agent_id="agent1"),
        ev(CallRecordingStopped(recording_id="rec-a", duration_seconds=59.5, size_bytes=952_044), 74.2,
           call_id=a),
        ev(AgentStateChanged(state="ready", previous="wrapup"), A_WRAPUP_END, call_id=a, agent_id="agent1"),
    ]


def call_b() -> list[Event]:
    b = "call-b"
    return [
        ev(CallOffered(caller_number="+441632960002", dialed="8000", channel_id="ch-b"), B0, call_id=b),
        ev(CallMenuSelected(digit="", attempts=2, fallback=True), B0 + 10, call_id=b),
        ev(CallQueued(queue="general", position=1), B0 + 11, call_id=b, queue="general"),
        ev(CallEnded(disposition="abandoned", ended_by="customer", cause="caller hung up"), B0 + 41,
           call_id=b, queue="general"),
    ]


def call_c() -> list[Event]:
    c = "call-c"
    return [
        ev(CallOffered(caller_number="anonymous", dialed="8001", channel_id="ch-c"), C0, call_id=c),
        ev(CallEnded(disposition="ivr_hangup", ended_by="customer"), C0 + 2.5, call_id=c),
    ]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same tests on the embedded default and on a real PostgreSQL server."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'sub' / 'cc.db'}"


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_upgrade_creates_schema_at_head(url: str, tmp_path: Path) -> None:
    upgrade(url)
    if url.startswith("sqlite"):
        assert (tmp_path / "sub" / "cc.db").is_file()
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"events", "calls", "legs", "agents", "recordings", "alembic_version"} <= tables
        assert current_revision(engine) == head_revision() is not None
        columns = {c["name"] for c in inspect(engine).get_columns("calls")}
        assert {c.name for c in CallRow.__table__.columns} == columns
        upgrade(url)  # idempotent
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_projections_of_three_calls(engine: Engine) -> None:
    events = call_a() + call_b() + call_c()
    apply_events(engine, events[:7])  # in more than one batch, like the writer does
    apply_events(engine, events[7:])
    with Session(engine) as s:
        stored = s.scalars(select(EventRow).order_by(EventRow.seq)).all()
        assert [r.id for r in stored] == [e.id for e in events]
        assert [r.data for r in stored] == [e.data for e in events]

        a = s.get(CallRow, "call-a")
        assert a is not None
        assert (a.state, a.disposition, a.ended_by, a.end_cause) == ("ended", "completed", "customer",
                                                                     "Normal Clearing")
        assert (a.queue, a.agent_id, a.menu_digit, a.caller_name) == ("general", "agent1", "1", "Ada")
        assert naive(a.offered_at) == naive(at(0))
        assert naive(a.queued_at) == naive(at(A_QUEUED))
        assert naive(a.agent_offered_at) == naive(at(5))
        assert naive(a.answered_at) == naive(at(A_ANSWERED))
        assert naive(a.bridged_at) == naive(at(14.5))
        assert naive(a.ended_at) == naive(at(A_ENDED))
        assert naive(a.wrapup_ended_at) == naive(at(A_WRAPUP_END))

        b = s.get(CallRow, "call-b")
        assert b is not None
        assert (b.state, b.disposition, b.agent_id, b.answered_at) == ("ended", "abandoned", None, None)
        assert b.menu_digit is None  # the fallback chose no digit
        assert naive(b.queued_at) == naive(at(B0 + 11))

        c = s.get(CallRow, "call-c")
        assert c is not None
        assert (c.disposition, c.queue, c.queued_at, c.end_cause) == ("ivr_hangup", None, None, None)

        legs = {leg.channel_id: leg for leg in s.scalars(select(LegRow))}
        assert set(legs) == {"ch-a", "ch-a-agent", "ch-b", "ch-c"}
        assert (legs["ch-a"].role, legs["ch-a"].call_id) == ("customer", "call-a")
        agent_leg = legs["ch-a-agent"]
        assert (agent_leg.role, agent_leg.agent_id) == ("agent", "agent1")
        assert naive(agent_leg.created_at) == naive(at(5))
        assert naive(agent_leg.answered_at) == naive(at(14.5))
        assert all(naive(legs[c].ended_at) == naive(at(A_ENDED)) for c in ("ch-a", "ch-a-agent"))
        assert legs["ch-a"].end_cause == "Normal Clearing"
        assert naive(legs["ch-b"].ended_at) == naive(at(B0 + 41))
        assert naive(legs["ch-c"].ended_at) == naive(at(C0 + 2.5))

        (agent,) = s.scalars(select(AgentRow)).all()
        assert (agent.id, agent.state, agent.call_id) == ("agent1", "ready", None)
        assert naive(agent.state_since) == naive(at(A_WRAPUP_END))

        (rec,) = s.scalars(select(RecordingRow)).all()
        assert (rec.id, rec.call_id, rec.path) == ("rec-a", "call-a", "/rec/rec-a.wav")
        assert naive(rec.started_at) == naive(at(14.5))
        assert naive(rec.ended_at) == naive(at(74.2))
        assert (rec.duration_seconds, rec.size_bytes) == (59.5, 952_044)


def test_kpis_from_the_constructed_timeline(engine: Engine) -> None:
    apply_events(engine, call_a() + call_b() + call_c())
    k = kpis(engine)
    assert (k.offered, k.answered, k.abandoned, k.ivr_hangups, k.failed, k.in_progress) == (3, 1, 1, 1, 0, 0)
    assert k.asa_seconds == pytest.approx(A_ANSWERED - A_QUEUED)
    assert k.aht_seconds == pytest.approx(A_WRAPUP_END - A_ANSWERED)
    text = format_kpis(k)
    assert "offered 3" in text and "ASA 10.0 s" in text and "AHT 66.0 s" in text
    later = kpis(engine, since=at(B0))
    assert (later.offered, later.answered, later.abandoned, later.asa_seconds) == (2, 0, 1, None)


def test_call_in_progress_and_aht_without_wrapup(engine: Engine) -> None:
    # drop the agent's wrap-up end: AHT falls back to answer → call end
    events = [e for e in call_a() if not (e.type == "agent.state_changed" and e.data["previous"] == "wrapup")]
    apply_events(engine, events)
    k = kpis(engine)
    assert k.aht_seconds == pytest.approx(A_ENDED - A_ANSWERED)
    apply_events(engine, [ev(CallOffered(caller_number="1", dialed="8000", channel_id="ch-d"), 300,
                             call_id="call-d")])
    k = kpis(engine)
    assert (k.offered, k.in_progress) == (2, 1)


def test_events_without_projection_are_still_logged(engine: Engine) -> None:
    link = Event.of(EnginePbxLink(link="ari", up=False, reason="boom"), occurred_at=at(1))
    apply_events(engine, [link])
    with Session(engine) as s:
        (row,) = s.scalars(select(EventRow)).all()
        assert (row.id, row.type, row.version, row.data) == (link.id, "engine.pbx_link", 1, link.data)
        assert s.scalars(select(CallRow)).all() == []


def test_failed_batch_is_rolled_back_entirely(engine: Engine) -> None:
    first = call_c()
    apply_events(engine, first)
    duplicate = [ev(CallQueued(queue="q", position=1), 5, call_id="call-x"), first[0]]  # event id reused
    with pytest.raises(Exception):  # noqa: B017 - any integrity error of the driver
        apply_events(engine, duplicate)
    with Session(engine) as s:
        assert len(s.scalars(select(EventRow)).all()) == len(first)


def test_empty_database_kpis(engine: Engine) -> None:
    k = kpis(engine)
    assert (k.offered, k.answered, k.asa_seconds, k.aht_seconds) == (0, 0, None, None)
    assert "ASA n/a" in format_kpis(k)


def test_same_instants_in_another_offset_give_the_same_kpis(engine: Engine) -> None:
    paris = timezone(timedelta(hours=2))
    shifted = [e.model_copy(update={"occurred_at": e.occurred_at.astimezone(paris)}) if e.type == "call.queued"
               else e for e in call_a()]
    apply_events(engine, shifted)
    assert kpis(engine).asa_seconds == pytest.approx(A_ANSWERED - A_QUEUED)


def test_transfers_end_the_agent_leg_keep_the_first_answer_and_log_each_step(engine: Engine) -> None:
    """Call A goes from agent1 to agent2 (re-queued), then from agent2 to an outside number."""
    a = "call-a"
    events = [e for e in call_a() if e.type not in ("call.ended", "call.recording_stopped")
              and not (e.type == "agent.state_changed" and e.data["state"] in ("wrapup", "ready") and e.call_id)]
    events += [
        ev(CallTransferred(kind="queue", target="cards", from_agent_id="agent1", from_channel_id="ch-a-agent",
                           requested_by="desk1"), 30.0, call_id=a, agent_id="agent1", queue="general"),
        ev(CallQueued(queue="cards", position=1), 31.0, call_id=a, queue="cards"),
        ev(CallAgentOffered(queue="cards", agent_id="agent2", channel_id="ch-a-agent2"), 32.0, call_id=a,
           agent_id="agent2", queue="cards"),
        ev(CallAnswered(queue="cards", agent_id="agent2", wait_seconds=2.0), 34.0, call_id=a, agent_id="agent2",
           queue="cards"),
        ev(CallTransferred(kind="number", target="+15550100", from_agent_id="agent2", from_channel_id="ch-a-agent2",
                           requested_by="floor"), 50.0, call_id=a, agent_id="agent2", queue="cards"),
        ev(CallTransferAnswered(number="+15550100", channel_id="ch-a-out", bridge_id="br-out"), 55.0, call_id=a,
           queue="cards"),
        ev(CallEnded(disposition="transferred", ended_by="agent", cause="Normal Clearing", talk_seconds=60.0),
           A_ENDED, call_id=a, queue="cards"),
    ]
    apply_events(engine, events)
    with Session(engine) as session:
        call = session.get(CallRow, a)
        assert call is not None and call.state == "ended" and call.disposition == "transferred"
        assert naive(call.answered_at) == naive(at(A_ANSWERED))  # the first answer, not agent2's
        assert call.agent_id == "agent2" and call.queue == "cards"
        legs = {leg.channel_id: leg for leg in session.scalars(select(LegRow).where(LegRow.call_id == a))}
        assert naive(legs["ch-a-agent"].ended_at) == naive(at(30.0))
        assert legs["ch-a-agent"].end_cause == "transferred to queue cards"
        assert naive(legs["ch-a-agent2"].ended_at) == naive(at(50.0))
        assert legs["ch-a-out"].role == "transfer" and naive(legs["ch-a-out"].ended_at) == naive(at(A_ENDED))
        log = [(r.verb, r.agent_id, r.detail) for r in session.scalars(
            select(QueueLogRow).where(QueueLogRow.call_id == a).order_by(QueueLogRow.id))]
    assert [v for v, _, _ in log if v != "RINGING" and not v.startswith("AGENT_")] == [
        "ENTERQUEUE", "CONNECT", "BLINDTRANSFER", "REQUEUE", "CONNECT", "BLINDTRANSFER"]
    assert ("BLINDTRANSFER", "agent1", "to queue cards") in log
    assert ("BLINDTRANSFER", "agent2", "to number +15550100") in log


def test_calls_on_one_persistent_line_keep_a_leg_each(engine: Engine) -> None:
    events: list[Event] = []
    for n, start in enumerate((0.0, 30.0)):
        call = f"call-{n}"
        events += [
            ev(CallOffered(caller_number=f"+4416329600{n}", dialed="8000", channel_id=f"ch-{n}"), start, call_id=call),
            ev(CallQueued(queue="general", position=0), start + 1, call_id=call, queue="general"),
            ev(CallAgentOffered(queue="general", agent_id="agent1", channel_id="line-1", line=True), start + 1,
               call_id=call, agent_id="agent1", queue="general"),
            ev(CallAnswered(queue="general", agent_id="agent1", wait_seconds=0.01), start + 1, call_id=call,
               agent_id="agent1", queue="general"),
            ev(CallBridged(bridge_id=f"br-{n}", agent_channel_id="line-1"), start + 1, call_id=call),
            ev(CallEnded(disposition="completed", ended_by="customer", talk_seconds=9), start + 10, call_id=call),
        ]
    apply_events(engine, events)
    with Session(engine) as s:
        legs = s.scalars(select(LegRow).where(LegRow.role == "agent").order_by(LegRow.created_at)).all()
        assert [(leg.channel_id, leg.call_id) for leg in legs] == [("line-1/call-0", "call-0"),
                                                                   ("line-1/call-1", "call-1")]
        assert [(naive(leg.answered_at), naive(leg.ended_at)) for leg in legs] == [
            (naive(at(1)), naive(at(10))), (naive(at(31)), naive(at(40)))]
