"""SCENARIO.yaml: the world the dialer simulator plays against.

Validated once by pydantic and loaded through :func:`ccengine.yamlconf.load_model`
so a bad scenario is reported as ``file:line:col: key: reason`` for every
mistake at once. Durations accept seconds or strings such as ``8h``, ``10m``,
``2s``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ccengine.yamlconf import load_model

_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*$")


def _parse_seconds(value: object) -> object:
    if isinstance(value, str):
        match = _DURATION.match(value.lower())
        if not match or match.group(2) not in ("", *_UNITS):
            raise ValueError(f"not a duration: {value!r} (use e.g. 20s, 10m, 8h)")
        return float(match.group(1)) * _UNITS.get(match.group(2), 1.0)
    return value


Seconds = Annotated[float, BeforeValidator(_parse_seconds), Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Fixed(_Model):
    kind: Literal["fixed"]
    value: Seconds

    def sample(self, rng: np.random.Generator) -> float:
        return self.value

    def expected(self) -> float:
        return self.value


class Gamma(_Model):
    """``shift`` + Gamma(shape); ``mean`` is the total mean, shift included."""

    kind: Literal["gamma"]
    mean: Seconds
    shape: float = Field(gt=0)
    shift: Seconds = 0.0

    @model_validator(mode="after")
    def _check(self) -> Gamma:
        if self.mean <= self.shift:
            raise ValueError("mean must exceed shift")
        return self

    def sample(self, rng: np.random.Generator) -> float:
        return self.shift + float(rng.gamma(self.shape, (self.mean - self.shift) / self.shape))

    def expected(self) -> float:
        return self.mean


class Lognormal(_Model):
    """Lognormal given by its mean and coefficient of variation (as call-centre data are)."""

    kind: Literal["lognormal"]
    mean: Seconds = Field(gt=0)
    cv: float = Field(gt=0)

    def sample(self, rng: np.random.Generator) -> float:
        sigma2 = math.log1p(self.cv**2)
        return float(rng.lognormal(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2)))

    def expected(self) -> float:
        return self.mean


class Exponential(_Model):
    kind: Literal["exponential"]
    mean: Seconds = Field(gt=0)
    shift: Seconds = 0.0

    def sample(self, rng: np.random.Generator) -> float:
        return self.shift + float(rng.exponential(self.mean))

    def expected(self) -> float:
        return self.shift + self.mean


class Uniform(_Model):
    kind: Literal["uniform"]
    low: Seconds
    high: Seconds

    @model_validator(mode="after")
    def _check(self) -> Uniform:
        if self.high < self.low:
            raise ValueError("high must be >= low")
        return self

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def expected(self) -> float:
        return (self.low + self.high) / 2


Distribution = Annotated[Fixed | Gamma | Lognormal | Exponential | Uniform,
                         Field(discriminator="kind")]

OutcomeName = Literal["live", "machine", "no_answer", "busy", "invalid"]


class Outcome(_Model):
    """One dial outcome: its share of attempts and when it resolves."""

    share: float = Field(ge=0, le=1)
    ring: Distribution


class ShareChange(_Model):
    """From ``at`` on, the given outcomes take these shares; the rest rescale."""

    at: Seconds
    shares: dict[OutcomeName, Annotated[float, Field(ge=0, le=1)]]


class Amd(_Model):
    """Answering-machine detection as the dialer experiences it.

    A human verdict arrives ``human_verdict`` after the answer (greeting +
    trailing silence), which eats into the 2 s budget; a false positive
    hangs up on a person (Ofcom wants an estimate of those counted); a false
    negative sends a machine to an agent for ``machine_agent_time``.
    """

    enabled: bool = True
    greeting: Distribution = Field(default_factory=lambda: Fixed(kind="fixed", value=1.2))
    human_verdict_after_greeting: Seconds = 0.8
    machine_verdict: Distribution = Field(default_factory=lambda: Fixed(kind="fixed", value=4.0))
    false_positive_rate: float = Field(default=0.04, ge=0, le=1)
    false_negative_rate: float = Field(default=0.15, ge=0, le=1)
    machine_agent_time: Seconds = 6.0
    assumed_false_positive_rate: float | None = Field(default=None, ge=0, lt=1)


class PacingSettings(_Model):
    cap: float = Field(default=0.03, gt=0, lt=1)
    min_agents: int = Field(default=11, ge=1)
    strategies: list[str] = Field(default_factory=lambda: [
        "progressive", "ratio:2", "ratio:3.33", "vicidial", "predictive-open:0.01",
        "predictive:0.02"])


class Scenario(_Model):
    name: str = "scenario"
    agents: int = Field(ge=1)
    duration: Seconds = Field(gt=0)
    warmup: Seconds = 600.0
    grace: Seconds = 2.0
    max_lines: int | None = Field(default=None, ge=1)
    outcomes: dict[OutcomeName, Outcome]
    changes: list[ShareChange] = Field(default_factory=list)
    talk: Distribution
    wrap: Distribution
    amd: Amd | None = None
    abandon_message: Seconds = 8.0
    pacing: PacingSettings = Field(default_factory=lambda: PacingSettings())

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        total = sum(o.share for o in self.outcomes.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"outcome shares must sum to 1 (got {total:g})")
        if "live" not in self.outcomes:
            raise ValueError("outcomes must include 'live'")
        if self.warmup >= self.duration:
            raise ValueError("warmup must be shorter than duration")
        for change in self.changes:
            unknown = set(change.shares) - set(self.outcomes)
            if unknown:
                raise ValueError(f"change at {change.at:g}s names outcomes not in the mix: "
                                 f"{sorted(unknown)}")
            if sum(change.shares.values()) > 1.0 + 1e-9:
                raise ValueError(f"change at {change.at:g}s: shares exceed 1")
        return self

    def shares_at(self, t: float) -> dict[str, float]:
        """Outcome shares in force at time ``t`` (changes applied in order)."""
        shares: dict[str, float] = {k: v.share for k, v in self.outcomes.items()}
        for change in sorted(self.changes, key=lambda c: c.at):
            if change.at > t:
                break
            fixed: dict[str, float] = {str(k): v for k, v in change.shares.items()}
            rest = {k: v for k, v in shares.items() if k not in fixed}
            rest_total = sum(rest.values())
            left = 1.0 - sum(fixed.values())
            scale = left / rest_total if rest_total > 0 else 0.0
            shares = {**{k: v * scale for k, v in rest.items()}, **fixed}
        return shares


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate SCENARIO.yaml (raises ``ConfigError`` with file:line:col)."""
    return load_model(path, Scenario)
