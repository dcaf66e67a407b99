"""SCENARIO.yaml validation with located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccengine.dialer.scenario import load_scenario
from ccengine.yamlconf import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_s0_is_as_the_issue_states() -> None:
    sc = load_scenario(ROOT / "bench" / "dialer_s0.yaml")
    assert (sc.agents, sc.duration, sc.warmup, sc.grace) == (50, 8 * 3600, 600, 2)
    assert {k: o.share for k, o in sc.outcomes.items()} == {
        "live": 0.3, "no_answer": 0.5, "busy": 0.1, "invalid": 0.1}
    assert sc.outcomes["live"].ring.expected() == 10.0
    assert [sc.outcomes[k].ring.expected() for k in ("no_answer", "busy", "invalid")] == [20, 5, 3]
    assert sc.talk.expected() == 180.0 and sc.wrap.expected() == 30.0


def test_errors_point_at_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "agents: 0\n"
        "duration: 8 parsecs\n"
        "outcomes:\n"
        "  live: {share: 1.0, ring: {kind: gamma, mean: 1, shift: 2, shape: 2}}\n"
        "talk: {kind: fixed, value: 100}\n"
        "wrap: {kind: fixd, value: 3}\n"
        "colour: blue\n")
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    text = str(info.value)
    assert f"{path}:1:1: agents:" in text
    assert f"{path}:2:1: duration:" in text and "not a duration" in text
    assert f"{path}:7:1: colour: unknown key" in text
    assert ":6:" in text and ":4:" in text


def test_shares_must_sum_to_one_and_changes_rescale(tmp_path: Path) -> None:
    base = ("agents: 5\nduration: 1h\noutcomes:\n"
            "  live: {share: 0.3, ring: {kind: fixed, value: 5}}\n"
            "  no_answer: {share: 0.%s, ring: {kind: fixed, value: 20}}\n"
            "talk: {kind: exponential, mean: 2m}\nwrap: {kind: fixed, value: 30s}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(base % "6")
    with pytest.raises(ConfigError, match="sum to 1"):
        load_scenario(bad)
    good = tmp_path / "good.yaml"
    good.write_text(base % "7" + "changes:\n  - {at: 30m, shares: {live: 0.1}}\n")
    sc = load_scenario(good)
    assert sc.shares_at(0) == pytest.approx({"live": 0.3, "no_answer": 0.7})
    assert sc.shares_at(1800) == pytest.approx({"live": 0.1, "no_answer": 0.9})
    assert sc.talk.expected() == 120.0
