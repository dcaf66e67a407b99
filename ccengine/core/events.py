"""Domain events: one envelope, one versioned payload schema per event type.

Every feature (ACD, recording, analytics, the API stream, the store) speaks
these events and nothing else. A payload schema only ever changes by adding a
new version; consumers read ``type`` and ``version`` to know what they hold.
The catalogue is documented in docs/events.md and exported as JSON Schema by
``ccengine events schema``.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1


class CallOffered(Payload):
    """A customer call reached the engine (entered its Stasis application)."""

    TYPE = "call.offered"
    caller_number: str
    caller_name: str = ""
    dialed: str
    channel_id: str


class CallMenuSelected(Payload):
    """The caller chose a menu option (or the menu fell back to its default)."""

    TYPE = "call.menu_selected"
    digit: str = Field(pattern=r"^[0-9*#]?$")
    attempts: int
    fallback: bool = False


class CallIvrStarted(Payload):
    """The caller entered an IVR tree; ``version`` tells tree versions apart across hot reloads."""

    TYPE = "call.ivr_started"
    tree: str
    tree_version: str


class CallIvrStep(Payload):
    """The caller left an IVR node by ``exit`` (a choice, next, fallback, timeout, hangup = drop-off, end).
    Never carries what the caller typed."""

    TYPE = "call.ivr_step"
    tree: str
    tree_version: str
    node: str
    kind: str
    exit: str
    attempts: int = 1


class CallSecureInput(Payload):
    """A window during which the caller typed secure digits (PIN, card number): recordings mask it."""

    TYPE = "call.secure_input"
    node: str
    started_at: datetime
    ended_at: datetime


PaymentFailure = Literal["card_invalid", "expiry_invalid", "cvv_invalid", "declined", "timeout", "hangup", "error"]


class CallPaymentStarted(Payload):
    """An agent asked the caller to key a card: the caller left the agent (who hears music) for the
    engine's card capture, and the recording's PCI mask window opened."""

    TYPE = "call.payment_started"
    payment_id: str
    amount: str  # decimal, exact
    currency: str
    reference: str
    requested_by: str
    window_started_at: datetime


class CallPaymentCaptured(Payload):
    """The card was keyed and authorised; ``token`` is the connector's opaque reference. The caller
    is back with the agent and the mask window is closed."""

    TYPE = "call.payment_captured"
    payment_id: str
    token: str
    last4: str
    amount: str
    currency: str
    reference: str
    window_started_at: datetime
    window_ended_at: datetime


class CallPaymentFailed(Payload):
    """No payment: the caller could not key a valid entry in the attempts allowed, the connector
    declined, the capture ran out of time or the caller hung up. The mask window is closed."""

    TYPE = "call.payment_failed"
    payment_id: str
    reason: PaymentFailure
    detail: str = ""
    last4: str | None = None
    amount: str
    currency: str
    reference: str
    window_started_at: datetime
    window_ended_at: datetime


class CallIvrFinished(Payload):
    """The IVR is done with the caller: ``outcome`` served (self-service, no agent), routed, callback,
    voicemail, transfer, hangup (the tree hung up unserved) or abandoned (the caller left).
    ``learned`` is what the IVR found out (language, customer, account, intent...), never secure input."""

    TYPE = "call.ivr_finished"
    tree: str
    tree_version: str
    outcome: Literal["served", "routed", "callback", "voicemail", "transfer", "hangup", "abandoned"]
    node: str
    queue: str | None = None
    intent: str | None = None
    skills: dict[str, int] = Field(default_factory=dict)
    priority: int = 0
    learned: dict[str, Any] = Field(default_factory=dict)


class CallQueued(Payload):
    TYPE = "call.queued"
    queue: str
    position: int


class CallOverflowed(Payload):
    """An overflow rule moved the waiting call to another queue (it keeps its arrival time)."""

    TYPE = "call.overflowed"
    from_queue: str
    to_queue: str
    waited_seconds: float


class CallAnnounced(Payload):
    """The waiting caller heard their position and/or estimated wait."""

    TYPE = "call.announced"
    position: int
    estimated_wait_seconds: float | None = None


class CallCallbackRequested(Payload):
    """The waiting caller accepted a callback: they hang up and keep their place in the queue."""

    TYPE = "call.callback_requested"
    queue: str
    position: int


class CallRecordingSealed(Payload):
    """The recording was encrypted, its signed manifest appended to the vault's hash chain, and
    the plaintext removed. ``segments`` > 1 means capture was restarted after a tamper attempt."""

    TYPE = "call.recording_sealed"
    recording_id: str
    chain_seq: int
    plaintext_sha256: str
    segments: int
    retention_policy: str
    retain_until: datetime


class RecordingTamperAttempt(Payload):
    """Someone other than the engine stopped or muted a call's forced recording; the engine
    restored it (``segment``: the index of the new segment, or of the unmuted one)."""

    TYPE = "recording.tamper_attempt"
    recording_id: str
    action: Literal["stopped", "muted"]
    segment: int
    gap_seconds: float


class RecordingFailed(Payload):
    """A connected call's recording cannot be trusted (its folder refuses writes, the file stopped
    growing, MixMonitor failed). The queue's policy applies: ``end`` the call with an apology, or
    ``hold`` both parties on music until recording works again. An alert for operations."""

    TYPE = "recording.failed"
    recording_id: str
    reason: str
    policy: Literal["end", "hold"]


class RecordingResumed(Payload):
    """Recording works again for a held call: capture restarted as segment ``segment``, the
    parties were taken off hold after ``held_seconds``."""

    TYPE = "recording.resumed"
    recording_id: str
    segment: int
    held_seconds: float


class CallVoicemailLeft(Payload):
    """The caller left a message: instead of waiting for an agent (queue overflow, maximum wait,
    closed hours; ``mailbox`` is the queue) or at an IVR voicemail ending (its mailbox).
    ``path`` is the recording of the message."""

    TYPE = "call.voicemail_left"
    mailbox: str
    reason: Literal["overflow", "max_wait", "closed", "ivr"]
    path: str
    duration_seconds: float


class CallCallbackDialed(Payload):
    """An agent is ready for a callback call; the customer is being called."""

    TYPE = "call.callback_dialed"
    channel_id: str


class CallbackScheduled(Payload):
    """A caller who found the queue closed asked to be called back once it opens. The envelope's
    ``call_id`` is that call, and the callback's id. The terms are the queue's at request time."""

    TYPE = "callback.scheduled"
    queue: str
    number: str
    expires_at: datetime
    attempts: int
    retry_seconds: float


class CallbackAttempted(Payload):
    """The queue is open: the scheduled callback waits for an agent as a new call (the envelope's
    ``call_id``); the customer is dialed once the agent answers."""

    TYPE = "callback.attempted"
    callback_id: str
    attempt: int


class CallbackFinished(Payload):
    """The scheduled callback is settled: ``connected`` (customer and agent talk), ``exhausted``
    (every attempt failed) or ``expired`` (its window closed first). The envelope's ``call_id`` is
    the callback's id."""

    TYPE = "callback.finished"
    outcome: Literal["connected", "exhausted", "expired"]
    attempts: int


