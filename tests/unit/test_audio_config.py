"""config/analytics.yaml: the shipped file loads; mistakes are reported with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccengine.audio.config import load_analytics
from ccengine.config import load_settings
from ccengine.yamlconf import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_analytics_file_loads_with_per_queue_analysers() -> None:
    config = load_analytics(ROOT / "config" / "analytics.yaml")
    assert config.for_queue("cards").analysers == ["vad", "agitation", "keywords", "cards"]
    assert config.for_queue("no-such-queue") == config.default
    assert config.receiver_port == 0 and config.overload_drill_s == 0.0


def test_bad_analyser_and_threshold_are_located(tmp_path: Path) -> None:
    path = tmp_path / "analytics.yaml"
    path.write_text("vad:\n  mode: 7\nqueues:\n  sales:\n    analysers: [vad, telepathy]\n")
    with pytest.raises(ConfigError) as caught:
        load_analytics(path)
    text = str(caught.value)
    assert f"{path}:2:" in text and "mode" in text
    assert f"{path}:5:22: queues.sales.analysers[1]" in text
    path.write_text("default: {analysers: [vad, diarization]}\n")  # post-call only: no live analyser of that name
    with pytest.raises(ConfigError, match=r"default\.analysers\[1\]"):
        load_analytics(path)


def test_asr_backend_and_model_directory_are_checked_where_written(tmp_path: Path) -> None:
    path = tmp_path / "analytics.yaml"
    path.write_text("asr:\n  backend: sitemodels.nosuch:Recogniser\n  model_dir: /nonexistent/model\n")
    with pytest.raises(ConfigError) as caught:
        load_analytics(path)
    text = str(caught.value)
    assert f"{path}:2:" in text and "asr.backend" in text and "'sitemodels.nosuch' is not installed" in text
    assert f"{path}:3:" in text and "asr.model_dir" in text
    path.write_text("asr: {backend: no colon here}\n")
    with pytest.raises(ConfigError, match=r"asr\.backend"):
        load_analytics(path)
    path.write_text(f"asr: {{backend: 'ccengine.audio.keywords:PocketsphinxBackend', model_dir: '{tmp_path}'}}\n")
    assert load_analytics(path).asr.model_dir == tmp_path


def test_queue_naming_an_unknown_phrase_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "analytics.yaml"
    path.write_text("phrases: {}\nqueues:\n  sales: {analysers: [keywords], phrases: [recorded]}\n")
    with pytest.raises(ConfigError, match="unknown phrases: recorded"):
        load_analytics(path)


def test_engine_settings_anchor_the_analytics_path(tmp_path: Path) -> None:
    base = (ROOT / "config" / "ccengine.yaml").read_text()
    path = tmp_path / "ccengine.yaml"
    path.write_text(base + "\nanalytics: analytics.yaml\n")
    assert load_settings(path).analytics == tmp_path / "analytics.yaml"
    path.write_text(base)
    assert load_settings(path).analytics is None


def test_check_config_validates_the_analytics_file_it_names(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ccengine.cli.main import main

    _runner = CliRunner  # click >= 8.2 keeps stderr apart

    (tmp_path / "analytics.yaml").write_text("queue_frames: 0\n")
    path = tmp_path / "ccengine.yaml"
    path.write_text((ROOT / "config" / "ccengine.yaml").read_text() + "\nanalytics: analytics.yaml\n")
    result = _runner().invoke(main, ["-c", str(path), "check-config"])
    assert result.exit_code == 2 and f"{tmp_path / 'analytics.yaml'}:1:" in result.stderr
    (tmp_path / "analytics.yaml").write_text("queue_frames: 10\n")
    result = _runner().invoke(main, ["-c", str(path), "check-config"])
    assert result.exit_code == 0 and "audio analytics" in result.stdout
