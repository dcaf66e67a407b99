"""Which router ``import ccengine.acd.router`` gives: the mypyc-compiled one only if it is current.

``make setup`` compiles ``router.py`` with mypyc into extension modules beside it
(``router.<suffix>`` and ``router__mypyc.<suffix>``), which Python's import then
prefers over the source, and records in ``router.sha256sums`` (``sha256sum``
format) the hash of the source it compiled and of each extension file. A build
whose record does not match (``router.py`` edited since, a file replaced, no
record) is refused: the package loads ``router.py`` itself instead, so an old
compiled router is never used by mistake. ``CCENGINE_PURE_ROUTER=1`` forces the
source too (profilers, comparisons).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import sys
from collections.abc import Mapping
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
MODULE = "ccengine.acd.router"
RECORD = "router.sha256sums"
FORCE_PURE = "CCENGINE_PURE_ROUTER"

log = logging.getLogger(__name__)


class Choice(NamedTuple):
    compiled: bool  # the extension module is the one imported
    refused: bool  # an extension exists but must not be used
    note: str  # why, for the engine's start-up log line


def extension_files(folder: Path) -> list[Path]:
    """The compiled router's files in ``folder`` (shim and mypyc library)."""
    return sorted(p for p in folder.iterdir()
                  if p.name.startswith(("router.", "router__mypyc.")) and p.name.endswith(tuple(EXTENSION_SUFFIXES)))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _forced(env: Mapping[str, str]) -> bool:
    return env.get(FORCE_PURE, "") not in ("", "0")


def check(folder: Path, env: Mapping[str, str] = os.environ) -> Choice:
    """Decide whether the compiled router in ``folder`` may be used."""
    built = extension_files(folder)
    if not built:
        return Choice(False, False, "not compiled (make setup compiles it with mypyc)")
    if _forced(env):
        return Choice(False, True, f"compiled module ignored: {FORCE_PURE} is set")
    try:
        lines = (folder / RECORD).read_text().splitlines()
    except OSError:
        return Choice(False, True, f"compiled module ignored: no build record {RECORD} (rebuild: make setup)")
    recorded = {}
    for line in lines:
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        recorded[Path(name.lstrip("*")).name] = digest
    expected = {"router.py", *(p.name for p in built)}
    if set(recorded) != expected:
        return Choice(False, True, f"compiled module ignored: {RECORD} lists {sorted(recorded)}, "
                                   f"the folder holds {sorted(expected)} (rebuild: make setup)")
    if recorded["router.py"] != _sha256(folder / "router.py"):
        return Choice(False, True, "compiled module ignored: it was built from another router.py (rebuild: make setup)")
    for path in built:
        if recorded[path.name] != _sha256(path):
            return Choice(False, True, f"compiled module ignored: {path.name} is not the file the build recorded "
                                       "(rebuild: make setup)")
    return Choice(True, False, "compiled (mypyc)")


def load_source(name: str) -> ModuleType:
    """Execute ``router.py`` itself as module ``name`` (registered in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(name, HERE / "router.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def select() -> Choice:
    """Run once by the package: when the compiled router is refused, load the source in its place."""
    choice = check(HERE)
    if choice.refused and MODULE not in sys.modules:
        if not _forced(os.environ):
            log.warning("ACD router: %s; using router.py", choice.note)
        load_source(MODULE)
    return choice
