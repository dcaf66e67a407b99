"""Compliance phrase spotting and spoken card-number detection, offline.

The default backend is pocketsphinx 5 (its wheel ships the en-us model, so
nothing is downloaded). Phrases are found by its keyphrase search (KWS), one
search and one threshold per phrase, with a search beam far wider than any
threshold: at the default beam the search pruned multi-word phrases before their
score could reach a threshold, which is why earlier measurements found it
useless. Measured on 8 kHz espeak-ng speech of both genders
(bench/phrase_spotting.py, 20 positive and 68 negative utterances per phrase, each
half of the set): "this call is recorded" 18-19/20 at 1e-80 with 0-1 false alarms,
"speak to a manager" 10-12/20 at 1e-30 with 0-3, at a real-time factor of about
0.04 per phrase; the
phone-recogniser + edit-distance method it replaces found 9/20 and 0/20, and a
full LM decode gave unrelated text. A missed disclosure is therefore a prompt to
review, not proof. Card numbers use a digits-only grammar, whose output is then
Luhn-checked; the digits never leave :meth:`KeywordSpotter._cards` — events carry
a count and optionally the last four.

Other engines plug in through :class:`AsrBackend` (for example a Chinese or a
whisper model from a local path, see :func:`load_backend`).
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from ccengine.core.events import Payload

from .events import CallAnalyticsCardNumberSpoken, CallAnalyticsDisclosureMissing, CallAnalyticsKeyword, Direction

Pcm = npt.NDArray[np.int16]
DIGITS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
          "six": "6", "seven": "7", "eight": "8", "nine": "9"}
_FILLER = ("my", "card", "number", "is", "it's", "the", "and", "uh", "um", "expiry", "security", "code")
_ISSUER = "23456"
_NOISE = {"SIL", "+NSN+", "+SPN+", "<s>", "</s>", "<sil>"}


Keyphrases = tuple[tuple[str, float], ...]  # (phrase, detection threshold) for one spotter


class AsrBackend(Protocol):
    """What the spotter needs from a recogniser; audio is 16 kHz mono int16."""

    def keyphrases(self, pcm16k: Pcm, phrases: Keyphrases) -> list[str]: ...
    def digits(self, pcm16k: Pcm) -> list[str]: ...
    def pronounce(self, phrase: str) -> list[str]: ...


def upsample_8k_to_16k(pcm: Pcm) -> Pcm:
    """Linear interpolation: the en-us model is 16 kHz and Asterisk slin taps may be 8 kHz."""
    x = pcm.astype(np.float32)
    y = np.empty(2 * len(x), dtype=np.float32)
    y[0::2] = x
    y[1::2] = np.concatenate([(x[:-1] + x[1:]) / 2, x[-1:]]) if len(x) else x
    return y.astype(np.int16)


class PocketsphinxBackend:
    """pocketsphinx 5 with its bundled en-us model, or a model directory given by the operator."""

    def __init__(self, model_dir: str | Path | None = None):
        import pocketsphinx

        root = Path(model_dir) if model_dir else Path(pocketsphinx.get_model_path()) / "en-us"
        self.hmm = str(root / "en-us") if (root / "en-us").is_dir() else str(root)
        self.dict = str(next(root.glob("*.dict")))
        words = sorted(set(DIGITS) | set(_FILLER))
        grammar = ("#JSGF V1.0;\ngrammar digits;\npublic <s> = (<f>)* (<d>)+ (<f>)*;\n"
                   f"<d> = {' | '.join(w for w in words if w in DIGITS)};\n"
                   f"<f> = {' | '.join(w for w in words if w not in DIGITS)};\n")
        # Narrow beams: with default beams the filler loop made this grammar 1-2x slower than
        # real time on ordinary speech; at these it runs at RTF ~0.05 and still reads the digits.
        self._digits = pocketsphinx.Decoder(hmm=self.hmm, dict=self.dict, beam=1e-20, pbeam=1e-20,
                                            wbeam=1e-15, loglevel="FATAL")
        self._digits.add_jsgf_string("digits", grammar)
        self._digits.activate_search("digits")
        # Keyphrase search: the beam must be far wider than the thresholds (1e-40..1e-80), or the
        # phrase is pruned before it can score; the phone-loop penalty keeps garbage from winning.
        self._kws = pocketsphinx.Decoder(hmm=self.hmm, dict=self.dict, kws=self._keyfile("one", 1e-30),
                                         beam=1e-150, kws_plp=1e-10, loglevel="FATAL")
        self._kws_searches: dict[tuple[str, float], str] = {}

    @staticmethod
    def _keyfile(text: str, threshold: float) -> str:
        with tempfile.NamedTemporaryFile("w", suffix=".kws", delete=False) as out:
            out.write(f"{text.lower()} /{threshold:g}/\n")
        return out.name

    def keyphrases(self, pcm16k: Pcm, phrases: Keyphrases) -> list[str]:
        """The phrases heard in an utterance. Each phrase is its own search (made once): in one
        shared search a phrase with a low threshold made the others fire on unrelated speech."""
        return [text for text, threshold in phrases if self._heard(pcm16k, text, threshold)]

    def _heard(self, pcm16k: Pcm, text: str, threshold: float) -> bool:
        name = self._kws_searches.get((text, threshold))
        if name is None:
            name = self._kws_searches[(text, threshold)] = f"kws{len(self._kws_searches)}"
            keyfile = self._keyfile(text, threshold)
            try:
                self._kws.add_kws(name, keyfile)
            finally:
                os.unlink(keyfile)
        if self._kws.current_search() != name:
            self._kws.activate_search(name)
        return text.lower() in self._run(self._kws, pcm16k)

    def _run(self, dec: Any, pcm16k: Pcm) -> list[str]:
        dec.start_utt()
        dec.process_raw(pcm16k.astype("<i2").tobytes(), full_utt=True)
        dec.end_utt()
        return [str(s.word).strip() for s in (dec.seg() or []) if str(s.word).strip() not in _NOISE]

    def digits(self, pcm16k: Pcm) -> list[str]:
        return [w.split("(")[0] for w in self._run(self._digits, pcm16k)]

    def pronounce(self, phrase: str) -> list[str]:
        out: list[str] = []
        for word in phrase.lower().split():
            p = self._digits.lookup_word(word)
            if not p:
                raise ValueError(f"{word!r} is not in the pronunciation dictionary")
            out += str(p).split()
        return out


def load_backend(spec: str | None = None, model_dir: str | None = None) -> AsrBackend:
    """``None``/"pocketsphinx" → default; "pkg.module:Class" → operator backend built with ``model_dir``.

    Lets a site plug a Chinese or larger model from a local path without this
    module knowing about it; nothing is ever downloaded.
    """
    if spec in (None, "", "pocketsphinx"):
        return PocketsphinxBackend(model_dir)
    module, _, name = str(spec).partition(":")
    cls = getattr(importlib.import_module(module), name)
    backend: AsrBackend = cls(model_dir) if model_dir else cls()
    return backend


_worker: AsrBackend | None = None


def _worker_init(spec: str | None, model_dir: str | None) -> None:
    global _worker
    _worker = load_backend(spec, model_dir)


def _worker_call(method: str, *args: Any) -> list[str]:
    assert _worker is not None
    result: list[str] = getattr(_worker, method)(*args)
    return result


class ProcessBackend:
    """Any backend, run in a child process.

    pocketsphinx holds the GIL while it decodes (measured: the event loop
    stalled for the whole 0.5 s of a decode), which would delay call control
    and starve the RTP receiver. In a child process a decode costs the engine
    only the hand-over of the audio. Calls block the calling thread (never
    the event loop's: the tap decodes on its own worker thread).
    """

    def __init__(self, spec: str | None = None, model_dir: str | None = None):
        ctx = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(1, mp_context=ctx, initializer=_worker_init, initargs=(spec, model_dir))
        self._pronunciations: dict[str, list[str]] = {}

    def keyphrases(self, pcm16k: Pcm, phrases: Keyphrases) -> list[str]:
        return self._pool.submit(_worker_call, "keyphrases", pcm16k, phrases).result()

    def digits(self, pcm16k: Pcm) -> list[str]:
        return self._pool.submit(_worker_call, "digits", pcm16k).result()

    def pronounce(self, phrase: str) -> list[str]:
        if phrase not in self._pronunciations:
            self._pronunciations[phrase] = self._pool.submit(_worker_call, "pronounce", phrase).result()
        return self._pronunciations[phrase]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def find_card(digits: str) -> str | None:
    """A Luhn-valid 13-19 digit run with a card issuer's first digit (2-6).

    One inserted digit is tolerated ("four oh one one…" for "four one one…" is
    the recogniser's usual slip); that raises false alarms on long random
    digit strings, which for an alert that triggers masking is the right side to err on.
    """
    for length in (16, 15, 19, 18, 17, 14, 13):
        for i in range(len(digits) - length + 1):
            cand = digits[i:i + length]
            if cand[0] in _ISSUER and luhn_ok(cand):
                return cand
        for i in range(len(digits) - length):
            window = digits[i:i + length + 1]
            for k in range(1, length):
                cand = window[:k] + window[k + 1:]
                if cand[0] in _ISSUER and luhn_ok(cand):
                    return cand
    return None


@dataclass(frozen=True)
class Phrase:
    text: str
    kind: Literal["disclosure", "risk"]
    threshold: float = 1e-50  # keyphrase detection threshold: smaller finds more, and more falsely


@dataclass
class KeywordSpotter:
    """Cuts one direction's audio into utterances on VAD pauses and spots phrases and cards in each.

    Decoding per utterance (not per frame) keeps the recogniser off the hot
    path: at most one decode per pause, which a caller may push to a thread.
    """

    backend: AsrBackend
    phrases: Sequence[Phrase]
    direction: Direction
    rate: int = 8000
    detect_cards: bool = True
    card_last4: bool = False
    pause_s: float = 0.5
    max_utterance_s: float = 20.0
    _keyphrases: Keyphrases = ()
    _buf: list[Pcm] = field(default_factory=list)
    _start: float = 0.0
    _silent: float = 0.0
    _voiced_any: bool = False
    _length: float = 0.0
    spotted: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        for phrase in self.phrases:
            self.backend.pronounce(phrase.text)  # every word must be in the dictionary (ValueError)
        self._keyphrases = tuple((p.text, p.threshold) for p in self.phrases)

    def feed(self, t: float, pcm: Pcm, voiced: bool) -> list[Payload]:
        """Add one frame at media time ``t``; returns events when an utterance closes."""
        utterance = self.push(t, pcm, voiced)
        return self.analyse(*utterance) if utterance is not None else []

    def push(self, t: float, pcm: Pcm, voiced: bool) -> tuple[Pcm, float] | None:
        """Add one frame; returns a closed utterance (16 kHz audio, start offset) to :meth:`analyse`.

        Split from the decoding so a live tap can cut utterances on the
        frame path and decode them on another thread.
        """
        if voiced and not self._voiced_any:
            self._start, self._buf = t, self._buf[-10:]  # keep 200 ms of lead-in
            self._voiced_any = True
        self._buf.append(pcm)
        self._silent = 0.0 if voiced else self._silent + len(pcm) / self.rate
        if not self._voiced_any:
            self._buf = self._buf[-10:]
            return None
        self._length += len(pcm) / self.rate
        if self._silent >= self.pause_s or self._length >= self.max_utterance_s:
            return self.close()
        return None

    def close(self) -> tuple[Pcm, float] | None:
        """The utterance in progress, if any (end of stream)."""
        if not self._voiced_any or not self._buf:
            return None
        pcm = np.concatenate(self._buf)
        self._buf, self._voiced_any, self._length = [], False, 0.0
        return (upsample_8k_to_16k(pcm) if self.rate == 8000 else pcm), self._start

    def flush(self) -> list[Payload]:
        utterance = self.close()
        return self.analyse(*utterance) if utterance is not None else []

    def analyse(self, pcm16k: Pcm, at: float) -> list[Payload]:
        events: list[Payload] = []
        if self.phrases:
            heard = set(self.backend.keyphrases(pcm16k, self._keyphrases))
            for phrase in self.phrases:
                if phrase.text in heard:
                    self.spotted.add(phrase.text)
                    events.append(CallAnalyticsKeyword(direction=self.direction, phrase=phrase.text,
                                                       kind=phrase.kind, at=round(at, 2), confidence=1.0))
        if self.detect_cards:
            card = self._cards(pcm16k)
            if card is not None:
                events.append(CallAnalyticsCardNumberSpoken(
                    direction=self.direction, at=round(at, 2), ends_at=round(at + len(pcm16k) / 16000, 2),
                    digits_count=card[0], last4=card[1]))
        return events

    def _cards(self, pcm16k: Pcm) -> tuple[int, str] | None:
        """(digit count, last four or "") of a spoken card; the number itself is dropped here."""
        spoken = "".join(DIGITS[w] for w in self.backend.digits(pcm16k) if w in DIGITS)
        if len(spoken) < 13:
            return None
        card = find_card(spoken)
        if card is None:
            return None
        result = (len(card), card[-4:] if self.card_last4 else "")
        del card, spoken
        return result


def default_model_dir() -> str | None:
    """A site model directory from ``CCENGINE_ASR_MODEL_DIR``, else the bundled model."""
    return os.environ.get("CCENGINE_ASR_MODEL_DIR") or None


@dataclass
class DisclosureTracker:
    """Flags each required disclosure not spotted by its deadline (or by the call's end)."""

    required: dict[str, float | None]  # phrase -> deadline offset in seconds, None = end of call
    flagged: set[str] = field(default_factory=set)

    def check(self, now: float, spotted: set[str], ended: bool = False) -> list[Payload]:
        events: list[Payload] = []
        for phrase, deadline in self.required.items():
            if phrase in spotted or phrase in self.flagged:
                continue
            if (deadline is not None and now >= deadline) or ended:
                self.flagged.add(phrase)
                events.append(CallAnalyticsDisclosureMissing(phrase=phrase, deadline=round(
                    deadline if deadline is not None else now, 2)))
        return events
