"""Operator-provided models, loaded from local paths only: an ASR backend named in the analytics file
(run in the recogniser's child process) and a pyannote pipeline (offline, telemetry off)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from ccengine.audio.diarize import load_pyannote
from ccengine.audio.keywords import DIGITS, KeywordSpotter, Phrase, ProcessBackend
from tests.unit.test_audio_analysers import RATE, say, silence

pytestmark = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                                reason="espeak-ng and sox generate the test speech")
PHRASE = "this call is recorded"


def site_model(folder: Path) -> Path:
    """A model directory as a site would ship one: the bundled acoustic model and phone LM, and its own
    dictionary, which knows a word the bundled one does not and nothing beyond what it needs."""
    pocketsphinx = pytest.importorskip("pocketsphinx")
    bundled = Path(pocketsphinx.get_model_path()) / "en-us"
    folder.mkdir()
    (folder / "en-us").symlink_to(bundled / "en-us", target_is_directory=True)
    (folder / "en-us-phone.lm.bin").symlink_to(bundled / "en-us-phone.lm.bin")
    wanted = {*DIGITS, *PHRASE.split(), "my", "card", "number", "it's", "the", "and", "uh", "um", "expiry",
              "security", "code"}
    lines = [line for line in (bundled / "cmudict-en-us.dict").read_text().splitlines()
             if line.split(" ", 1)[0].split("(")[0] in wanted]
    (folder / "site.dict").write_text("\n".join([*lines, "ccengine S IY S IY EH N JH AH N"]) + "\n")
    return folder


def test_an_operator_backend_is_loaded_from_a_local_model_directory_in_the_child(tmp_path: Path) -> None:
    model = site_model(tmp_path / "site-model")
    # the form an analytics file names a site backend in (asr.backend: "module:Class", asr.model_dir)
    backend = ProcessBackend("ccengine.audio.keywords:PocketsphinxBackend", str(model))
    try:
        site_word = ["S", "IY", "S", "IY", "EH", "N", "JH", "AH", "N"]
        assert backend.pronounce("ccengine") == site_word  # only the site dictionary has it
        with pytest.raises(ValueError, match="not in the pronunciation dictionary"):
            backend.pronounce("balance")  # the bundled dictionary would: the site's is the one in use
        spotter = KeywordSpotter(backend, [Phrase(PHRASE, "disclosure")], "agent", rate=RATE, detect_cards=False)
        pcm = np.concatenate([say("Good morning, this call is recorded."), silence(0.8)])
        events = []
        for i in range(len(pcm) // 160):
            frame = pcm[i * 160:(i + 1) * 160]
            events += spotter.feed(i * 0.02, frame, bool(np.abs(frame).max() > 300))
        assert spotter.spotted == {PHRASE}, events
    finally:
        backend.close()


def test_pyannote_is_loaded_from_the_local_directory_offline_with_telemetry_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a stand-in package that records the environment it was imported in and the path it was given
    package = tmp_path / "site-packages" / "pyannote" / "audio"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text(
        "import os\n"
        "ENV_AT_IMPORT = {k: os.environ.get(k) for k in ('HF_HUB_OFFLINE', 'PYANNOTE_METRICS_ENABLED')}\n"
        "class Pipeline:\n"
        "    @classmethod\n"
        "    def from_pretrained(cls, path):\n"
        "        made = cls()\n"
        "        made.path = path\n"
        "        return made\n")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # whatever the environment says, loading stays offline
    monkeypatch.setenv("PYANNOTE_METRICS_ENABLED", "true")
    monkeypatch.syspath_prepend(str(package.parent.parent))
    assert "pyannote" not in sys.modules
    try:
        assert load_pyannote(tmp_path / "no-model-here") is None  # nothing to load, and nothing fetched instead
        model = tmp_path / "diarization"
        model.mkdir()
        (model / "config.yaml").write_text("pipeline: {}\n")
        pipeline = load_pyannote(model)
        assert pipeline is not None and pipeline.path == str(model / "config.yaml")
        assert sys.modules["pyannote.audio"].ENV_AT_IMPORT == {"HF_HUB_OFFLINE": "1",
                                                               "PYANNOTE_METRICS_ENABLED": "false"}
    finally:
        for name in ("pyannote.audio", "pyannote"):
            sys.modules.pop(name, None)
