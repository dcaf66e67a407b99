"""Retention rules: policies from YAML (located errors) and the destroy/extend decisions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ccengine.lab.lab import ROOT
from ccengine.recording.retention import Kept, check_extension, destroy_refusal, load_retention, retain_until
from ccengine.yamlconf import ConfigError

SEALED = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def test_shipped_policies_load_and_assign() -> None:
    config = load_retention(ROOT / "config" / "retention.yaml")
    assert config.policy_for(queue="investments") == "mifid2"
    assert config.policy_for(queue="investments", campaign="card-activation") == "internal"
    assert config.policy_for(queue="unlisted") == "internal"
    assert retain_until(config, "mifid2", SEALED) == SEALED + timedelta(days=5 * 365)


def test_mistakes_are_located(tmp_path: Path) -> None:
    bad = tmp_path / "retention.yaml"
    bad.write_text("version: 1\npolicies:\n  short: {keep: 5 years}\n  odd: {keep: 2y, extendable_to: 1y}\n"
                   "default: nowhere\n")
    with pytest.raises(ConfigError) as caught:
        load_retention(bad)
    text = str(caught.value)
    assert f"{bad}:3:" in text and "policies.short.keep" in text and "5y, 18w or 30d" in text
    assert f"{bad}:4:" in text and "extendable_to must be at least keep" in text
    bad.write_text("version: 1\npolicies:\n  short: {keep: 30d}\ndefault: short\nassign:\n"
                   "  queues: {general: nowhere}\n")
    with pytest.raises(ConfigError, match=re.escape("assign.queues.general: unknown policy 'nowhere'")):
        load_retention(bad)


def test_destroy_is_refused_under_hold_or_retention_with_the_reason() -> None:
    kept = Kept("r1", "mifid2", SEALED, SEALED + timedelta(days=5 * 365))
    assert destroy_refusal(kept, SEALED + timedelta(days=30)) == (
        "retention policy mifid2 requires keeping it until 2031-01-09")
    expired = SEALED + timedelta(days=5 * 365 + 1)
    assert destroy_refusal(kept, expired) is None
    held = Kept("r1", "mifid2", SEALED, SEALED, holds=("case 2026-114: litigation",))
    assert destroy_refusal(held, expired) == "under legal hold (case 2026-114: litigation)"
    gone = Kept("r1", "mifid2", SEALED, SEALED, purged=True)
    assert destroy_refusal(gone, expired) == "already purged"


def test_extension_stays_within_the_policy() -> None:
    config = load_retention(ROOT / "config" / "retention.yaml")
    kept = Kept("r1", "mifid2", SEALED, retain_until(config, "mifid2", SEALED))
    assert check_extension(config, kept, SEALED + timedelta(days=6 * 365)) is None
    assert "at most" in (check_extension(config, kept, SEALED + timedelta(days=8 * 365)) or "")
    assert "not later" in (check_extension(config, kept, SEALED + timedelta(days=365)) or "")
    internal = Kept("r2", "internal", SEALED, retain_until(config, "internal", SEALED))
    assert check_extension(config, internal, SEALED + timedelta(days=400)) == "policy internal cannot be extended"
