"""ccengine.config.load_settings and `ccengine check-config`."""

from __future__ import annotations

import inspect
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccengine.cli.main import main
from ccengine.config import DEFAULT_CONFIG, load_settings
from ccengine.yamlconf import ConfigError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "ccengine.yaml"

MINIMAL = """\
pbx:
  ami:
    username: u
    secret: s
  ari:
    username: u
    password: p
"""


def where(text: str, needle: str) -> tuple[int, int]:
    index = text.index(needle)
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def write(folder: Path, text: str, name: str = "ccengine.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------ good files


def test_shipped_config_loads_and_anchors_relative_paths() -> None:
    settings = load_settings(SHIPPED)
    base = SHIPPED.parent
    assert DEFAULT_CONFIG == SHIPPED
    assert settings.pbx.ari.app == "ccengine"
    assert settings.flow.menu == {"1": "general", "2": "cards", "3": "fraud"}
    assert settings.acd.queues == (base / "lab-queues.yaml").resolve()
    assert settings.paths.state_dir == (base / ".." / "var").resolve()
    assert settings.paths.recordings_dir == (base / ".." / "var" / "recordings").resolve()
    assert settings.lab.state_dir == (base / ".." / ".lab").resolve()
    assert settings.lab.chroot_dir == Path("/var/cache/ccengine/sid-chroot")
    assert settings.database.url == "sqlite:///" + str((base / ".." / "var" / "ccengine.db").resolve())


def test_relative_paths_follow_the_file_not_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "deep" / "conf").mkdir(parents=True)
    config = shutil.copy(SHIPPED, tmp_path / "deep" / "conf" / "ccengine.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(Path(config))
    assert settings.paths.state_dir == tmp_path / "deep" / "var"
    assert settings.paths.sounds_dir == tmp_path / "deep" / "var" / "sounds"
    assert settings.database.url == f"sqlite:///{tmp_path / 'deep' / 'var' / 'ccengine.db'}"
    # a relative path given on the command line is resolved against the cwd
    monkeypatch.chdir(tmp_path / "deep")
    assert load_settings(Path("conf/ccengine.yaml")).paths.state_dir == tmp_path / "deep" / "var"


@pytest.mark.parametrize("url", ["sqlite:////abs/ccengine.db", "sqlite:///:memory:",
                                 "postgresql+psycopg://u:p@db/cc"])
def test_absolute_memory_and_server_urls_are_left_alone(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, MINIMAL + f"database:\n  url: {url!r}\n")
    assert load_settings(path).database.url == url


def test_defaults_apply_and_are_anchored(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path / "cfg", MINIMAL))
    assert settings.pbx.ami.port == 15038
    assert settings.paths.recordings_dir == tmp_path / "cfg" / "var" / "recordings"
    assert settings.database.url == f"sqlite:///{tmp_path / 'cfg' / 'var' / 'ccengine.db'}"
    assert (settings.database.write_linger, settings.database.write_min_batch) == (0.0, 50)


def test_store_batching_is_configurable_and_bounded(tmp_path: Path) -> None:
    good = MINIMAL + "database:\n  write_linger: 0.005\n  write_min_batch: 10\n"
    settings = load_settings(write(tmp_path / "good", good))
    assert (settings.database.write_linger, settings.database.write_min_batch) == (0.005, 10)
    bad = MINIMAL + "database:\n  write_linger: -1\n  write_min_batch: 0\n"
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path / "bad", bad))
    got = {i.key: i.line for i in info.value.issues}
    assert got == {"database.write_linger": where(bad, "write_linger")[0],
                   "database.write_min_batch": where(bad, "write_min_batch")[0]}


# ------------------------------------------------------------------ bad files


BAD = """\
pbx:
  ami:
    port: fifteen
    username: u
    secret: s
  ari:
    username: u
    password: p
    colour: blue
flow:
  menu_attempts: 2
  menu: {"1": general, "12": cards}
"""


def test_malformed_config_names_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    got = {i.key: (i.file, i.line, i.column, i.message) for i in info.value.issues}
    assert set(got) == {"pbx.ami.port", "pbx.ari.colour", "flow.menu"}
    assert got["pbx.ami.port"][:3] == (str(path), *where(BAD, "port: fifteen"))
    assert got["pbx.ari.colour"][:3] == (str(path), *where(BAD, "colour:"))
    assert got["pbx.ari.colour"][3] == "unknown key"
    assert got["flow.menu"][:3] == (str(path), *where(BAD, "menu:"))
    assert "single DTMF digits" in got["flow.menu"][3]


def test_missing_required_section_points_at_the_parent(tmp_path: Path) -> None:
    text = "pbx:\n  ami:\n    username: u\n    secret: s\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    (issue,) = info.value.issues
    assert issue.key == "pbx.ari"
    assert (issue.line, issue.column) == where(text, "pbx:")
    assert issue.message == "required key is missing"


# ------------------------------------------------------------------ CLI


def _runner() -> CliRunner:
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)
    return CliRunner()  # click >= 8.2 always keeps stderr apart


def test_check_config_bad_file_exits_2_with_located_errors(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    result = _runner().invoke(main, ["-c", str(path), "check-config"])
    assert result.exit_code == 2
    line, column = where(BAD, "port: fifteen")
    assert re.search(rf"{re.escape(str(path))}:{line}:{column}: pbx\.ami\.port: .*integer", result.stderr)
    line, column = where(BAD, "colour:")
    assert f"{path}:{line}:{column}: pbx.ari.colour: unknown key" in result.stderr
    assert "flow.menu" in result.stderr
    assert "ok:" not in result.stdout


def test_check_config_good_file_exits_0() -> None:
    result = _runner().invoke(main, ["-c", str(SHIPPED), "check-config"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("ok:")
    assert "ARI app ccengine" in result.stdout
    assert result.stderr == ""


def test_check_config_syntax_error_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, "pbx:\n  ami: [1,\n  ari: x\n")
    result = _runner().invoke(main, ["-c", str(path), "check-config"])
    assert result.exit_code == 2
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+: YAML syntax", result.stderr)