class CallAgentOffered(Payload):
    """An agent's phone is being rung for this call."""

    TYPE = "call.agent_offered"
    queue: str
    agent_id: str
    channel_id: str
    intent: str | None = None  # from the IVR, for the agent's screen
    ivr: dict[str, Any] | None = None  # what the IVR learned, so the caller never repeats it
    line: bool = False  # put through on the agent's persistent line (``channel_id``): no ringing


class CallAgentNoAnswer(Payload):
    TYPE = "call.agent_no_answer"
    agent_id: str
    cause: str


class CallAnswered(Payload):
    """An agent answered; ``wait_seconds`` runs from queue entry to agent answer."""

    TYPE = "call.answered"
    queue: str
    agent_id: str
    wait_seconds: float


class CallBridged(Payload):
    TYPE = "call.bridged"
    bridge_id: str
    agent_channel_id: str


TransferKind = Literal["queue", "agent", "number"]


class CallTransferred(Payload):
    """A connected call was blind-transferred: the agent's leg is released (wrap-up) and the caller,
    still recorded, waits for ``target`` (a queue, a named agent, or an outside number)."""

    TYPE = "call.transferred"
    kind: TransferKind
    target: str
    from_agent_id: str
    from_channel_id: str
    requested_by: str
    approval_id: str | None = None  # a high-value transfer confirmed under four-eyes


