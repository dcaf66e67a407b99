"""Secure-input windows become PCI mask windows that silence the recording where digits were typed."""

from __future__ import annotations

import io
import struct
import wave
from datetime import UTC, datetime, timedelta

from ccengine.ivr.pci import mask_windows
from ccengine.recording.pcimask import mask_wav

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
