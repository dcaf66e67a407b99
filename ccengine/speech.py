"""Prompts and test voices generated offline with espeak-ng and sox.

Audio is written as 8 kHz mono 16-bit WAV, which Asterisk plays without
transcoding surprises. Files are cached by content hash so regenerating a lab
or restarting the engine costs nothing.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path


class SpeechError(RuntimeError):
    pass


def synthesize(text: str, out: Path, *, voice: str = "en-us", speed: int = 175, pitch: int = 50,
               amplitude: int = 100) -> Path:
    """Speak ``text`` into ``out`` (a .wav path); reuse the file if already made from the same input."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise SpeechError(f"{tool} is missing: run `bin/setup-host`")
    key = hashlib.sha256(f"{voice}|{speed}|{pitch}|{amplitude}|{text}".encode()).hexdigest()[:16]
    stamp = out.with_suffix(".key")
    if out.exists() and stamp.exists() and stamp.read_text() == key:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = out.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-a", str(amplitude),
                    "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
                    str(out)], check=True, capture_output=True)
    raw.unlink()
    stamp.write_text(key)
    return out


def tone_loop(out: Path, seconds: float = 8.0) -> Path:
    """A soft two-tone hold-music loop."""
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(out), "synth", str(seconds),
                    "sine", "440", "sine", "554", "tremolo", "2", "vol", "0.2"],
                   check=True, capture_output=True)
    return out
