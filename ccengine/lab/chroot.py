"""Build, once per machine, the Debian-unstable chroot that carries Asterisk 22.

Debian 12 ships no Asterisk; unstable does. The chroot is built with
debootstrap from the mirror this machine's own apt sources name (never a
hard-coded host), into a temporary folder that is renamed into place only
when complete, so an interrupted build is never mistaken for a good one.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGES = ("asterisk", "asterisk-modules", "asterisk-core-sounds-en-gsm", "sox")
READY_MARK = ".ccengine-ready"
APT_SOURCES = (Path("/etc/apt/sources.list.d"), Path("/etc/apt/sources.list"))


class LabError(RuntimeError):
    """The lab cannot be provisioned or run; the message says what to do."""


def _uris_from_deb822(text: str) -> list[str]:
    uris: list[str] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(
            (m.group(1).lower(), m.group(2).strip())
            for m in re.finditer(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M)
        )
        if "deb" not in fields.get("types", "").split():
            continue
        if "security" in fields.get("suites", "") or fields.get("enabled", "yes").lower() == "no":
            continue
        uris.extend(fields.get("uris", "").split())
    return uris


def _uris_from_list(text: str) -> list[str]:
    uris = []
    for line in text.splitlines():
        parts = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
        if not parts or parts[0] != "deb":
            continue
        parts = parts[1:]
        if len(parts) >= 2 and "security" not in parts[1]:
            uris.append(parts[0])
    return uris


def debian_mirror(sources: tuple[Path, ...] = APT_SOURCES) -> str:
    """The Debian mirror URI this machine's apt is configured with."""
    for source in sources:
        files = sorted(source.glob("*")) if source.is_dir() else [source]
        for file in files:
            if not file.is_file():
                continue
            text = file.read_text(errors="replace")
            found = _uris_from_deb822(text) if file.suffix == ".sources" else _uris_from_list(text)
            if found:
                return found[0]
    raise LabError("no Debian mirror found in the machine's apt sources")


def is_ready(chroot: Path) -> bool:
    return (chroot / READY_MARK).is_file() and (chroot / "usr/sbin/asterisk").exists()


def ensure_chroot(chroot: Path) -> Path:
    """Return a ready chroot at ``chroot``, building it if needed (needs root)."""
    if is_ready(chroot):
        return chroot
    if os.geteuid() != 0:
        raise LabError("building the lab chroot needs root (debootstrap, chroot, bind mounts)")
    if shutil.which("debootstrap") is None:
        raise LabError("debootstrap is missing: run `bin/setup-host` (apt-get install debootstrap)")
    mirror = debian_mirror()
    staging = chroot.with_name(chroot.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.parent.mkdir(parents=True, exist_ok=True)
    log.info("debootstrap sid into %s", staging)
    _run(["debootstrap", "--variant=minbase", "sid", str(staging), mirror])
    apt = "apt-get -o Acquire::Check-Valid-Until=false"
    _run(["chroot", str(staging), "/bin/sh", "-c",
          f"{apt} update -q && DEBIAN_FRONTEND=noninteractive {apt} install -y -q "
          f"--no-install-recommends {' '.join(PACKAGES)} && apt-get clean"])
    version = subprocess.run(["chroot", str(staging), "asterisk", "-V"], capture_output=True,
                             text=True, check=True).stdout.strip()
    (staging / READY_MARK).write_text(version + "\n")
    if chroot.exists():
        shutil.rmtree(chroot)
    staging.rename(chroot)
    log.info("lab chroot ready: %s", version)
    return chroot


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise LabError(f"{' '.join(cmd[:3])}… failed ({result.returncode}):\n{tail}")
