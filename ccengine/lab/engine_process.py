"""An engine process for lab runs (tests, benchmarks): private settings, database and recordings."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ..config import DEFAULT_CONFIG
from .lab import ROOT


def write_engine_config(workdir: Path, *, queues: Path, flow: dict[str, Any] | None = None,
                        acd: dict[str, Any] | None = None, ivr: dict[str, Any] | None = None) -> Path:
    """The lab settings with state under ``workdir`` (which must be inside the bind-mounted var/)."""
    settings = yaml.safe_load(DEFAULT_CONFIG.read_text())
    settings["database"] = {"url": f"sqlite:///{workdir / 'ccengine.db'}"}
    settings["paths"] = {"state_dir": str(workdir), "recordings_dir": str(workdir / "recordings"),
                         "sounds_dir": str(ROOT / "var" / "sounds")}
    settings["lab"]["state_dir"] = str(ROOT / ".lab")
    settings["recording"] = {**settings.get("recording", {}), "vault_dir": str(workdir / "vault"),
                             "retention": str(ROOT / "config" / "retention.yaml")}
    settings["acd"]["queues"] = str(queues)
    settings["acd"].update(acd or {})
    settings["flow"].update(flow or {})
    settings["http_port"] = _free_port()  # the API: engines of parallel runs must not share a port
    if ivr:
        settings["ivr"] = {**settings.get("ivr", {}), **ivr}
    path = workdir / "ccengine.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn_engine(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`ccengine -c CONFIG run` in its own process, output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "ccengine.cli.main", "-c", str(config), "run"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
