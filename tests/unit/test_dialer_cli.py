"""``dialer simulate`` through click."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from ccengine.dialer.cli import dialer

SMALL = """\
name: tiny
agents: 20
duration: 40m
warmup: 5m
outcomes:
  live: {share: 0.3, ring: {kind: gamma, shape: 2, shift: 2s, mean: 10s}}
  no_answer: {share: 0.7, ring: {kind: fixed, value: 20s}}
talk: {kind: lognormal, mean: 3m, cv: 1}
wrap: {kind: fixed, value: 30s}
"""


def test_simulate_prints_side_by_side(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(SMALL)
    result = CliRunner().invoke(dialer, ["simulate", str(path), "--seeds", "2", "--jobs", "1",
                                         "--strategy", "progressive", "--strategy", "ratio:2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "tiny: 20 agents" in lines[0]
    rows = {line.split()[0]: line for line in lines[3:]}
    assert set(rows) == {"progressive", "ratio:2"}
    assert rows["progressive"].split()[-3:] == ["1.000", "1.000", "yes"]
    assert float(rows["ratio:2"].split()[-3]) > 1.0  # more occupancy than progressive


def test_bad_inputs_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(SMALL)
    bad_strategy = CliRunner().invoke(dialer, ["simulate", str(path), "--strategy", "turbo"])
    assert bad_strategy.exit_code == 2 and "unknown strategy" in bad_strategy.output
    broken = tmp_path / "broken.yaml"
    broken.write_text(SMALL.replace("agents: 20", "agents: lots"))
    bad_yaml = CliRunner().invoke(dialer, ["simulate", str(broken)])
    assert bad_yaml.exit_code == 1 and f"{broken}:2:1: agents:" in bad_yaml.output