class CallTransferAnswered(Payload):
    """The outside number of a transfer answered and is joined to the caller (the engine steps out)."""

    TYPE = "call.transfer_answered"
    number: str
    channel_id: str
    bridge_id: str


class CallTransferFailed(Payload):
    """A transfer could not reach its target; the caller goes back to ``fallback_queue``."""

    TYPE = "call.transfer_failed"
    kind: TransferKind
    target: str
    reason: str
    fallback_queue: str


class CallRecordingStarted(Payload):
    TYPE = "call.recording_started"
    recording_id: str
    path: str


class CallRecordingStopped(Payload):
    TYPE = "call.recording_stopped"
    recording_id: str
    duration_seconds: float | None
    size_bytes: int | None


class CallEnded(Payload):
    """The call is over. ``disposition``: how it ended from the center's point of view."""

    TYPE = "call.ended"
    disposition: Literal["completed", "abandoned", "ivr_hangup", "closed", "timed_out", "failed", "self_served",
                         "voicemail", "transferred"]
    ended_by: Literal["customer", "agent", "system", "pbx"]
    cause: str = ""
    talk_seconds: float | None = None


class AgentStateChanged(Payload):
    TYPE = "agent.state_changed"
    state: Literal["logged_out", "ready", "reserved", "ringing", "on_call", "wrapup", "not_ready"]
    previous: str
    reason: str = ""


class EnginePbxLink(Payload):
    """A control link to the PBX went down or came (back) up."""

    TYPE = "engine.pbx_link"
    link: Literal["ari", "ami"]
    up: bool
    reason: str = ""


class EngineResynced(Payload):
    """After a (re)connect the engine compared its state with the PBX's."""

    TYPE = "engine.resynced"
    channels: int
    calls_recovered: int
    calls_closed: int


# -- call audio analytics (ccengine/audio): offsets are seconds of media time since the tap began ------
Direction = Literal["agent", "customer", "mixed"]


class CallAnalyticsSilence(Payload):
    """Both directions were silent for longer than the configured threshold."""

    TYPE = "call.analytics.silence"
    started_at: float
    seconds: float


class CallAnalyticsOvertalk(Payload):
    """Both directions talked at once; ``by`` is who started talking second."""

    TYPE = "call.analytics.overtalk"
    started_at: float
    seconds: float
    by: Direction


class CallAnalyticsAgitation(Payload):
    """A speaker's arousal score stayed above threshold; z-scores explain why."""

    TYPE = "call.analytics.agitation"
    direction: Direction
    started_at: float
    score: float
    loudness_z: float
    pitch_z: float
    flux_z: float
    rate_z: float


class CallAnalyticsKeyword(Payload):
    """A configured phrase (disclosure or risk phrase) was spotted."""

    TYPE = "call.analytics.keyword"
    direction: Direction
    phrase: str
    kind: Literal["disclosure", "risk"]
    at: float
    confidence: float = Field(ge=0.0, le=1.0)


class CallAnalyticsCardNumberSpoken(Payload):
    """A Luhn-valid card number was heard; the digits themselves never leave the analyser."""

    TYPE = "call.analytics.card_number_spoken"
    direction: Direction
    at: float
    ends_at: float  # with ``at``: offsets in the tap's media time
    digits_count: int
    last4: str = Field(default="", pattern=r"^([0-9]{4})?$")
    # the same span on the wall clock: the window the recording's PCI mask silences (widened there by a guard)
    window_started_at: datetime | None = None
    window_ended_at: datetime | None = None


class CallAnalyticsDisclosureMissing(Payload):
    """A required disclosure was not spotted before its deadline (or the call's end)."""

    TYPE = "call.analytics.disclosure_missing"
    phrase: str
    deadline: float


