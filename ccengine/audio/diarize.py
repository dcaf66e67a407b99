"""Who spoke when, for audio where the channels do not already say so.

Two-leg taps need none of this (each direction is one speaker). For a mono
mix (conference, 3-way, imported recording) the built-in fallback works with
numpy alone: webrtcvad segments → 1.5 s windows → MFCC mean/std embedding →
agglomerative clustering into k speakers. Better embeddings (resemblyzer,
whose wheel carries its model) or a full pyannote pipeline from a local
directory are used only when installed; neither is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .vad import FrameVad

F = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str


# -- features ------------------------------------------------------------------
def _mel_filterbank(rate: int, n_fft: int, n_mels: int) -> F:
    def hz_to_mel(f: F | float) -> Any:
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    mels = np.linspace(hz_to_mel(60.0), hz_to_mel(min(rate / 2, 3800.0)), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = np.floor((n_fft + 1) * hz / rate).astype(int)
    fb = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(1, n_mels + 1):
        lo, mid, hi = bins[m - 1], bins[m], bins[m + 1]
        if mid > lo:
            fb[m - 1, lo:mid] = (np.arange(lo, mid) - lo) / (mid - lo)
        if hi > mid:
            fb[m - 1, mid:hi] = (hi - np.arange(mid, hi)) / (hi - mid)
    return fb


def mfcc(pcm: npt.NDArray[np.int16] | F, rate: int, n_mfcc: int = 20, n_mels: int = 26) -> F:
    """MFCCs (frames x n_mfcc) over 25 ms windows every 10 ms, telephone band (≤3.8 kHz)."""
    x = np.asarray(pcm, dtype=np.float64) / 32768.0
    x = np.append(x[0], x[1:] - 0.97 * x[:-1]) if len(x) else x
    win, hop = int(0.025 * rate), int(0.010 * rate)
    n = 1 + max(0, (len(x) - win) // hop)
    if len(x) < win:
        return np.zeros((0, n_mfcc))
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    frames = x[idx] * np.hamming(win)
    n_fft = 512 if rate > 8000 else 256
    power = np.abs(np.fft.rfft(frames, n_fft, axis=1)) ** 2
    logmel = np.log(power @ _mel_filterbank(rate, n_fft, n_mels).T + 1e-10)
    k = np.arange(n_mels)
    dct = np.cos(np.pi / n_mels * (k[None, :] + 0.5) * np.arange(n_mfcc)[:, None])
    out: F = logmel @ dct.T
    return out


def speech_segments(pcm: npt.NDArray[np.int16], rate: int, min_gap: float = 0.3,
                    mode: int = 2) -> list[tuple[float, float]]:
    """webrtcvad 20 ms decisions merged across gaps shorter than ``min_gap``."""
    vad, n = FrameVad(mode), rate // 50
    segs: list[list[float]] = []
    for i in range(len(pcm) // n):
        if vad.is_speech(pcm[i * n:(i + 1) * n], rate):
            t = i * 0.02
            if segs and t - segs[-1][1] <= min_gap:
                segs[-1][1] = t + 0.02
            else:
                segs.append([t, t + 0.02])
    return [(a, b) for a, b in segs if b - a >= 0.2]


def mfcc_embedding(pcm: npt.NDArray[np.int16], rate: int) -> F:
    """Mean and std of MFCCs 1..19; c0 (loudness) is left out, it says nothing about who speaks.

    No per-window mean removal: the long-term spectral shape is what tells voices apart.
    """
    m = mfcc(pcm, rate)[:, 1:]
    if len(m) == 0:
        return np.zeros(38)
    return np.concatenate([m.mean(axis=0), m.std(axis=0)])


def agglomerative(emb: F, k: int) -> npt.NDArray[np.intp]:
    """Average-linkage clustering on cosine distance of standardised embeddings, down to ``k`` clusters."""
    x = (emb - emb.mean(axis=0)) / (emb.std(axis=0) + 1e-9)
    x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-9)
    clusters: list[list[int]] = [[i] for i in range(len(x))]
    sim = x @ x.T
    while len(clusters) > max(k, 1):
        best, pair = -np.inf, (0, 1)
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                s = float(sim[np.ix_(clusters[a], clusters[b])].mean())
                if s > best:
                    best, pair = s, (a, b)
        a, b = pair
        clusters[a] += clusters.pop(b)
    labels = np.zeros(len(x), dtype=np.intp)
    for c, members in enumerate(clusters):
        labels[members] = c
    return labels


Embedder = Any  # callable(pcm, rate) -> 1-d embedding


def diarize(pcm: npt.NDArray[np.int16], rate: int, k: int = 2, window_s: float = 1.5,
            embedder: Embedder | None = None) -> list[Turn]:
    """Mono mix → speaker turns, labelled ``S0..S{k-1}``."""
    embed = embedder or mfcc_embedding
    pieces: list[tuple[float, float]] = []
    for a, b in speech_segments(pcm, rate):
        t = a
        while t < b:
            end = min(b, t + window_s)
            if end - t < 0.5 and pieces and abs(pieces[-1][1] - t) < 1e-6:
                pieces[-1] = (pieces[-1][0], end)
            else:
                pieces.append((t, end))
            t = end
    if not pieces:
        return []
    emb = np.stack([embed(pcm[int(a * rate):int(b * rate)], rate) for a, b in pieces])
    labels = agglomerative(emb, k) if len(pieces) > 1 else np.zeros(1, dtype=np.intp)
    turns: list[Turn] = []
    for (a, b), lab in zip(pieces, labels, strict=True):
        spk = f"S{int(lab)}"
        if turns and turns[-1].speaker == spk and a - turns[-1].end < 0.31:
            turns[-1] = Turn(turns[-1].start, b, spk)
        else:
            turns.append(Turn(a, b, spk))
    return turns


# -- evaluation ----------------------------------------------------------------
def der(reference: Sequence[Turn], hypothesis: Sequence[Turn], collar: float = 0.25, step: float = 0.01) -> float:
    """Diarization error rate: (missed + false alarm + confusion) / reference speech.

    Time is sampled every ``step``; ±``collar`` around each reference boundary is
    not scored (NIST convention). Hypothesis labels are mapped to reference
    labels by the best one-to-one assignment (exhaustive: few speakers).
    """
    import itertools

    end = max([t.end for t in [*reference, *hypothesis]], default=0.0)
    n = int(np.ceil(end / step)) + 1
    times = np.arange(n) * step
    scored = np.ones(n, dtype=bool)
    for t in reference:
        for b in (t.start, t.end):
            scored &= ~((times >= b - collar) & (times < b + collar))
    ref_spk = sorted({t.speaker for t in reference})
    hyp_spk = sorted({t.speaker for t in hypothesis})

    def activity(turns: Sequence[Turn], names: list[str]) -> npt.NDArray[np.bool_]:
        act = np.zeros((len(names), n), dtype=bool)
        for t in turns:
            act[names.index(t.speaker), round(t.start / step):round(t.end / step)] = True
        return act

    r, h = activity(reference, ref_spk)[:, scored], activity(hypothesis, hyp_spk)[:, scored]
    n_ref, n_hyp = r.sum(axis=0), h.sum(axis=0)
    total = float(n_ref.sum())
    if total == 0:
        return 0.0
    miss_fa = float(np.maximum(n_ref - n_hyp, 0).sum() + np.maximum(n_hyp - n_ref, 0).sum())
    best_correct = 0.0
    size = max(len(ref_spk), len(hyp_spk))
    for perm in itertools.permutations(range(size), len(hyp_spk)):
        correct = sum(float(np.minimum(r[p], h[j]).sum()) for j, p in enumerate(perm) if p < len(ref_spk))
        best_correct = max(best_correct, correct)
    confusion = float(np.minimum(n_ref, n_hyp).sum()) - best_correct
    return (miss_fa + confusion) / total


# -- optional heavier backends ---------------------------------------------------
def resemblyzer_embedder() -> Embedder | None:
    """resemblyzer's d-vector (model inside its wheel) if resemblyzer and torch are installed."""
    if importlib.util.find_spec("resemblyzer") is None or importlib.util.find_spec("torch") is None:
        return None
    from resemblyzer import VoiceEncoder

    encoder = VoiceEncoder("cpu", verbose=False)

    def embed(pcm: npt.NDArray[np.int16], rate: int) -> F:
        x = pcm.astype(np.float32) / 32768.0
        if rate != 16000:
            x = np.interp(np.arange(0, len(x), rate / 16000), np.arange(len(x)), x).astype(np.float32)
        return np.asarray(encoder.embed_utterance(x), dtype=np.float64)

    return embed


