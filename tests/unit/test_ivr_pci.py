"""Secure-input windows become PCI mask windows that silence the recording where digits were typed."""

from __future__ import annotations

import io
import struct
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from ccengine.core.events import CallAnalyticsCardNumberSpoken, CallSecureInput, Event, Payload
from ccengine.ivr.pci import IVR_MASK_REASON, SPOKEN_CARD_REASON, mask_windows, secure_windows
from ccengine.recording.pcimask import mask_wav
from ccengine.store.database import make_engine, upgrade
from ccengine.store.schema import EventRow

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def tone_wav(seconds: float, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(struct.pack(f"<{int(seconds * rate)}h", *([1000, -1000] * int(seconds * rate / 2))))
    return buf.getvalue()


def test_windows_are_offsets_clipped_to_the_recording_with_a_guard() -> None:
    start, end = T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)
    windows = mask_windows(start, end, [
        (T0 + timedelta(seconds=2), T0 + timedelta(seconds=5)),  # before the recording: nothing to mask
        (T0 + timedelta(seconds=9), T0 + timedelta(seconds=11)),  # straddles the start
        (T0 + timedelta(seconds=14), T0 + timedelta(seconds=16)),
        (T0 + timedelta(seconds=19), T0 + timedelta(seconds=30)),  # runs past the end
    ])
    assert [(w.start_ms, w.end_ms) for w in windows] == [(0, 1250), (3750, 6250), (8750, 10000)]


def test_masked_audio_is_silent_inside_the_windows_only() -> None:
    start = T0
    [window] = mask_windows(start, None, [(T0 + timedelta(seconds=1), T0 + timedelta(seconds=2))])
    src = io.BytesIO(tone_wav(3.0))
    out = io.BytesIO()
    mask_wav(src, out, [window.seconds])
    out.seek(0)
    with wave.open(out) as wav:
        frames = struct.unpack(f"<{wav.getnframes()}h", wav.readframes(wav.getnframes()))
    rate = 8000
    assert all(f == 0 for f in frames[int(0.75 * rate):int(2.25 * rate)])
    assert any(f != 0 for f in frames[:int(0.7 * rate)]) and any(f != 0 for f in frames[int(2.3 * rate):])


def test_windows_read_back_after_a_restart_include_card_numbers_heard_spoken(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    db = make_engine(url)
    t0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    payloads: list[Payload] = [
        CallSecureInput(node="pin", started_at=t0, ended_at=t0 + timedelta(seconds=4)),
        CallAnalyticsCardNumberSpoken(direction="customer", at=20.0, ends_at=26.5, digits_count=16,
                                      window_started_at=t0 + timedelta(seconds=30),
                                      window_ended_at=t0 + timedelta(seconds=36.5)),
        CallAnalyticsCardNumberSpoken(direction="customer", at=40.0, ends_at=45.0, digits_count=16),  # no clock
    ]
    with Session(db) as session:
        for payload in payloads:
            event = Event.of(payload, call_id="c")
            session.add(EventRow(id=event.id, type=event.type, version=event.version,
                                 occurred_at=event.occurred_at, call_id="c", data=event.data))
        session.commit()
    windows = secure_windows(db, "c")
    db.dispose()
    assert [(w.reason, w.started_at, w.ended_at) for w in windows] == [
        (IVR_MASK_REASON, t0, t0 + timedelta(seconds=4)),
        (SPOKEN_CARD_REASON, t0 + timedelta(seconds=30), t0 + timedelta(seconds=36.5))]
