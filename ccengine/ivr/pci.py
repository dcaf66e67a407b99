"""Secure-input windows (``call.secure_input``) as PCI mask windows of a call's recording.

The IVR publishes when a caller typed a PIN or card number; a recording that was running
then (a whole-call recording, or a bridge recorded during an agent-assisted capture) must
have those seconds silenced. This turns the windows into the vault's ``MaskWindow`` offsets.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ..recording.manifest import MaskWindow
from ..store.schema import EventRow

GUARD = timedelta(milliseconds=250)  # DTMF tones start before the digit event and outlast it


def mask_windows(recording_started: datetime, recording_ended: datetime | None,
                 windows: Iterable[tuple[datetime, datetime]]) -> list[MaskWindow]:
    """Windows overlapping the recording, as offsets from its start, widened by a guard."""
    out = []
    for start, end in windows:
        start, end = start - GUARD, end + GUARD
        if end <= recording_started or (recording_ended is not None and start >= recording_ended):
            continue
        a = max(start, recording_started) - recording_started
        b = (min(end, recording_ended) if recording_ended else end) - recording_started
        out.append(MaskWindow.from_seconds(a.total_seconds(), b.total_seconds(), "ivr secure input"))
    return out


def secure_windows(db: Engine, call_id: str) -> list[tuple[datetime, datetime]]:
    with Session(db) as session:
        rows = session.scalars(select(EventRow.data).where(EventRow.call_id == call_id,
                                                           EventRow.type == "call.secure_input"))
        return [(datetime.fromisoformat(d["started_at"]), datetime.fromisoformat(d["ended_at"])) for d in rows]
