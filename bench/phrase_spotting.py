"""Phrase spotting on a labelled espeak-ng set at 8 kHz: hit rate, false alarms and RTF per method.

    .venv/bin/python bench/phrase_spotting.py [--methods phone,kws,lm] [--kws-thresholds 1e-20,1e-60,1e-90]

Positives: each configured phrase inside carrier sentences, said by male and
female espeak-ng variants at several speeds; negatives: unrelated contact-centre
sentences plus the other phrase's positives. Audio is espeak-ng → sox 8 kHz,
upsampled to 16 kHz for the bundled en-us model, as the live tap does.
Methods: ``phone`` (allphone decode + edit distance, the spotter's earlier method),
``kws`` (pocketsphinx keyphrase search, what KeywordSpotter now does, per phrase and
threshold; the shipped thresholds are checked on the other half of this set by
tests/unit/test_audio_phrases.py),
``lm`` (full decode with the bundled LM; the phrase must appear in the text).
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ccengine.audio.keywords import Pcm, PocketsphinxBackend, upsample_8k_to_16k

VOICES = [("en-us", 150), ("en-us+f3", 150), ("en-us+m3", 170), ("en-us+f2", 130), ("en+f3", 180),
          ("en+m3", 140), ("en-us+f4", 160), ("en+m7", 150)]
POSITIVE = {
    "this call is recorded": [
        "This call is recorded for quality and training purposes.", "Please note this call is recorded.",
        "Good morning, this call is recorded.", "Before we start, this call is recorded for your security.",
        "Thank you for calling, this call is recorded today."],
    "speak to a manager": [
        "I want to speak to a manager right now.", "Can I speak to a manager please?", "Let me speak to a manager.",
        "I would like to speak to a manager about this.", "This is ridiculous, I need to speak to a manager."],
}
NEGATIVE = [
    "I would like to check the balance of my savings account please.", "How can I help you today?",
    "Thank you for calling the bank, my name is Anna.", "My card was declined at the supermarket yesterday.",
    "Could you tell me when the payment will arrive?", "I moved house last month and need to update my address.",
    "Is there anything else I can help you with?", "The transfer should reach your account within two working days.",
    "Yes, that is correct, thank you very much.", "I am calling about a charge I do not recognise.",
    "Let me just check that for you, one moment please.", "Can you read me the last transaction on the statement?",
    "I spoke to someone last week about my mortgage.", "The weather has been terrible all week.",
    "Please confirm your date of birth.", "We will send a new card to your home address.",
    "I need to talk about my overdraft limit.", "Your call is important to us, please hold."]


def say(text: str, voice: str, speed: int) -> Pcm:
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
                         capture_output=True, check=True).stdout
    raw = subprocess.run(["sox", "-t", "wav", "-", "-r", "8000", "-c", "1", "-b", "16", "-e", "signed", "-t", "raw",
                          "-"], input=wav, capture_output=True, check=True).stdout
    return upsample_8k_to_16k(np.frombuffer(raw, dtype=np.int16).copy())


def labelled_set() -> tuple[dict[str, list[Pcm]], list[Pcm]]:
    """Every other (sentence, voice) pair per phrase (20 each) and every third for negatives (48)."""
    pos = {p: [say(s, v, sp) for i, (s, (v, sp)) in enumerate(itertools.product(sents, VOICES)) if i % 2 == 0]
           for p, sents in POSITIVE.items()}
    neg = [say(s, v, sp) for i, (s, (v, sp)) in enumerate(itertools.product(NEGATIVE, VOICES)) if i % 3 == 0]
    return pos, neg


heard = [0.0]  # seconds of audio decoded for the current table line
_VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}


def phone_distance(hyp: list[str], target: list[str]) -> float:
    """The replaced method: best normalised edit distance of ``target`` against any stretch of
    ``hyp``; vowel-for-vowel substitutions cost 0.5 (phone recognisers confuse vowels most)."""
    n = len(target)
    if n == 0:
        return 1.0
    prev = np.arange(n + 1, dtype=np.float64)
    best = prev[n]
    for h in hyp:
        cur = np.empty(n + 1)
        cur[0] = 0.0
        for j in range(1, n + 1):
            t = target[j - 1]
            sub = 0.0 if h == t else (0.5 if h in _VOWELS and t in _VOWELS else 1.0)
            cur[j] = min(prev[j] + 1.0, cur[j - 1] + 1.0, prev[j - 1] + sub)
        prev = cur
        best = min(best, cur[n])
    return float(best / n)


def table(name: str, fires: Callable[[str, Pcm], bool], pos: dict[str, list[Pcm]], neg: list[Pcm]) -> None:
    """One line per phrase; negatives of a phrase = unrelated speech + the other phrases' positives."""
    heard[0], t0 = 0.0, time.process_time()
    cells = []
    for phrase, ups in pos.items():
        negatives = neg + [u for other, us in pos.items() if other != phrase for u in us]
        hits = sum(fires(phrase, u) for u in ups)
        alarms = sum(fires(phrase, u) for u in negatives)
        cells.append(f"{phrase!r}: hit {hits}/{len(ups)}, false alarms {alarms}/{len(negatives)}")
    rtf = (time.process_time() - t0) / heard[0] if heard[0] else 0.0  # 0: decodes cached from the line above
    print(f"{name:<28} {'; '.join(cells)}; RTF {rtf:.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="phone,kws,lm")
    ap.add_argument("--max-distance", default="0.4,0.5,0.6")
    ap.add_argument("--kws-thresholds", default="1e-40,1e-60,1e-80")
    # The search's own beam must be far wider than the threshold (at 1e-80 it pruned the phrase before
    # it could score), and the phone-loop penalty decides how easily the phrase beats the background.
    ap.add_argument("--kws-beam", type=float, default=1e-150)
    ap.add_argument("--kws-plp", type=float, default=1e-10)
    args = ap.parse_args()
    import pocketsphinx

    pos, neg = labelled_set()
    model = Path(pocketsphinx.get_model_path()) / "en-us"
    methods = args.methods.split(",")
    if "phone" in methods:
        backend = PocketsphinxBackend()
        targets = {p: backend.pronounce(p) for p in pos}
        phones = pocketsphinx.Decoder(hmm=str(model / "en-us"), dict=str(model / "cmudict-en-us.dict"),
                                      allphone=str(model / "en-us-phone.lm.bin"), lw=2.0, beam=1e-20, pbeam=1e-20,
                                      loglevel="FATAL")
        cache: dict[int, list[str]] = {}

        def distance(phrase: str, u: Pcm) -> float:
            if id(u) not in cache:
                phones.start_utt()
                phones.process_raw(u.tobytes(), full_utt=True)
                phones.end_utt()
                cache[id(u)] = [str(seg.word) for seg in phones.seg() or [] if str(seg.word) not in ("SIL", "+NSN+")]
                heard[0] += len(u) / 16000
            return phone_distance(cache[id(u)], targets[phrase])
        for th in (float(x) for x in args.max_distance.split(",")):
            table(f"phone distance <= {th}", lambda p, u, th=th: distance(p, u) <= th, pos, neg)
    if "kws" in methods:
        for th in args.kws_thresholds.split(","):
            keyfile = Path("/tmp") / f"ccengine-kws-{th}.txt"
            keyfile.write_text("".join(f"{p} /{th}/\n" for p in pos))
            dec = pocketsphinx.Decoder(hmm=str(model / "en-us"), dict=str(model / "cmudict-en-us.dict"),
                                       kws=str(keyfile), beam=args.kws_beam, kws_plp=args.kws_plp,
                                       loglevel="FATAL")

            def kws(phrase: str, u: Pcm, dec: pocketsphinx.Decoder = dec) -> bool:
                heard[0] += len(u) / 16000
                dec.start_utt()
                dec.process_raw(u.tobytes(), full_utt=False)
                dec.end_utt()
                hyp = dec.hyp()
                return hyp is not None and phrase in hyp.hypstr
            table(f"kws {th} plp {args.kws_plp:g}", kws, pos, neg)
    if "lm" in methods:
        lm = pocketsphinx.Decoder(hmm=str(model / "en-us"), dict=str(model / "cmudict-en-us.dict"),
                                  lm=str(model / "en-us.lm.bin"), loglevel="FATAL")

        def text(phrase: str, u: Pcm) -> bool:
            heard[0] += len(u) / 16000
            lm.start_utt()
            lm.process_raw(u.tobytes(), full_utt=True)
            lm.end_utt()
            hyp = lm.hyp()
            return hyp is not None and phrase in hyp.hypstr
        table("lm decode, phrase in text", text, pos, neg)


if __name__ == "__main__":
    main()
