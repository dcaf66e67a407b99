"""Prompt media for the IVR: generated speech (espeak-ng, cached on disk and in memory) or sound files."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..speech import synthesize
from .interpreter import Media
from .model import Prompt, Tree


class PromptCache:
    def __init__(self, sounds_dir: Path, voices: Mapping[str, str]):
        self.dir = sounds_dir / "ivr"
        self.voices = dict(voices)
        self._uris: dict[tuple[str, str], str] = {}

    def _speech(self, text: str, language: str) -> str:
        key = (text, language)
        uri = self._uris.get(key)
        if uri is None:
            voice = self.voices.get(language, language)
            name = hashlib.sha256(f"{voice}|{text}".encode()).hexdigest()[:20]
            wav = synthesize(text, self.dir / f"{name}.wav", voice=voice, speed=185)
            uri = self._uris[key] = f"sound:{wav.with_suffix('')}"
        return uri

    def cached(self, media: Iterable[Media]) -> str | None:
        """Media URIs joined for one ARI play, if every piece is ready (no I/O)."""
        out = []
        for m in media:
            if m.sound:
                out.append(m.sound)
            if m.text:
                uri = self._uris.get((m.text, m.language))
                if uri is None:
                    return None
                out.append(uri)
        return ",".join(out)

    def resolve_blocking(self, media: Iterable[Media]) -> str:
        out = []
        for m in media:
            if m.sound:
                out.append(m.sound)
            if m.text:
                out.append(self._speech(m.text, m.language))
        return ",".join(out)

    async def resolve(self, media: tuple[Media, ...]) -> str:
        ready = self.cached(media)
        if ready is not None:
            return ready
        return await asyncio.to_thread(self.resolve_blocking, media)

    def warm(self, tree: Tree) -> int:
        """Generate every fixed prompt of ``tree`` now, so callers never wait for speech synthesis."""
        count = 0
        for node in tree.nodes.values():
            for value in node.__dict__.values():
                if isinstance(value, Prompt):
                    for text, language in _texts(value, tree.language):
                        if "{" not in text:
                            self._speech(text, language)
                            count += 1
        return count


def _texts(prompt: Prompt, default: str) -> list[tuple[str, Any]]:
    if prompt.say is None:
        return []
    if isinstance(prompt.say, str):
        return [(prompt.say, default)]
    return [(text, language) for language, text in prompt.say.items()]
