"""Domain events: one envelope, one versioned payload schema per event type.

Every feature (ACD, recording, analytics, the API stream, the store) speaks
these events and nothing else. A payload schema only ever changes by adding a
new version; consumers read ``type`` and ``version`` to know what they hold.
The catalogue is documented in docs/events.md and exported as JSON Schema by
``ccengine events schema``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
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


class CallCallbackDialed(Payload):
    """An agent is ready for a callback call; the customer is being called."""

    TYPE = "call.callback_dialed"
    channel_id: str


class CallAgentOffered(Payload):
    """An agent's phone is being rung for this call."""

    TYPE = "call.agent_offered"
    queue: str
    agent_id: str
    channel_id: str


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
    disposition: Literal["completed", "abandoned", "ivr_hangup", "closed", "timed_out", "failed"]
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
    ends_at: float  # with ``at``: the window a PCI mask silences (widen it: the tap starts just after the recording)
    digits_count: int
    last4: str = Field(default="", pattern=r"^([0-9]{4})?$")


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


PAYLOADS: dict[str, type[Payload]] = {
    cls.TYPE: cls
    for cls in (CallOffered, CallMenuSelected, CallQueued, CallOverflowed, CallAnnounced, CallCallbackRequested,
                CallCallbackDialed, CallAgentOffered,
                CallAgentNoAnswer, CallAnswered, CallBridged, CallRecordingStarted, CallRecordingStopped, CallEnded,
                AgentStateChanged, EnginePbxLink, EngineResynced,
                CallAnalyticsSilence, CallAnalyticsOvertalk, CallAnalyticsAgitation, CallAnalyticsKeyword,
                CallAnalyticsCardNumberSpoken, CallAnalyticsDisclosureMissing, CallAnalyticsSummary)
}


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
            id=uuid.uuid4().hex, type=payload.TYPE, version=payload.VERSION,
            occurred_at=occurred_at or datetime.now(UTC), call_id=call_id, agent_id=agent_id,
            queue=queue, data=payload.model_dump(mode="json"),
        )

    def payload(self) -> Payload:
        """The typed payload; raises if the type is unknown or the data does not match."""
        return PAYLOADS[self.type].model_validate(self.data)


def json_schemas() -> dict[str, Any]:
    """JSON Schema of the envelope and of every payload, keyed by ``type@version``."""
    return {
        "envelope": Event.model_json_schema(),
        "payloads": {f"{t}@{cls.VERSION}": cls.model_json_schema() for t, cls in sorted(PAYLOADS.items())},
    }
