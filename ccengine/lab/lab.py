"""The lab: two Asterisk 22 instances on loopback, ``pbx`` and ``peer``.

``pbx`` is the switch ccengine controls. ``peer`` is the outside world: the
carrier that delivers customer calls and the agents' softphones, connected to
``pbx`` by a real PJSIP trunk with RTP. Folders the engine and Asterisk both
touch (recordings, prompts) are bind-mounted into the chroot at their own
paths, so one path means the same file on both sides.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..speech import synthesize, tone_loop
from .chroot import LabError, ensure_chroot, is_ready
from .instance import AsteriskInstance

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "config" / "asterisk"
DIALPLANS = ROOT / "dialplans" / "asterisk"

CUSTOMER_LINES = (
    "Hello, I am calling about my credit card. I noticed a payment I do not recognise "
    "on my last statement, and I would like to understand what it is."
)
AGENT_LINES = (
    "Thank you for calling Lab Bank, this call is recorded. My name is Alice. "
    "I can certainly help you with that payment. Let me check your account now."
)


LAB_AGENTS = 40


def agent_endpoints(count: int, peer_sip_port: int) -> str:
    """PJSIP endpoint + AOR for softphones agent1..agentN on the peer."""
    blocks = []
    for i in range(1, count + 1):
        blocks.append(
            f"[agent{i}]\ntype = endpoint\ntransport = transport-udp\ncontext = from-peer\ndisallow = all\n"
            f"allow = ulaw,alaw\ndirect_media = no\nrtp_symmetric = yes\ndtmf_mode = rfc4733\naors = agent{i}\n\n"
            f"[agent{i}]\ntype = aor\ncontact = sip:agent{i}@127.0.0.1:{peer_sip_port}\nqualify_frequency = 0\n"
        )
    return "\n".join(blocks)


@dataclass(frozen=True)
class InstanceStatus:
    name: str
    pid: int | None
    ami_port: int
    http_port: int
    sip_port: int


class Lab:
    def __init__(self, settings: Settings):
        self.settings = settings
        lab = settings.lab
        self.chroot = lab.chroot_dir
        self.state_dir = lab.state_dir
        self.pbx = AsteriskInstance("pbx", self.chroot, self.state_dir / "pbx", lab.pbx)
        self.peer = AsteriskInstance("peer", self.chroot, self.state_dir / "peer", lab.peer)

    @property
    def instances(self) -> tuple[AsteriskInstance, AsteriskInstance]:
        return (self.pbx, self.peer)

    @property
    def moh_dir(self) -> Path:
        return self.state_dir / "sounds" / "moh"

    @property
    def voices_dir(self) -> Path:
        return self.state_dir / "sounds" / "voices"

    def shared_dirs(self) -> list[Path]:
        """Host folders Asterisk must see at the same path: lab state and engine state."""
        paths = self.settings.paths
        wanted = [self.state_dir, paths.state_dir, paths.recordings_dir, paths.sounds_dir]
        unique: list[Path] = []
        for path in sorted({p.resolve() for p in wanted}, key=lambda p: len(p.parts)):
            if not any(path.is_relative_to(top) for top in unique):
                unique.append(path)
        return unique

    def up(self) -> list[InstanceStatus]:
        ensure_chroot(self.chroot)
        for path in self.shared_dirs():
            path.mkdir(parents=True, exist_ok=True)
            self._bind(path)
        self._make_sounds()
        pbx_cfg = self.settings.pbx
        common = {
            "moh_dir": str(self.moh_dir),
            "voices_dir": str(self.voices_dir),
            "ari_app": pbx_cfg.ari.app,
            "ari_username": pbx_cfg.ari.username,
            "ari_password": pbx_cfg.ari.password,
            "pbx_sip_port": str(self.pbx.ports.sip_port),
            "peer_sip_port": str(self.peer.ports.sip_port),
            "agent_endpoints": agent_endpoints(LAB_AGENTS, self.peer.ports.sip_port),
        }
        self.pbx.render([TEMPLATES / "common", TEMPLATES / "pbx", DIALPLANS / "pbx.conf"],
                        {**common, "ami_username": pbx_cfg.ami.username, "ami_secret": pbx_cfg.ami.secret})
        self.peer.render([TEMPLATES / "common", TEMPLATES / "peer", DIALPLANS / "peer.conf"],
                         {**common, "ami_username": self.settings.lab.peer_ami_username,
                          "ami_secret": self.settings.lab.peer_ami_secret})
        for instance in self.instances:
            if instance.running():
                instance.cli("core reload")  # apply re-rendered configuration to a running lab
            else:
                instance.start()
        return self.status()

    def down(self) -> list[str]:
        stopped = [i.name for i in self.instances if i.stop()]
        for path in reversed(self.shared_dirs()):
            self._unbind(path)
        return stopped

    def restart(self, name: str) -> None:
        instance = self.pbx if name == "pbx" else self.peer
        instance.stop()
        instance.start()

    def status(self) -> list[InstanceStatus]:
        return [InstanceStatus(i.name, i.pid(), i.ports.ami_port, i.ports.http_port, i.ports.sip_port)
                for i in self.instances]

    def chroot_ready(self) -> bool:
        return is_ready(self.chroot)

    def _make_sounds(self) -> None:
        tone_loop(self.moh_dir / "hold.wav")
        synthesize(CUSTOMER_LINES, self.voices_dir / "customer" / "talk.wav", voice="en-us+m3", speed=160)
        synthesize(AGENT_LINES, self.voices_dir / "agent" / "talk.wav", voice="en-us+f3", speed=170)

    def _mount_point(self, path: Path) -> Path:
        return self.chroot / path.relative_to("/")

    def _bind(self, path: Path) -> None:
        bind_into(path, self._mount_point(path))

    def _unbind(self, path: Path) -> None:
        target = self._mount_point(path)
        if _is_mounted(target):
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def bind_into(path: Path, target: Path) -> None:
    """Make ``target`` show the folder ``path``, replacing whatever else is mounted there.

    A mount left by an earlier run can outlive its source: a checkout deleted and
    cloned again at the same path leaves the chroot showing the deleted folder.
    Only a mount of this very folder (same device and inode) is kept.
    """
    if _is_mounted(target):
        if _same_folder(path, target):
            return
        subprocess.run(["umount", "-l", str(target)], capture_output=True)
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "--bind", str(path), str(target)], capture_output=True, text=True)
    if result.returncode != 0:
        raise LabError(f"cannot bind-mount {path} into the chroot (root needed): {result.stderr.strip()}")
    if not _same_folder(path, target):
        raise LabError(f"{target} does not show {path} after binding it")


def _same_folder(a: Path, b: Path) -> bool:
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _is_mounted(target: Path) -> bool:
    wanted = str(target)
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[4] == wanted for line in lines if len(line.split()) > 4)
