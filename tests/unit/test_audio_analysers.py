"""Analysers on real synthetic speech (espeak-ng → sox, 8 kHz telephone band), generated at test time."""

from __future__ import annotations

import functools
import shutil
import subprocess

import numpy as np
import numpy.typing as npt
import pytest

from ccengine.audio.agitation import AgitationSettings, score_signal
from ccengine.audio.diarize import Turn, der, diarize
from ccengine.audio.events import (
    CallAnalyticsCardNumberSpoken,
    CallAnalyticsKeyword,
    CallAnalyticsSilence,
)
from ccengine.audio.vad import FrameVad, VadSettings, analyse_two_channel

pytestmark = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                                reason="espeak-ng and sox generate the test speech")
RATE = 8000
Pcm = npt.NDArray[np.int16]


@functools.cache
def say(text: str, voice: str = "en-us", speed: int = 150, amplitude: int = 100, pitch: int = 50) -> Pcm:
    """Speech at 8 kHz with leading/trailing silence trimmed, so its length is the talk time."""
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-a", str(amplitude), "-p", str(pitch),
                          "--stdout", text], capture_output=True, check=True).stdout
    raw = subprocess.run(["sox", "-t", "wav", "-", "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed",
                          "-t", "raw", "-", "silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02",
                          "0.5%", "reverse"], input=wav, capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.int16).copy()


def silence(seconds: float) -> Pcm:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def two_channel(script: list[tuple[str, str | float]]) -> tuple[Pcm, Pcm, dict[str, float], list[float]]:
    """Lay out turns on two tracks; returns tracks, talk time per speaker and the silences' start times."""
    tracks: dict[str, list[Pcm]] = {"agent": [], "customer": []}
    talk = {"agent": 0.0, "customer": 0.0}
    silences = []
    t = 0.0
    for who, what in script:
        if isinstance(what, float):
            silences.append(t)
            piece = silence(what)
            tracks["agent"].append(piece)
            tracks["customer"].append(piece)
        else:
            voice = "en-us" if who == "agent" else "en-us+f3"
            piece = say(what, voice)
            talk[who] += len(piece) / RATE
            tracks[who].append(piece)
            tracks["customer" if who == "agent" else "agent"].append(silence(len(piece) / RATE))
            gap = silence(0.6)
            tracks["agent"].append(gap)
            tracks["customer"].append(gap)
            t += 0.6
        t += len(piece) / RATE
    return np.concatenate(tracks["agent"]), np.concatenate(tracks["customer"]), talk, silences


SCRIPT: list[tuple[str, str | float]] = [
    ("agent", "Good morning, thank you for calling. How can I help you today?"),
    ("customer", "Hello. I would like to check the balance of my savings account."),
    ("agent", "Of course. Can you confirm your date of birth please?"),
    ("customer", "Yes, it is the fourth of July, nineteen eighty."),
    ("agent", "Thank you. Let me look that up for you."),
    ("agent", 8.0),
    ("agent", "Your balance is two thousand and forty dollars."),
    ("customer", "Great, that is all I needed. Goodbye."),
]


def test_talk_time_per_direction_and_planned_silence() -> None:
    agent, customer, talk, silences = two_channel(SCRIPT)
    call, events = analyse_two_channel(agent, customer, RATE, VadSettings(silence_event_s=5.0))
    summary = call.summary()
    for who in ("agent", "customer"):
        measured = float(summary[f"{who}_talk_s"])
        assert abs(measured - talk[who]) / talk[who] < 0.05, (who, measured, talk[who])
    found = [e for e in events if isinstance(e, CallAnalyticsSilence)]
    assert len(found) == 1
    planned = silences[0] - 0.6  # the silence begins when the last word ends, before the inter-turn gap
    assert abs(found[0].started_at - planned) <= 1.0
    assert summary["longest_silence_s"] >= 8.0
    # nobody talking: the planned silence and the gaps between turns (the turns never overlap here)
    quiet = len(agent) / RATE - sum(talk.values())
    assert abs(float(summary["silence_s"]) - quiet) / quiet < 0.05, (summary, quiet)


def test_no_silence_event_without_a_long_pause() -> None:
    agent, customer, _, _ = two_channel([t for t in SCRIPT if not isinstance(t[1], float)])
    _, events = analyse_two_channel(agent, customer, RATE, VadSettings(silence_event_s=5.0))
    assert not [e for e in events if isinstance(e, CallAnalyticsSilence)]


CALM = ["I am calling about my credit card statement.", "There is a charge I do not recognise from last week.",
        "Could you please look into it for me.", "It was about forty dollars at a shop in town.",
        "I have not been to that shop before.", "Thank you, I will wait while you check."]
ANGRY = ["This is absolutely unacceptable!", "I have called three times already and nobody helps me!",
         "I want my money back right now!", "Stop putting me on hold!"]


def _speech(lines: list[str], **kw: int) -> list[Pcm]:
    return [p for line in lines for p in (say(line, "en-us+m3", **kw), silence(0.5))]


def test_agitation_fires_for_the_agitated_customer_only() -> None:
    calm = np.concatenate(_speech(CALM + CALM[:3], amplitude=60, speed=150, pitch=40))
    agitated = np.concatenate(_speech(CALM[:4], amplitude=60, speed=150, pitch=40)
                              + _speech(ANGRY, amplitude=180, speed=230, pitch=85))
    settings = AgitationSettings()
    _, calm_events = score_signal(calm, RATE, settings)
    _, agitated_events = score_signal(agitated, RATE, settings)
    assert calm_events == []
    assert len(agitated_events) == 1
    ev = agitated_events[0]
    escalation = sum(len(p) for p in _speech(CALM[:4], amplitude=60, speed=150, pitch=40)) / RATE
    assert ev.started_at >= escalation - 0.5  # not during the calm part
    assert ev.loudness_z > 1.0  # and for an interpretable reason


