"""``config/analytics.yaml``: phrase lists, thresholds, and which analysers run per queue.

Validated once at load with every mistake reported as file:line:col, like the
rest of ccengine's configuration.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, DirectoryPath, Field, field_validator, model_validator

from ccengine.yamlconf import load_model

from .agitation import AgitationSettings
from .keywords import Phrase
from .vad import VadSettings

# No live "diarization": each tapped direction is one speaker; mixed audio is diarized after the call
# (`ccengine audio diarize`), so naming it here would promise an analyser that never runs.
Analyser = Literal["vad", "agitation", "keywords", "cards"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PhraseConfig(_Strict):
    text: str = Field(min_length=1)
    kind: Literal["disclosure", "risk"]
    speaker: Literal["agent", "customer", "any"] = "any"
    threshold: float = Field(default=1e-50, gt=0.0, lt=1.0,
                             description="keyphrase detection threshold: smaller finds more phrases, and more falsely")
    deadline_s: float | None = Field(default=None, gt=0.0,
                                     description="disclosure must be heard before this offset (else at call end)")

    def phrase(self) -> Phrase:
        return Phrase(self.text, self.kind, self.threshold)


class VadConfig(_Strict):
    mode: int = Field(default=2, ge=0, le=3)
    hangover_s: float = Field(default=0.4, ge=0.0, le=2.0)
    silence_event_s: float = Field(default=5.0, gt=0.0)
    overtalk_min_s: float = Field(default=0.5, gt=0.0)

    def settings(self) -> VadSettings:
        return VadSettings(hangover_s=self.hangover_s, silence_event_s=self.silence_event_s,
                           overtalk_min_s=self.overtalk_min_s)


class AgitationConfig(_Strict):
    threshold: float = Field(default=1.5, gt=0.0)
    hold_s: float = Field(default=2.0, gt=0.0)
    baseline_s: float = Field(default=4.0, gt=0.0)

    def settings(self) -> AgitationSettings:
        return AgitationSettings(threshold=self.threshold, hold_s=self.hold_s, baseline_s=self.baseline_s)


class AsrConfig(_Strict):
    backend: str = Field(default="pocketsphinx", pattern=r"^(pocketsphinx|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$",
                         description='"pocketsphinx" or a site backend as "package.module:Class"')
    model_dir: DirectoryPath | None = Field(default=None, description="a local model directory; never downloaded")
    card_last4: bool = False

    @field_validator("backend")
    @classmethod
    def _installed(cls, spec: str) -> str:
        """A misnamed backend is refused here, not as a dead recogniser process once calls are tapped."""
        module = spec.partition(":")[0] if ":" in spec else spec
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            raise ValueError(f"ASR backend module {module!r} is not installed")
        return spec


class QueueAnalytics(_Strict):
    analysers: list[Analyser]
    phrases: list[str] = Field(default_factory=list, description="names from the phrases table")


class AnalyticsConfig(_Strict):
    receiver_host: str = Field(default="127.0.0.1", description="address the receiver binds and the PBX sends to")
    advertised_host: str | None = Field(default=None, description="address the PBX sends to when it differs "
                                        "from receiver_host (a remote PBX, receiver bound to 0.0.0.0)")
    receiver_port: int = Field(default=0, ge=0, le=65535, description="0: any free port (told to the PBX per tap)")
    codec: Literal["slin16", "slin", "ulaw"] = Field(
        default="slin", description="tap format; telephone legs are 8 kHz, and the bundled ASR model read 8 kHz "
        "audio upsampled here better than the PBX's 16 kHz resampling (measured on spoken card numbers)")
    queue_frames: int = Field(default=50, ge=1)
    jitter_packets: int = Field(default=3, ge=1, le=50)
    overload_drill_s: float = Field(default=0.0, ge=0.0, le=5.0,
                                    description="extra seconds each analysis round takes, to rehearse overload; 0")
    vad: VadConfig = VadConfig()
    agitation: AgitationConfig = AgitationConfig()
    asr: AsrConfig = AsrConfig()
    phrases: dict[str, PhraseConfig] = Field(default_factory=dict)
    queues: dict[str, QueueAnalytics] = Field(default_factory=dict)
    default: QueueAnalytics = QueueAnalytics(analysers=["vad"])

    @model_validator(mode="after")
    def _phrases_exist(self) -> AnalyticsConfig:
        for name, q in self.queues.items():
            unknown = sorted(set(q.phrases) - set(self.phrases))
            if unknown:
                raise ValueError(f"queue {name!r} names unknown phrases: {', '.join(unknown)}")
        return self

    def for_queue(self, queue: str | None) -> QueueAnalytics:
        return self.queues.get(queue or "", self.default)


def load_analytics(path: str | Path) -> AnalyticsConfig:
    return load_model(path, AnalyticsConfig)
