"""One Asterisk process of the lab, run from the shared chroot.

Each instance has its own rendered configuration and writable folders under
the lab state folder; the chroot only provides binaries and stock sounds. A
PID file records what *we* started, so ``down`` never touches an Asterisk
somebody else runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import LabInstance
from .chroot import LabError

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
ASTERISK = "/usr/sbin/asterisk"


def render_template(text: str, values: dict[str, str], source: str) -> str:
    """Replace ``{{name}}`` placeholders; an unknown name is an error, not a silent blank."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise LabError(f"{source}: unknown template variable {{{{{name}}}}}")
        return values[name]

    return _PLACEHOLDER.sub(sub, text)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class AsteriskInstance:
    name: str
    chroot: Path
    state_dir: Path
    ports: LabInstance

    @property
    def etc_dir(self) -> Path:
        return self.state_dir / "etc"

    @property
    def conf_file(self) -> Path:
        return self.etc_dir / "asterisk.conf"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "asterisk.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "log" / "messages.log"

    def render(self, sources: list[Path], values: dict[str, str]) -> None:
        """Render every template file in ``sources`` (later folders win) into etc/."""
        for sub in ("etc", "log", "run", "spool", "db", "keys", "cache"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        values = {**values, "instance": self.name, "etc_dir": str(self.etc_dir),
                  "state_dir": str(self.state_dir), "ami_port": str(self.ports.ami_port),
                  "http_port": str(self.ports.http_port), "sip_port": str(self.ports.sip_port),
                  "rtp_start": str(self.ports.rtp_start), "rtp_end": str(self.ports.rtp_end)}
        for source in sources:
            files = sorted(source.glob("*.conf")) if source.is_dir() else [source]
            for file in files:
                target = self.etc_dir / (file.name if source.is_dir() else "extensions.conf")
                target.write_text(render_template(file.read_text(), values, str(file)))

    def pid(self) -> int | None:
        """PID of the Asterisk we started, if it is still that process."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if str(self.conf_file).encode() in cmdline and any(b"asterisk" in part for part in cmdline):
            return pid
        return None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, boot_timeout: float = 60.0) -> None:
        if self.running():
            return
        for port in (self.ports.ami_port, self.ports.http_port):
            if port_in_use(port):
                raise LabError(f"{self.name}: port {port} is already used by another program")
        if not (self.chroot / self.conf_file.relative_to("/")).is_file():
            raise LabError(f"{self.name}: {self.conf_file} is not visible inside the chroot {self.chroot}; "
                           "its state folder must be bind-mounted there (`ccengine lab up` does it)")
        console = (self.state_dir / "log" / "console.log").open("ab")
        proc = subprocess.Popen(
            ["chroot", str(self.chroot), ASTERISK, "-f", "-n", "-C", str(self.conf_file)],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        console.close()
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + boot_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LabError(f"{self.name}: asterisk exited with {proc.returncode}; see {self.log_file}\n"
                               + self._console_tail())
            if port_in_use(self.ports.ami_port) and port_in_use(self.ports.http_port):
                out = self.cli("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
                if "fully booted" in out.lower():
                    return
            time.sleep(0.2)
        raise LabError(f"{self.name}: asterisk did not boot within {boot_timeout:.0f} s; see {self.log_file}\n"
                       + self._console_tail())

    def _console_tail(self, lines: int = 15) -> str:
        """The last lines Asterisk printed: why it did not boot, where CI keeps nothing else."""
        try:
            text = (self.state_dir / "log" / "console.log").read_text(errors="replace")
        except OSError:
            return "(no console output)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop the instance we started; returns False if none of ours was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            _reap(pid)
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def cli(self, command: str, timeout: float = 20.0) -> str:
        """Run an Asterisk CLI command through the instance's control socket."""
        result = subprocess.run(
            ["chroot", str(self.chroot), ASTERISK, "-C", str(self.conf_file), "-rx", command],
            capture_output=True, text=True, timeout=timeout,
        )
        return result.stdout + result.stderr


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
