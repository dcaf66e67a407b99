"""Analytics event payloads, re-exported from :mod:`ccengine.core.events`.

The schemas live in the one registry of versioned payloads (``PAYLOADS``,
documented in docs/events.md); this module names the analytics subset. They
carry offsets in seconds from the start of the tap (``at``) so a consumer can
place them on the recording's timeline. None of them can carry card digits:
the card event holds at most the last four, and only when configured.
"""

from __future__ import annotations

from ccengine.core.events import (
    CallAnalyticsAgitation,
    CallAnalyticsCardNumberSpoken,
    CallAnalyticsDisclosureMissing,
    CallAnalyticsKeyword,
    CallAnalyticsOvertalk,
    CallAnalyticsSilence,
    CallAnalyticsSummary,
    Direction,
    Payload,
)

__all__ = [
    "ANALYTICS_PAYLOADS", "CallAnalyticsAgitation", "CallAnalyticsCardNumberSpoken", "CallAnalyticsDisclosureMissing",
    "CallAnalyticsKeyword", "CallAnalyticsOvertalk", "CallAnalyticsSilence", "CallAnalyticsSummary", "Direction",
]

ANALYTICS_PAYLOADS: tuple[type[Payload], ...] = (
    CallAnalyticsSilence, CallAnalyticsOvertalk, CallAnalyticsAgitation, CallAnalyticsKeyword,
    CallAnalyticsCardNumberSpoken, CallAnalyticsDisclosureMissing, CallAnalyticsSummary,
)