def load_pyannote(model_dir: str | Path) -> Any | None:
    """A pyannote.audio pipeline from a local directory (config.yaml + weights), or None.

    Offline by construction: hub access and pyannote's telemetry are switched
    off before import. Meant for post-call runs (RTF ≈ 1.7 on 2 cores here).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["PYANNOTE_METRICS_ENABLED"] = "false"
    if importlib.util.find_spec("pyannote") is None or importlib.util.find_spec("pyannote.audio") is None:
        return None
    path = Path(model_dir)
    if not path.exists():
        return None
    from pyannote.audio import Pipeline

    return Pipeline.from_pretrained(str(path / "config.yaml") if path.is_dir() else str(path))


def pyannote_turns(pipeline: Any, pcm: npt.NDArray[np.int16], rate: int, k: int | None = None) -> list[Turn]:
    """Run a loaded pipeline on in-memory audio (torchcodec cannot be relied on to load files)."""
    import torch

    waveform = torch.from_numpy(pcm.astype(np.float32) / 32768.0)[None, :]
    out = pipeline({"waveform": waveform, "sample_rate": rate}, num_speakers=k)
    annotation = getattr(out, "speaker_diarization", out)
    return [Turn(float(seg.start), float(seg.end), str(spk))
            for seg, _, spk in annotation.itertracks(yield_label=True)]
