"""Interpretable arousal ("agitation") score from prosody, batched over many streams.

Not an emotion classifier (no such offline model exists): four cues the
arousal literature agrees on — loudness, pitch level, spectral flux and a
speaking-rate proxy — each as a z-score against the *same speaker's* baseline
(their first seconds of speech), so a naturally loud or high voice is not
"agitated" and 8 kHz vs 16 kHz taps compare alike (16 kHz is decimated to
8 kHz first). All streams' frames go through numpy together: per-frame Python
cost is what limits streams per core, so the maths is done once per tick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .events import CallAnalyticsAgitation, Direction

F = npt.NDArray[np.float64]
N8 = 160  # 20 ms at 8 kHz
FEATURES = ("loudness", "pitch", "flux", "rate")
_LAG_MIN, _LAG_MAX = 20, 100  # 400 Hz .. 80 Hz at 8 kHz


@dataclass
class AgitationSettings:
    threshold: float = 1.5
    hold_s: float = 2.0
    baseline_s: float = 4.0
    short_tau_s: float = 1.5
    warmup_s: float = 1.5
    silence_db: float = -45.0


def to_8k(frames: npt.NDArray[np.int16] | F, rate: int) -> F:
    """Frames (n, samples) at 8 or 16 kHz → float (n, 160) at 8 kHz in [-1, 1]."""
    x = np.asarray(frames, dtype=np.float64) / 32768.0
    if rate == 16000:
        # 4-tap half-band-ish low-pass then decimate: enough to keep >4 kHz out of pitch/flux.
        padded = np.pad(x, ((0, 0), (1, 1)), mode="edge")
        x = (0.25 * padded[:, :-2] + 0.5 * padded[:, 1:-1] + 0.25 * padded[:, 2:])[:, ::2]
    elif rate != 8000:
        raise ValueError(f"unsupported rate {rate}")
    return x


class AgitationBank:
    """State for up to ``capacity`` speakers; one ``step`` processes one frame of many of them."""

    def __init__(self, capacity: int, settings: AgitationSettings | None = None):
        self.s = settings or AgitationSettings()
        c = capacity
        self.capacity = c
        self.prev = np.zeros((c, N8))
        self.prev_spec = np.zeros((c, 129))
        self.short = np.zeros((c, 4))
        self.short_init = np.zeros(c, dtype=bool)
        self.base_n = np.zeros(c)
        self.voiced_n = np.zeros(c)
        self.base_mean = np.zeros((c, 4))
        self.base_m2 = np.zeros((c, 4))
        self.was_voiced = np.zeros(c, dtype=bool)
        self.onset_rate = np.zeros(c)
        self.time = np.zeros(c)
        self.above_since = np.full(c, -1.0)
        self.reported = np.zeros(c, dtype=bool)
        self.score = np.zeros(c)
        self.z = np.zeros((c, 4))
        self._window = np.hanning(2 * N8)

    def reset(self, slots: npt.NDArray[np.intp]) -> None:
        for arr in (self.prev, self.prev_spec, self.short, self.base_mean, self.base_m2, self.z):
            arr[slots] = 0.0
        for arr1 in (self.base_n, self.voiced_n, self.onset_rate, self.time, self.score):
            arr1[slots] = 0.0
        self.short_init[slots] = False
        self.was_voiced[slots] = False
        self.reported[slots] = False
        self.above_since[slots] = -1.0

    def features(self, slots: npt.NDArray[np.intp], x: F) -> tuple[F, npt.NDArray[np.bool_]]:
        """Per-frame raw features (n, 4) and an active-voice mask for 8 kHz frames ``x``."""
        win = np.concatenate([self.prev[slots], x], axis=1)  # 40 ms for pitch
        self.prev[slots] = x
        rms = np.sqrt(np.mean(x * x, axis=1) + 1e-12)
        db = 20.0 * np.log10(rms)
        w = (win - win.mean(axis=1, keepdims=True)) * self._window
        spec = np.fft.rfft(w, 512, axis=1)
        ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, : _LAG_MAX + 1]
        r0 = ac[:, 0] + 1e-12
        seg = ac[:, _LAG_MIN:_LAG_MAX + 1] / r0[:, None]
        best = seg.max(axis=1)
        # First lag near the best peak: the best is often a multiple of the period (octave error).
        lag = np.argmax(seg >= 0.85 * best[:, None], axis=1) + _LAG_MIN
        peak = best
        voiced = (peak > 0.35) & (db > self.s.silence_db)
        f0_semitones = 12.0 * np.log2(8000.0 / lag / 100.0)
        mag = np.abs(spec[:, ::2])[:, :129]
        mag = mag / (mag.sum(axis=1, keepdims=True) + 1e-12)
        flux = np.sqrt(np.sum(np.maximum(mag - self.prev_spec[slots], 0.0) ** 2, axis=1)) * 10.0
        self.prev_spec[slots] = mag
        onsets = voiced & ~self.was_voiced[slots]
        self.was_voiced[slots] = voiced
        a = 0.02 / 2.0  # onset rate ~ syllables/s, 2 s time constant
        self.onset_rate[slots] = (1 - a) * self.onset_rate[slots] + a * onsets * 50.0
        feats = np.stack([db, f0_semitones, flux, self.onset_rate[slots]], axis=1)
        return feats, voiced

    def step(self, slots: npt.NDArray[np.intp], frames: npt.NDArray[np.int16] | F, rate: int) -> F:
        """Feed one 20 ms frame for each slot; returns the current score per slot."""
        s = self.s
        x = to_8k(frames, rate)
        feats, voiced = self.features(slots, x)
        self.time[slots] += 0.02
        a = 0.02 / s.short_tau_s
        v = voiced[:, None]
        init = ~self.short_init[slots]
        short = np.where(init[:, None] & v, feats, self.short[slots])
        short = np.where(v, (1 - a) * short + a * feats, short)
        self.short[slots] = short
        self.short_init[slots] |= voiced
        # Baseline: Welford over the first baseline_s of voiced speech, then frozen so that a
        # speaker who escalates does not drag the reference up with them.
        # A warm-up of voiced speech first, so the smoothed features have settled from zero.
        self.voiced_n[slots] += voiced
        learning = voiced & (self.voiced_n[slots] * 0.02 > s.warmup_s) & (self.base_n[slots] * 0.02 < s.baseline_s)
        ls = slots[learning]
        if ls.size:
            self.base_n[ls] += 1
            # Baseline statistics of the *smoothed* features: they are what the score compares.
            delta = short[learning] - self.base_mean[ls]
            self.base_mean[ls] += delta / self.base_n[ls][:, None]
            self.base_m2[ls] += delta * (short[learning] - self.base_mean[ls])
        n = self.base_n[slots]
        ready = n * 0.02 >= s.baseline_s
        # Floors on the spread stop a monotone baseline from turning noise into big z-scores.
        std = np.sqrt(self.base_m2[slots] / np.maximum(n - 1, 1)[:, None])
        std = np.maximum(std, np.array([1.5, 2.0, 0.05, 0.75]))
        z = np.where(ready[:, None], (short - self.base_mean[slots]) / std, 0.0)
        z = np.clip(z, -3.0, 5.0)
        self.z[slots] = z
        score: F = z.mean(axis=1)
        self.score[slots] = score
        return score

    def above(self, slots: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        """Positions in ``slots`` worth a :meth:`check`; resets the rest in one vector operation."""
        high = self.score[slots] > self.s.threshold
        low = slots[~high]
        self.above_since[low] = -1.0
        self.reported[low] = False
        return np.flatnonzero(high)

    def check(self, slot: int, direction: Direction) -> CallAnalyticsAgitation | None:
        """Agitation event once the score has stayed above threshold for ``hold_s``."""
        t = float(self.time[slot])
        if self.score[slot] <= self.s.threshold:
            self.above_since[slot] = -1.0
            self.reported[slot] = False
            return None
        if self.above_since[slot] < 0:
            self.above_since[slot] = t
        if self.reported[slot] or t - self.above_since[slot] < self.s.hold_s:
            return None
        self.reported[slot] = True
        z = self.z[slot]
        return CallAnalyticsAgitation(direction=direction, started_at=round(float(self.above_since[slot]), 2),
                                      score=round(float(self.score[slot]), 2), loudness_z=round(float(z[0]), 2),
                                      pitch_z=round(float(z[1]), 2), flux_z=round(float(z[2]), 2),
                                      rate_z=round(float(z[3]), 2))


def score_signal(pcm: npt.NDArray[np.int16], rate: int, settings: AgitationSettings | None = None,
                 direction: Direction = "customer") -> tuple[F, list[CallAnalyticsAgitation]]:
    """Offline helper: score one whole signal frame by frame (tests, post-call)."""
    bank = AgitationBank(1, settings)
    n = rate // 50
    slot = np.array([0], dtype=np.intp)
    scores = []
    events = []
    for i in range(len(pcm) // n):
        scores.append(float(bank.step(slot, pcm[None, i * n:(i + 1) * n], rate)[0]))
        ev = bank.check(0, direction)
        if ev is not None:
            events.append(ev)
    return np.array(scores), events