def test_agitation_comparable_at_16k() -> None:
    x8 = np.concatenate(_speech(CALM[:4], amplitude=60) + _speech(ANGRY, amplitude=180, speed=230, pitch=85))
    x16 = np.interp(np.arange(0, len(x8), 0.5), np.arange(len(x8)), x8).astype(np.int16)
    s8, _ = score_signal(x8, 8000)
    s16, _ = score_signal(x16, 16000)
    n = min(len(s8), len(s16))
    assert abs(float(np.max(s8[:n]) - np.max(s16[:n]))) < 0.3


# -- keywords -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def backend():  # type: ignore[no-untyped-def]
    pytest.importorskip("pocketsphinx")
    from ccengine.audio.keywords import PocketsphinxBackend

    return PocketsphinxBackend()


def _frames(pcm: Pcm) -> list[tuple[float, Pcm, bool]]:
    vad = FrameVad(2)
    n = RATE // 50
    return [(i * 0.02, pcm[i * n:(i + 1) * n], vad.is_speech(pcm[i * n:(i + 1) * n], RATE))
            for i in range(len(pcm) // n)]


def _spot(backend, pcm: Pcm, phrases, direction="agent", **kw):  # type: ignore[no-untyped-def]
    from ccengine.audio.keywords import KeywordSpotter

    spotter = KeywordSpotter(backend, phrases, direction, rate=RATE, **kw)
    events = []
    for t, frame, voiced in _frames(pcm):
        events += spotter.feed(t, frame, voiced)
    return spotter, events + spotter.flush()


def test_disclosure_detected_in_one_call_and_missing_in_the_other(backend) -> None:  # type: ignore[no-untyped-def]
    from ccengine.audio.keywords import DisclosureTracker, Phrase

    phrases = [Phrase("this call is recorded", "disclosure")]
    with_it = np.concatenate([say("Good morning, this call is recorded for quality purposes."), silence(0.8),
                              say("How can I help you today?"), silence(0.8)])
    without = np.concatenate([say("Good morning, thank you for calling the bank."), silence(0.8),
                              say("How can I help you today?"), silence(0.8)])
    s1, ev1 = _spot(backend, with_it, phrases, detect_cards=False)
    s2, ev2 = _spot(backend, without, phrases, detect_cards=False)
    hits = [e for e in ev1 if isinstance(e, CallAnalyticsKeyword)]
    assert [h.phrase for h in hits] == ["this call is recorded"] and hits[0].at < 1.0
    assert s1.spotted == {"this call is recorded"}
    assert not ev2 and s2.spotted == set()
    required: dict[str, float | None] = {"this call is recorded": 30.0}
    assert DisclosureTracker(required).check(len(with_it) / RATE, s1.spotted, ended=True) == []
    missing = DisclosureTracker(required).check(len(without) / RATE, s2.spotted, ended=True)
    assert [(m.TYPE, m.model_dump()) for m in missing] == [
        ("call.analytics.disclosure_missing", {"phrase": "this call is recorded", "deadline": 30.0})]


def test_spoken_card_number_raises_event_without_digits(backend) -> None:  # type: ignore[no-untyped-def]
    pcm = np.concatenate([say("My card number is four one one one, one one one one, one one one one, "
                              "one one one one."), silence(0.8)])
    _, events = _spot(backend, pcm, [], direction="customer")
    cards = [e for e in events if isinstance(e, CallAnalyticsCardNumberSpoken)]
    assert len(cards) == 1 and cards[0].digits_count == 16
    dumped = cards[0].model_dump_json()
    assert "1111" not in dumped and "4111" not in dumped and cards[0].last4 == ""


def test_no_card_event_for_ordinary_speech(backend) -> None:  # type: ignore[no-untyped-def]
    pcm = np.concatenate([say("I would like to check the balance of my savings account please."), silence(0.8)])
    _, events = _spot(backend, pcm, [], direction="customer")
    assert not events


# -- diarization ----------------------------------------------------------------------
def test_mono_mix_diarization_der() -> None:
    lines = [("A", "Good morning, how can I help you today?"), ("B", "I lost my card yesterday evening."),
             ("A", "I am sorry to hear that. I will block it now."), ("B", "Thank you. Can you send a new one?"),
             ("A", "Yes, it will arrive within five working days."), ("B", "That is perfect, thank you very much."),
             ("A", "Is there anything else I can help you with?"), ("B", "No, that is all. Goodbye.")]
    pieces, ref, t = [], [], 0.0
    for who, text in lines:
        pcm = say(text, "en-us+m3" if who == "A" else "en-us+f2")
        ref.append(Turn(t, t + len(pcm) / RATE, who))
        pieces += [pcm, silence(0.2)]  # quick turn-taking: 200 ms gaps, shorter than the VAD merge gap
        t += len(pcm) / RATE + 0.2
    mix = np.concatenate(pieces)
    hyp = diarize(mix, RATE, k=2)
    score = der(ref, hyp, collar=0.25)
    print(f"DER collar 0.25 s = {score:.3f}, collar 0 = {der(ref, hyp, collar=0.0):.3f}")
    # 0.20: the research note measured MFCC+AHC at 12 % on espeak male/female with collar 0.25 s;
    # published pyannote 3.1 DER on real telephone speech (CALLHOME) is 28 %. Above 20 % on clean
    # synthetic two-voice speech would mean the fallback is broken, not just weak.
    assert score < 0.20
    assert der(ref, ref) == 0.0
    assert der(ref, [Turn(x.start, x.end, "A") for x in ref]) > 0.3  # one-speaker output is penalised
