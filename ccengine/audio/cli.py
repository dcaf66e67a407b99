"""``ccengine audio ...``: check an analytics file; diarize a mono recording after the call.

Live calls need no diarization (each tapped direction is one speaker); a
mixed or imported recording does, and that runs here, offline, with the
built-in MFCC fallback, resemblyzer when installed, or a pyannote pipeline
from a local model directory.
"""

from __future__ import annotations

import wave
from pathlib import Path

import click
import numpy as np

from ccengine.yamlconf import ConfigError

from .config import load_analytics
from .diarize import diarize, load_pyannote, pyannote_turns, resemblyzer_embedder


@click.group("audio")
def audio() -> None:
    """Call audio analytics."""


@audio.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def check(file: Path) -> None:
    """Validate an analytics file (config/analytics.yaml); every mistake as file:line:col: key: message."""
    try:
        config = load_analytics(file)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue))
        raise SystemExit(1) from None
    click.echo(f"ok: {len(config.phrases)} phrases, {len(config.queues)} queues with their own analysers")


@audio.command("diarize")
@click.argument("wav_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--speakers", type=click.IntRange(1, 10), default=2, show_default=True)
@click.option("--pyannote", "pyannote_dir", type=click.Path(exists=True, path_type=Path),
              help="local pyannote pipeline (config.yaml + weights); never downloaded")
def diarize_file(wav_file: Path, speakers: int, pyannote_dir: Path | None) -> None:
    """Who spoke when in a mono 16-bit WAV: one `start end speaker` line per turn."""
    with wave.open(str(wav_file), "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2 or wav.getframerate() not in (8000, 16000):
            raise click.BadParameter("expected mono 16-bit PCM at 8 or 16 kHz", param_hint="WAV_FILE")
        rate = wav.getframerate()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)
    if pyannote_dir is not None:
        pipeline = load_pyannote(pyannote_dir)
        if pipeline is None:
            raise click.ClickException("pyannote.audio is not installed")
        turns = pyannote_turns(pipeline, pcm, rate, speakers)
    else:
        turns = diarize(pcm, rate, speakers, embedder=resemblyzer_embedder())
    for turn in turns:
        click.echo(f"{turn.start:8.2f} {turn.end:8.2f} {turn.speaker}")
