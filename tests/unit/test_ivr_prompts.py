"""Generated IVR speech: espeak-ng runs once per text and voice; later plays (and later engines) reuse it."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

from ccengine.ivr.interpreter import Media
from ccengine.ivr.model import tree_from_text
from ccengine.ivr.prompts import PromptCache

TREE = """
version: 1
id: p
start: hello
nodes:
  hello: {type: play, say: {en: "Hello.", zh: "Ni hao."}, next: bye}
  bye: {type: hangup, say: "Goodbye {name}."}
"""


def test_speech_is_generated_once_and_cached_on_disk(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, {"en": "en-us"})
    tree = tree_from_text(TREE)
    assert cache.warm(tree) == 2  # both languages of the fixed prompt; the templated one on demand
    hello = (Media("Hello.", None, "en"),)
    uri = cache.cached(hello)
    assert uri is not None and uri.startswith(f"sound:{tmp_path / 'ivr'}")
    wav = Path(uri.removeprefix("sound:") + ".wav")
    with wave.open(str(wav)) as audio:
        assert audio.getframerate() == 8000 and audio.getnframes() > 1600  # at least 0.2 s of speech
    made = wav.stat().st_mtime_ns

    later = PromptCache(tmp_path, {"en": "en-us"})  # an engine restarted: nothing in memory
    assert later.cached(hello) is None
    both = asyncio.run(later.resolve((Media(None, "sound:beep", "en"), *hello)))
    assert both == f"sound:beep,{uri}"
    assert wav.stat().st_mtime_ns == made  # read back from disk, not spoken again
    assert later.cached(hello) == uri

    goodbye = asyncio.run(later.resolve((Media("Goodbye Ada.", None, "en"),)))
    assert goodbye != uri and Path(goodbye.removeprefix("sound:") + ".wav").exists()
    zh = cache.cached((Media("Ni hao.", None, "zh"),))
    assert zh is not None and zh != uri
