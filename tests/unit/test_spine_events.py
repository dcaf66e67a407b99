"""Domain events (envelope + versioned payloads) and the in-process bus."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ccengine.core.bus import EventBus
from ccengine.core.events import (
    PAYLOADS,
    AgentStateChanged,
    CallAgentNoAnswer,
    CallAgentOffered,
    CallAnalyticsAgitation,
    CallAnalyticsCardNumberSpoken,
    CallAnalyticsDisclosureMissing,
    CallAnalyticsKeyword,
    CallAnalyticsOvertalk,
    CallAnalyticsSilence,
    CallAnalyticsSummary,
    CallAnnounced,
    CallAnswered,
    CallbackAttempted,
    CallbackFinished,
    CallbackScheduled,
    CallBridged,
    CallCallbackDialed,
    CallCallbackRequested,
    CallEnded,
    CallIvrFinished,
    CallIvrStarted,
    CallIvrStep,
    CallMenuSelected,
    CallOffered,
    CallOverflowed,
    CallPaymentCaptured,
    CallPaymentFailed,
    CallPaymentStarted,
    CallQueued,
    CallRecordingSealed,
    CallRecordingStarted,
    CallRecordingStopped,
    CallSecureInput,
    CallTransferAnswered,
    CallTransferFailed,
    CallTransferred,
    CallVoicemailLeft,
    EnginePbxLink,
    EngineResynced,
    Event,
    Payload,
    RecordingFailed,
    RecordingResumed,
    RecordingTamperAttempt,
    json_schemas,
    new_event_id,
)

SAMPLES: list[Payload] = [
    CallOffered(caller_number="+441632960001", caller_name="Ada", dialed="8000", channel_id="1716.1"),
    CallbackScheduled(queue="cards", number="+441632960001", expires_at=datetime(2026, 11, 27, 9, tzinfo=UTC),
                      attempts=3, retry_seconds=600.0),
    CallbackAttempted(callback_id="c1", attempt=1),
    CallbackFinished(outcome="connected", attempts=1),
    CallMenuSelected(digit="1", attempts=1),
    CallMenuSelected(digit="", attempts=2, fallback=True),
    CallIvrStarted(tree="lab-bank", tree_version="235b4f7ab024"),
    CallIvrStep(tree="lab-bank", tree_version="235b4f7ab024", node="main", kind="menu", exit="press 1"),
    CallSecureInput(node="card", started_at=datetime(2024, 5, 24, 10, 40, tzinfo=UTC),
                    ended_at=datetime(2024, 5, 24, 10, 40, 9, tzinfo=UTC)),
    CallPaymentStarted(payment_id="p-1", amount="49.90", currency="EUR", reference="INV-1", requested_by="ann",
                       window_started_at=datetime(2024, 5, 24, 10, 41, tzinfo=UTC)),
    CallPaymentCaptured(payment_id="p-1", token="tok_abcdef", last4="1111", amount="49.90", currency="EUR",
                        reference="INV-1", window_started_at=datetime(2024, 5, 24, 10, 41, tzinfo=UTC),
                        window_ended_at=datetime(2024, 5, 24, 10, 41, 40, tzinfo=UTC)),
    CallPaymentFailed(payment_id="p-2", reason="timeout", amount="5.00", currency="GBP", reference="INV-2",
                      window_started_at=datetime(2024, 5, 24, 10, 42, tzinfo=UTC),
                      window_ended_at=datetime(2024, 5, 24, 10, 44, tzinfo=UTC)),
    CallIvrFinished(tree="lab-bank", tree_version="235b4f7ab024", outcome="routed", node="card_block",
                    queue="cards", intent="card_block", skills={"cards": 3}, learned={"language": "en"}),
    CallQueued(queue="general", position=3),
    CallOverflowed(from_queue="fraud", to_queue="cards", waited_seconds=20.5),
    CallAnnounced(position=2, estimated_wait_seconds=None),
    CallAnnounced(position=1, estimated_wait_seconds=95.0),
    CallCallbackRequested(queue="general", position=4),
    CallRecordingSealed(recording_id="r1", chain_seq=3, plaintext_sha256="ab" * 32, segments=2,
                        retention_policy="mifid2", retain_until=datetime(2031, 11, 25, tzinfo=UTC)),
    RecordingTamperAttempt(recording_id="r1", action="stopped", segment=1, gap_seconds=0.31),
    RecordingFailed(recording_id="r1", reason="/var/recordings: Read-only file system", policy="hold"),
    RecordingResumed(recording_id="r1", segment=2, held_seconds=4.2),
    CallVoicemailLeft(mailbox="cards", reason="overflow", path="/var/recordings/voicemail/m.wav",
                      duration_seconds=7.5),
    CallCallbackDialed(channel_id="1716.9"),
    CallAgentOffered(queue="general", agent_id="agent1", channel_id="1716.2"),
    CallAgentNoAnswer(agent_id="agent2", cause="No Answer"),
    CallAnswered(queue="general", agent_id="agent1", wait_seconds=12.25),
    CallBridged(bridge_id="b-1", agent_channel_id="1716.2"),
    CallTransferred(kind="agent", target="agent2", from_agent_id="agent1", from_channel_id="1716.2",
                    requested_by="desk1"),
    CallTransferred(kind="queue", target="premium", from_agent_id="agent2", from_channel_id="1716.3",
                    requested_by="desk2", approval_id="a1b2"),
    CallTransferAnswered(number="+15550100", channel_id="1716.4", bridge_id="b-2"),
    CallTransferFailed(kind="number", target="+15550100", reason="no answer", fallback_queue="general"),
    CallRecordingStarted(recording_id="r-1", path="/var/rec/r-1.wav"),
    CallRecordingStopped(recording_id="r-1", duration_seconds=61.5, size_bytes=984000),
    CallRecordingStopped(recording_id="r-2", duration_seconds=None, size_bytes=None),
    CallEnded(disposition="completed", ended_by="customer", cause="Normal Clearing", talk_seconds=60.0),
    CallEnded(disposition="ivr_hangup", ended_by="customer"),
    AgentStateChanged(state="wrapup", previous="on_call", reason="call ended"),
    EnginePbxLink(link="ami", up=False, reason="ping timeout (half-open link)"),
    EngineResynced(channels=4, calls_recovered=2, calls_closed=1),
    CallAnalyticsSilence(started_at=13.84, seconds=5.0),
    CallAnalyticsOvertalk(started_at=4.0, seconds=0.5, by="customer"),
    CallAnalyticsAgitation(direction="customer", started_at=20.3, score=2.4, loudness_z=4.0, pitch_z=3.1,
                           flux_z=1.2, rate_z=1.2),
    CallAnalyticsKeyword(direction="agent", phrase="this call is recorded", kind="disclosure", at=1.5,
                         confidence=0.66),
    CallAnalyticsCardNumberSpoken(direction="customer", at=5.7, ends_at=12.4, digits_count=16),
    CallAnalyticsDisclosureMissing(phrase="this call is recorded", deadline=30.0),
    CallAnalyticsSummary(analysers=["vad", "keywords"], directions=["customer", "agent"], seconds=29.5,
                         agent_talk_s=9.96, customer_talk_s=6.84, overtalk_s=0.0, longest_silence_s=8.0,
                         agent_interruptions=0, customer_interruptions=0, frames=2954, dropped_frames=0,
                         concealed_packets=0, disclosures_missing=[]),
]

AT = datetime(2024, 5, 24, 10, 40, 0, 123456, tzinfo=UTC)


def test_samples_cover_every_payload_type() -> None:
    assert {type(p).TYPE for p in SAMPLES} == set(PAYLOADS)
    assert all(PAYLOADS[cls.TYPE] is cls for cls in {type(p) for p in SAMPLES})


@pytest.mark.parametrize("payload", SAMPLES, ids=lambda p: f"{type(p).TYPE}")
def test_every_payload_round_trips_through_json(payload: Payload) -> None:
    event = Event.of(payload, call_id="call-1", agent_id="agent1", queue="general", occurred_at=AT)
    wire = event.model_dump_json()
    raw = json.loads(wire)
    assert raw["type"] == type(payload).TYPE
    assert raw["version"] == type(payload).VERSION >= 1
    assert raw["call_id"] == "call-1" and raw["agent_id"] == "agent1" and raw["queue"] == "general"
    back = Event.model_validate_json(wire)
    assert back == event
    assert back.occurred_at == AT
    restored = back.payload()
    assert type(restored) is type(payload)
    assert restored == payload
    # the data is plain JSON (no objects left behind)
    assert json.loads(json.dumps(event.data)) == event.data


def test_event_ids_are_unique_and_default_time_is_now_utc() -> None:
    first, second = Event.of(SAMPLES[0]), Event.of(SAMPLES[0])
    assert first.id != second.id
    assert first.occurred_at.tzinfo is not None
    assert abs(datetime.now(UTC) - first.occurred_at) < timedelta(seconds=5)


def test_non_utc_occurrence_keeps_the_instant() -> None:
    local = datetime(2024, 5, 24, 12, 40, tzinfo=timezone(timedelta(hours=2)))
    back = Event.model_validate_json(Event.of(SAMPLES[0], occurred_at=local).model_dump_json())
    assert back.occurred_at == local


@settings(max_examples=40, deadline=None)
@given(
    number=st.text(max_size=20), name=st.text(max_size=20), dialed=st.text(max_size=10),
    wait=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    size=st.one_of(st.none(), st.integers(min_value=0, max_value=2**53)),
    digit=st.sampled_from(["", *"0123456789*#"]),
)
def test_arbitrary_field_values_round_trip(number: str, name: str, dialed: str, wait: float,
                                           size: int | None, digit: str) -> None:
    payloads = [
        CallOffered(caller_number=number, caller_name=name, dialed=dialed, channel_id=name + "x"),
        CallAnswered(queue=dialed, agent_id=name, wait_seconds=wait),
        CallRecordingStopped(recording_id="r", duration_seconds=wait, size_bytes=size),
        CallMenuSelected(digit=digit, attempts=1),
    ]
    for payload in payloads:
        assert Event.model_validate_json(Event.of(payload).model_dump_json()).payload() == payload


@pytest.mark.parametrize("digit", ["12", "a", " "])
def test_menu_digit_is_validated(digit: str) -> None:
    with pytest.raises(ValidationError):
        CallMenuSelected(digit=digit, attempts=1)


def test_payload_rejects_unknown_fields_and_bad_literals() -> None:
    with pytest.raises(ValidationError):
        CallQueued(queue="q", position=1, colour="red")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        CallEnded(disposition="lost", ended_by="customer")  # type: ignore[arg-type]


def test_payload_of_unknown_type_or_mismatching_data_raises() -> None:
    event = Event.of(CallQueued(queue="q", position=1))
    with pytest.raises(KeyError):
        event.model_copy(update={"type": "call.teleported"}).payload()
    with pytest.raises(ValidationError):
        event.model_copy(update={"data": {"queue": "q"}}).payload()


def test_json_schemas_cover_all_payloads() -> None:
    schemas = json_schemas()
    assert set(schemas["payloads"]) == {f"{t}@{cls.VERSION}" for t, cls in PAYLOADS.items()}
    for key, schema in schemas["payloads"].items():
        cls = PAYLOADS[key.split("@")[0]]
        assert set(schema["properties"]) == set(cls.model_fields), key
        assert schema.get("additionalProperties") is False, key
    envelope = schemas["envelope"]
    assert {"id", "type", "version", "occurred_at", "data"} <= set(envelope["required"])
    json.dumps(schemas)  # exportable as-is


# ------------------------------------------------------------------ bus


def _event(payload: Payload, call_id: str | None = None) -> Event:
    return Event.of(payload, call_id=call_id, occurred_at=AT)


async def test_filtered_subscriber_only_gets_matching_events() -> None:
    bus = EventBus()
    calls_only = bus.subscribe("calls", accept=lambda e: e.type.startswith("call."))
    everything = bus.subscribe("all")
    published = [_event(p, call_id=str(i)) for i, p in enumerate(SAMPLES)]
    for event in published:
        bus.publish(event)
    got = [calls_only.queue.get_nowait() for _ in range(calls_only.queue.qsize())]
    assert got == [e for e in published if e.type.startswith("call.")]
    assert 0 < len(got) < len(published)
    assert everything.queue.qsize() == len(published)
    assert await everything.get() == published[0]
    assert bus.published == len(published)
    assert calls_only.dropped == 0 and not calls_only.overflowed


async def test_full_subscriber_counts_drops_without_blocking_others() -> None:
    bus = EventBus()
    slow = bus.subscribe("slow", maxsize=3)
    fast = bus.subscribe("fast", maxsize=100)
    events = [_event(CallQueued(queue="q", position=i)) for i in range(10)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    for event in events:
        assert bus.publish(event) is None  # plain call: nothing to await, nothing to block on
    assert loop.time() - started < 1.0
    assert slow.dropped == 7 and slow.overflowed
    assert [slow.queue.get_nowait() for _ in range(3)] == events[:3]  # the oldest are kept
    assert fast.dropped == 0 and fast.queue.qsize() == 10


async def test_filtered_out_events_never_count_as_drops() -> None:
    bus = EventBus()
    sub = bus.subscribe("links", accept=lambda e: e.type == "engine.pbx_link", maxsize=1)
    for _ in range(5):
        bus.publish(_event(CallQueued(queue="q", position=1)))
    assert sub.dropped == 0 and sub.queue.empty()


async def test_closed_subscription_gets_nothing_more() -> None:
    bus = EventBus()
    sub = bus.subscribe("s")
    bus.publish(_event(SAMPLES[0]))
    sub.close()
    sub.close()  # idempotent
    bus.publish(_event(SAMPLES[1]))
    assert sub.queue.qsize() == 1


async def test_async_iteration_yields_in_publish_order() -> None:
    bus = EventBus()
    sub = bus.subscribe("s")
    events = [_event(CallQueued(queue="q", position=i)) for i in range(3)]

    async def consume() -> list[Event]:
        out = []
        async for event in sub:
            out.append(event)
            if len(out) == 3:
                break
        return out

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    for event in events:
        bus.publish(event)
    assert await asyncio.wait_for(task, 1) == events


def test_event_ids_are_uuid7_and_later_ones_sort_after_earlier_ones() -> None:
    """Time-ordered ids keep the store's unique index growing at its end (bench/events.py)."""
    before = time.time_ns() // 1_000_000
    first = [new_event_id() for _ in range(1000)]
    time.sleep(0.002)
    later = new_event_id()
    parsed = uuid.UUID(first[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122 and len(first[0]) == 32
    assert before <= int(first[0][:12], 16) <= time.time_ns() // 1_000_000
    assert len(set(first)) == len(first)
    assert later > max(first)
