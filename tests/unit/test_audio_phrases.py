"""Phrase spotting on speech the shipped thresholds were not chosen on.

``bench/phrase_spotting.py`` chose the thresholds in config/analytics.yaml on every other
(sentence, voice) pair of its labelled espeak-ng set (8 kHz, 8 voices of both genders). This
test runs the engine's spotter on pairs of the *other* half, held out. Bounds, from the whole
held-out half (20 with, 68 without each phrase: disclosure 19/20 heard and 0/68 false alarms at
1e-80, risk phrase 10/20 and 3/68 at 1e-30) with a margin for this 10-and-20 sample: the
disclosure heard in at least 8 of 10 with at most 1 false alarm in 20; the risk phrase, which
the bundled model hears only about half the time on this speech, in at least 3 of 10 with at
most 3 false alarms.
"""

from __future__ import annotations

import importlib.util
import itertools
import shutil
from pathlib import Path

import pytest

from ccengine.audio.config import load_analytics
from ccengine.audio.keywords import KeywordSpotter, Phrase, PocketsphinxBackend

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                                reason="espeak-ng and sox generate the test speech")


def bench_set():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("phrase_spotting", ROOT / "bench" / "phrase_spotting.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_thresholds_hold_on_held_out_voices_and_sentences() -> None:
    bench = bench_set()
    config = load_analytics(ROOT / "config" / "analytics.yaml")
    phrases = [config.phrases[name].phrase() for name in ("recorded", "manager")]
    backend = PocketsphinxBackend()
    spotter = KeywordSpotter(backend, phrases, "mixed", rate=16000, detect_cards=False)
    held_out = {p: [pair for i, pair in enumerate(itertools.product(sentences, bench.VOICES)) if i % 2 == 1][::2]
                for p, sentences in bench.POSITIVE.items()}
    unrelated = [pair for i, pair in enumerate(itertools.product(bench.NEGATIVE, bench.VOICES)) if i % 3 == 1][:20]

    def heard(sentence: str, voice: tuple[str, int]) -> set[str]:
        return {event.phrase for event in spotter.analyse(bench.say(sentence, *voice), 0.0)}  # type: ignore[attr-defined]

    hits = {p.text: sum(p.text in heard(s, v) for s, v in held_out[p.text]) for p in phrases}
    alarms: dict[str, int] = dict.fromkeys(hits, 0)
    for sentence, voice in unrelated:
        for text in heard(sentence, voice):
            alarms[text] += 1
    assert all(len(pairs) == 10 for pairs in held_out.values()) and len(unrelated) == 20
    assert hits["this call is recorded"] >= 8, (hits, alarms)
    assert hits["speak to a manager"] >= 3, (hits, alarms)
    assert alarms["this call is recorded"] <= 1 and alarms["speak to a manager"] <= 3, (hits, alarms)


def test_a_word_the_dictionary_lacks_is_refused_when_the_spotter_is_built() -> None:
    with pytest.raises(ValueError, match="not in the pronunciation dictionary"):
        KeywordSpotter(PocketsphinxBackend(), [Phrase("speak to a zxqvbn", "risk")], "customer")
