"""Analytics event payloads.

They carry offsets in seconds from the start of the tap (``at``) so a consumer
can place them on the recording's timeline. None of them can carry card digits:
the card event holds at most the last four, and only when configured.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ccengine.core.events import Payload

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
    digits_count: int
    last4: str = Field(default="", pattern=r"^([0-9]{4})?$")


class CallAnalyticsDisclosureMissing(Payload):
    """A required disclosure was not spotted before its deadline (or the call's end)."""

    TYPE = "call.analytics.disclosure_missing"
    phrase: str
    deadline: float


ANALYTICS_PAYLOADS: tuple[type[Payload], ...] = (
    CallAnalyticsSilence, CallAnalyticsOvertalk, CallAnalyticsAgitation, CallAnalyticsKeyword,
    CallAnalyticsCardNumberSpoken, CallAnalyticsDisclosureMissing,
)
