"""``ccengine audio check`` and ``ccengine audio diarize`` on real files."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from ccengine.audio.diarize import Turn, der
from ccengine.cli.main import main
from tests.unit.test_audio_analysers import RATE, pytestmark, say, silence

__all__ = ["pytestmark"]
ROOT = Path(__file__).resolve().parents[2]


def test_check_reports_located_errors_and_accepts_the_shipped_file(tmp_path: Path) -> None:
    ok = CliRunner().invoke(main, ["audio", "check", str(ROOT / "config" / "analytics.yaml")])
    assert ok.exit_code == 0 and ok.output.startswith("ok: 2 phrases, 2 queues")
    bad = tmp_path / "analytics.yaml"
    bad.write_text("agitation:\n  threshold: -1\n")
    result = CliRunner().invoke(main, ["audio", "check", str(bad)])
    assert result.exit_code == 1 and f"{bad}:2:" in result.output and "agitation.threshold" in result.output


def test_diarize_a_mono_recording(tmp_path: Path) -> None:
    lines = [("A", "Good morning, how can I help you today?"), ("B", "I lost my card yesterday evening."),
             ("A", "I am sorry to hear that. I will block it now."), ("B", "Thank you. Can you send a new one?"),
             ("A", "Yes, it will arrive within five working days."), ("B", "That is perfect, thank you.")]
    pieces, ref, t = [], [], 0.0
    for who, text in lines:
        pcm = say(text, "en-us+m3" if who == "A" else "en-us+f2")
        ref.append(Turn(t, t + len(pcm) / RATE, who))
        pieces += [pcm, silence(0.3)]
        t += len(pcm) / RATE + 0.3
    path = tmp_path / "call.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(np.concatenate(pieces).astype("<i2").tobytes())
    result = CliRunner().invoke(main, ["audio", "diarize", str(path), "--speakers", "2"])
    assert result.exit_code == 0, result.output
    hyp = [Turn(float(a), float(b), spk) for a, b, spk in (line.split() for line in result.output.splitlines())]
    assert {t.speaker for t in hyp} == {"S0", "S1"}
    assert der(ref, hyp) < 0.20  # the threshold justified in test_audio_analysers.test_mono_mix_diarization_der


def test_diarize_refuses_stereo(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(bytes(RATE * 4))
    result = CliRunner().invoke(main, ["audio", "diarize", str(path)])
    assert result.exit_code == 2 and "mono 16-bit" in result.output
