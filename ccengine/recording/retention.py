"""Retention rules for sealed recordings: how long each is kept, and whether it may go.

Regulations fix minimum keeping periods (MiFID II art. 16(7): 5 years, extendable
to 7 on the regulator's request; SEC 17a-4: 3 to 6 years), privacy law wants data
gone when no rule requires it any more, and litigation freezes everything under
a legal hold. Policies are written by compliance in YAML; which policy applies is
decided by the queue or campaign the call belonged to.

This module is pure: it parses the policies and answers *may this recording be
purged / erased now, and if not, why* from plain facts. Storage, approvals and
key destruction live in :mod:`ccengine.recording.keeping`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ..yamlconf import load_model

_PERIOD = re.compile(r"^\s*(\d+)\s*([ydw])\s*$")
_UNIT_DAYS = {"y": 365, "w": 7, "d": 1}


def _parse_period(value: Any) -> Any:
    """``5y``, ``18w``, ``30d`` or a number of days."""
    if isinstance(value, bool):
        raise ValueError("expected a period such as 5y, 18w or 30d")
    if isinstance(value, str):
        match = _PERIOD.match(value)
        if not match:
            raise ValueError("expected a period such as 5y, 18w or 30d")
        return timedelta(days=int(match.group(1)) * _UNIT_DAYS[match.group(2)])
    if isinstance(value, int | float):
        return timedelta(days=value)
    return value


Period = Annotated[timedelta, BeforeValidator(_parse_period)]
PolicyId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Policy(_Model):
    keep: Period
    extendable_to: Period | None = None
    regulation: str | None = None

    @model_validator(mode="after")
    def _sane(self) -> Policy:
        if self.keep <= timedelta(0):
            raise ValueError("keep must be positive")
        if self.extendable_to is not None and self.extendable_to < self.keep:
            raise ValueError("extendable_to must be at least keep")
        return self


class Assignments(_Model):
    queues: dict[str, PolicyId] = Field(default_factory=dict)
    campaigns: dict[str, PolicyId] = Field(default_factory=dict)


class RetentionConfig(_Model):
    version: Literal[1] = 1
    policies: dict[PolicyId, Policy] = Field(min_length=1)
    default: PolicyId
    assign: Assignments = Field(default_factory=Assignments)

    @model_validator(mode="after")
    def _known_policies(self) -> RetentionConfig:
        named = [("default", self.default)]
        named += [(f"assign.queues.{q}", p) for q, p in self.assign.queues.items()]
        named += [(f"assign.campaigns.{c}", p) for c, p in self.assign.campaigns.items()]
        unknown = [f"{where}: unknown policy {policy!r}" for where, policy in named if policy not in self.policies]
        if unknown:
            raise ValueError("; ".join(unknown))
        return self

    def policy_for(self, *, queue: str | None = None, campaign: str | None = None) -> str:
        """A campaign's policy wins over a queue's; otherwise the default."""
        if campaign and campaign in self.assign.campaigns:
            return self.assign.campaigns[campaign]
        if queue and queue in self.assign.queues:
            return self.assign.queues[queue]
        return self.default


def load_retention(path: str | Path) -> RetentionConfig:
    """Validated policies; ``ConfigError`` names file, line and key of every mistake."""
    return load_model(path, RetentionConfig)


@dataclass(frozen=True)
class Kept:
    """The facts about one sealed recording that retention decisions need."""

    recording_id: str
    policy: str
    sealed_at: datetime
    retain_until: datetime
    holds: tuple[str, ...] = ()  # reasons of the legal holds that cover it
    purged: bool = False


def retain_until(config: RetentionConfig, policy: str, sealed_at: datetime,
                 extended_until: datetime | None = None) -> datetime:
    rule = config.policies[policy]
    until = sealed_at + rule.keep
    return max(until, extended_until) if extended_until else until


def check_extension(config: RetentionConfig, kept: Kept, new_until: datetime) -> str | None:
    """Why the keeping period may not be extended to ``new_until`` (None: it may)."""
    rule = config.policies[kept.policy]
    if new_until <= kept.retain_until:
        return f"{new_until:%Y-%m-%d} is not later than the current {kept.retain_until:%Y-%m-%d}"
    if rule.extendable_to is None:
        return f"policy {kept.policy} cannot be extended"
    limit = kept.sealed_at + rule.extendable_to
    if new_until > limit:
        return f"policy {kept.policy} allows keeping until {limit:%Y-%m-%d} at most"
    return None


def destroy_refusal(kept: Kept, now: datetime) -> str | None:
    """Why this recording may not be destroyed now, by the expiry purge or on an
    erasure request (None: it may). The answer names the legal ground, so an
    erasure request can be answered with it."""
    if kept.purged:
        return "already purged"
    if kept.holds:
        return f"under legal hold ({'; '.join(kept.holds)})"
    if now < kept.retain_until:
        return f"retention policy {kept.policy} requires keeping it until {kept.retain_until:%Y-%m-%d}"
    return None
