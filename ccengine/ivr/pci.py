"""Secure-input windows as PCI mask windows of a call's recording.

The IVR publishes when a caller typed a PIN or card number (``call.secure_input``), and an
agent-assisted card capture keeps a :class:`SecureWindow` on the call; a recording that was
running then must have those seconds silenced. This turns the windows into the vault's
``MaskWindow`` offsets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ..recording.manifest import MaskWindow
from ..store.schema import EventRow

GUARD = timedelta(milliseconds=250)  # DTMF tones start before the digit event and outlast it
IVR_MASK_REASON = "ivr secure input"
SPOKEN_CARD_REASON = "spoken card number"  # heard by the audio tap (call.analytics.card_number_spoken)


@dataclass
class SecureWindow:
    """A mask window being kept: opened before the first secure digit can be keyed, closed once
    (by whatever ends it first: completion, time limit, hang-up)."""

    reason: str
    started_at: datetime
    ended_at: datetime | None = None

    def close(self, at: datetime) -> None:
        if self.ended_at is None:
            self.ended_at = max(at, self.started_at)

    def span(self, now: datetime) -> tuple[datetime, datetime]:
        """Start and end; a window still open at ``now`` (the call ended under it) ends then."""
        return self.started_at, self.ended_at or max(now, self.started_at)


def mask_windows(recording_started: datetime, recording_ended: datetime | None,
                 windows: Iterable[tuple[datetime, datetime]], reason: str = IVR_MASK_REASON) -> list[MaskWindow]:
    """Windows overlapping the recording, as offsets from its start, widened by a guard."""
    out = []
    for start, end in windows:
        start, end = start - GUARD, end + GUARD
        if end <= recording_started or (recording_ended is not None and start >= recording_ended):
            continue
        a = max(start, recording_started) - recording_started
        b = (min(end, recording_ended) if recording_ended else end) - recording_started
        out.append(MaskWindow.from_seconds(a.total_seconds(), b.total_seconds(), reason))
    return out


def secure_windows(db: Engine, call_id: str) -> list[SecureWindow]:
    """The windows the store holds for a call (read back after an engine restart): IVR secure input
    and card numbers the audio tap heard spoken."""
    with Session(db) as session:
        rows = session.execute(select(EventRow.type, EventRow.data).where(
            EventRow.call_id == call_id,
            EventRow.type.in_(("call.secure_input", "call.analytics.card_number_spoken"))).order_by(EventRow.seq))
        out = []
        for kind, d in rows:
            if kind == "call.secure_input":
                out.append(SecureWindow(IVR_MASK_REASON, datetime.fromisoformat(d["started_at"]),
                                        datetime.fromisoformat(d["ended_at"])))
            elif d.get("window_started_at") and d.get("window_ended_at"):
                out.append(SecureWindow(SPOKEN_CARD_REASON, datetime.fromisoformat(d["window_started_at"]),
                                        datetime.fromisoformat(d["window_ended_at"])))
        return out
