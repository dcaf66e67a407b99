"""Engine settings: one YAML file, validated once at start.

Relative paths in the file are resolved against the file's own directory so
that ``ccengine -c config/ccengine.yaml`` works from any working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .api.settings import ApiSettings
from .payment.settings import PaymentSettings
from .yamlconf import load_model

Port = Annotated[int, Field(ge=1, le=65535)]
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "ccengine.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AmiSettings(_Strict):
    host: str = "127.0.0.1"
    port: Port = 15038
    username: str
    secret: str
    ping_interval: float = Field(5.0, gt=0, description="seconds between liveness pings")
    ping_timeout: float = Field(3.0, gt=0, description="a ping unanswered this long means half-open")


class AriSettings(_Strict):
    url: str = "http://127.0.0.1:18088/ari"
    username: str
    password: str
    app: str = "ccengine"


class PbxSettings(_Strict):
    kind: str = Field("asterisk", pattern="^(asterisk)$")
    ami: AmiSettings
    ari: AriSettings
    agent_dial: str = Field(
        "PJSIP/{agent}@peer",
        description="dial string template for an agent's phone; {agent} is the agent id",
    )
    customer_dial: str = Field(
        "PJSIP/{number}@peer",
        description="dial string template to call a customer back; {number} is their number",
    )
    event_queue_size: int = Field(10_000, ge=100)
    reconnect_max_delay: float = Field(5.0, gt=0)


class DatabaseSettings(_Strict):
    url: str = "sqlite:///var/ccengine.db"
    write_linger: float = Field(0.0, ge=0, le=1.0, description=(
        "seconds the first event of a store batch waits for companions (0: group commit, a batch is "
        "what waited during the previous commit): fewer transactions (CPU) against event-stream latency"))
    write_min_batch: int = Field(50, ge=1, le=500, description="events waiting that end the linger at once")
    sqlite_synchronous: Literal["full", "normal"] = Field("full", description=(
        "SQLite only. full: a commit is on disk before the stream sends it (an OS crash or power cut "
        "loses nothing that was sent). normal: the last commits can be lost to a power cut, never to "
        "an engine crash"))


class PathsSettings(_Strict):
    state_dir: Path = Path("var")
    recordings_dir: Path = Path("var/recordings")
    sounds_dir: Path = Path("var/sounds")


class LabInstance(_Strict):
    ami_port: Port
    http_port: Port
    sip_port: Port
    rtp_start: Port
    rtp_end: Port


class LabSettings(_Strict):
    chroot_dir: Path = Path("/var/cache/ccengine/sid-chroot")
    state_dir: Path = Path(".lab")
    pbx: LabInstance = LabInstance(ami_port=15038, http_port=18088, sip_port=15060,
                                   rtp_start=20000, rtp_end=20999)
    peer: LabInstance = LabInstance(ami_port=25038, http_port=28088, sip_port=25060,
                                    rtp_start=21000, rtp_end=21999)
    peer_ami_username: str = "lab"
    peer_ami_secret: str = "lab-peer-secret"


class RecordingSettings(_Strict):
    """Where finished recordings are sealed (encrypted, signed, hash-chained)."""

    vault_dir: Path = Path("var/vault")
    seal: bool = Field(True, description="seal each recording when its call ends; the plaintext is removed")
    retention: Path = Field(Path("retention.yaml"), description="retention policies (config/retention.yaml)")


class FlowSettings(_Strict):
    """The inbound journey before the ACD: prompt and one DTMF menu choosing a queue."""

    prompt: str | None = Field(None, description="media URI of the menu prompt; generated speech if unset")
    menu: dict[str, str] = Field(default_factory=lambda: {"1": "general"},
                                 description="DTMF digit → queue id")
    default_queue: str = Field("general", description="queue for callers who press nothing valid")
    menu_timeout: float = Field(5.0, gt=0)
    menu_attempts: int = Field(2, ge=1)
    ring_timeout: int = Field(15, ge=1)
    callback_ring_timeout: int = Field(30, ge=5, description="seconds to ring a customer we call back")

    @field_validator("menu")
    @classmethod
    def _digits(cls, menu: dict[str, str]) -> dict[str, str]:
        bad = [d for d in menu if len(d) != 1 or d not in "0123456789*#"]
        if bad:
            raise ValueError(f"menu keys must be single DTMF digits, not {bad}")
        return menu


class IvrSettings(_Strict):
    """The IVR tree callers walk before the ACD, and the customer directory its data dips call."""

    tree: Path | None = Field(None, description="IVR tree file (see config/ivr/); unset = the flow menu as a tree")
    directory_url: str | None = Field(None, description="base URL of the customer directory / core banking "
                                                        "HTTP API (e.g. `ccengine ivr directory`)")
    voice: dict[str, str] = Field(default_factory=lambda: {"en": "en-us", "zh": "cmn", "es": "es", "fr": "fr"},
                                  description="language → espeak-ng voice for generated prompts")


class AcdSettings(_Strict):
    queues: Path = Field(Path("queues.yaml"), description="queue/agent definitions: a file or a folder")
    not_ready_reasons: tuple[str, ...] = Field(
        ("break", "lunch", "meeting", "training", "coaching", "admin", "technical_issue"),
        min_length=1, description="reason codes an agent may give when going not ready")
    rona_pause: float | None = Field(10.0, ge=0, description="seconds before an agent who missed a call "
                                                             "is made ready again; null = stays not ready")
    line_hold_music: str | None = Field(None, description="music class an agent on a persistent line hears "
                                                          "between calls; null = silence")
    line_release_key: str = Field("#", pattern=r"^[0-9*#]$", description="DTMF key with which an agent on a "
                                                                         "persistent line ends the call")


class Settings(_Strict):
    pbx: PbxSettings
    database: DatabaseSettings = DatabaseSettings()
    paths: PathsSettings = PathsSettings()
    lab: LabSettings = LabSettings()
    flow: FlowSettings = FlowSettings()
    acd: AcdSettings = AcdSettings()
    recording: RecordingSettings = RecordingSettings()
    ivr: IvrSettings = IvrSettings()
    analytics: Path | None = Field(None, description="call audio analytics (e.g. config/analytics.yaml); "
                                   "unset: no call is tapped")
    http_port: Port = 8080
    api: ApiSettings = ApiSettings()
    payment: PaymentSettings = PaymentSettings()

    def resolved(self, base: Path) -> Settings:
        """Return a copy whose relative paths and SQLite URL are anchored at ``base``."""

        def anchor(p: Path) -> Path:
            return p if p.is_absolute() else (base / p).resolve()

        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            url = prefix + str(anchor(Path(url[len(prefix):])))
        return self.model_copy(update={
            "database": self.database.model_copy(update={"url": url}),
            "paths": PathsSettings(
                state_dir=anchor(self.paths.state_dir),
                recordings_dir=anchor(self.paths.recordings_dir),
                sounds_dir=anchor(self.paths.sounds_dir),
            ),
            "acd": self.acd.model_copy(update={"queues": anchor(self.acd.queues)}),
            "recording": self.recording.model_copy(update={"vault_dir": anchor(self.recording.vault_dir),
                                                           "retention": anchor(self.recording.retention)}),
            "ivr": self.ivr.model_copy(update={"tree": anchor(self.ivr.tree) if self.ivr.tree else None}),
            "api": self.api.model_copy(update={"campaigns_dir": anchor(self.api.campaigns_dir)}),
            "analytics": anchor(self.analytics) if self.analytics is not None else None,
            "lab": self.lab.model_copy(update={
                "chroot_dir": anchor(self.lab.chroot_dir),
                "state_dir": anchor(self.lab.state_dir),
            }),
        })


def load_settings(path: str | Path | None = None) -> Settings:
    """Load and validate settings; raises ``ConfigError`` naming file, line and key."""
    path = Path(path) if path else DEFAULT_CONFIG
    return load_model(path, Settings).resolved(path.resolve().parent)