class CallAnalyticsSummary(Payload):
    """The per-call result of the audio tap, stored when the tap stops (the call's analytics record).

    ``dropped_frames`` counts 20 ms frames the analysers could not take in time
    (they are skipped, never waited for); ``concealed_packets`` counts RTP
    packets lost on the way and replaced by silence; ``utterances_skipped``
    counts speech the recogniser was too far behind to hear.
    """

    TYPE = "call.analytics.summary"
    analysers: list[str]
    directions: list[Direction]
    seconds: float
    agent_talk_s: float
    customer_talk_s: float
    overtalk_s: float
    longest_silence_s: float
    agent_interruptions: int
    customer_interruptions: int
    frames: int
    dropped_frames: int
    concealed_packets: int
    disclosures_missing: list[str] = Field(default_factory=list)
    utterances_skipped: int = 0
    silence_s: float = 0.0  # nobody talking (a transfer's hold excluded)


PAYLOADS: dict[str, type[Payload]] = {
    cls.TYPE: cls
    for cls in (CallOffered, CallMenuSelected, CallIvrStarted, CallIvrStep, CallSecureInput, CallIvrFinished,
                CallPaymentStarted, CallPaymentCaptured, CallPaymentFailed,
                CallQueued, CallOverflowed, CallAnnounced, CallCallbackRequested,
                CallCallbackDialed, CallbackScheduled, CallbackAttempted, CallbackFinished, CallVoicemailLeft,
                CallAgentOffered, CallAgentNoAnswer, CallAnswered, CallBridged, CallTransferred, CallTransferAnswered,
                CallTransferFailed, CallRecordingStarted, CallRecordingStopped,
                CallRecordingSealed, RecordingTamperAttempt, RecordingFailed, RecordingResumed, CallEnded,
                AgentStateChanged, EnginePbxLink, EngineResynced,
                CallAnalyticsSilence, CallAnalyticsOvertalk, CallAnalyticsAgitation, CallAnalyticsKeyword,
                CallAnalyticsCardNumberSpoken, CallAnalyticsDisclosureMissing, CallAnalyticsSummary)
}


def new_event_id() -> str:
    """A UUIDv7 (RFC 9562) in 32 hex digits: milliseconds first, then 74 random bits. Ids of new
    events sort after older ones, so each lands at the end of the store's unique index (one page
    per commit) instead of on a random page of it (one page per event, and as many copied
    again by every checkpoint)."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = ((time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64
             | 0b10 << 62 | rand & (1 << 62) - 1)
    return f"{value:032x}"


_compact = json.JSONEncoder(separators=(",", ":"), default=str).encode  # json.dumps builds one a call


class Event(BaseModel):
    """The envelope every event travels in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    type: str
    version: int
    occurred_at: datetime
    call_id: str | None = None
    agent_id: str | None = None
    queue: str | None = None
    data: dict[str, Any]

    @classmethod
    def of(cls, payload: Payload, *, call_id: str | None = None, agent_id: str | None = None,
           queue: str | None = None, occurred_at: datetime | None = None) -> Event:
        return cls(
            id=new_event_id(), type=payload.TYPE, version=payload.VERSION,
            occurred_at=occurred_at or datetime.now(UTC), call_id=call_id, agent_id=agent_id,
            queue=queue, data=payload.model_dump(mode="json"),
        )

    @cached_property
    def data_json(self) -> str:
        """``data`` as compact JSON, encoded once per event: the store keeps this text and every
        stream frame embeds it."""
        return _compact(self.data)

    def payload(self) -> Payload:
        """The typed payload; raises if the type is unknown or the data does not match."""
        return PAYLOADS[self.type].model_validate(self.data)


def json_schemas() -> dict[str, Any]:
    """JSON Schema of the envelope and of every payload, keyed by ``type@version``."""
    return {
        "envelope": Event.model_json_schema(),
        "payloads": {f"{t}@{cls.VERSION}": cls.model_json_schema() for t, cls in sorted(PAYLOADS.items())},
    }
