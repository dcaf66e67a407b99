"""`ccengine pbx lint`: every way to stop a forced recording is found, with its line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ccengine.lab.lab import ROOT
from ccengine.pbx.lint import lint_paths, split_args

BAD_DIALPLAN = """\
[from-peer]
exten => 100,1,Answer()
 same => n,Dial(PJSIP/agent1,30,tTX)          ; X: automixmon for the caller
 same => n,Dial(PJSIP/agent2&PJSIP/agent3,20,M(screen^x)) ; x inside M(...) is a macro argument, fine
 same => n,Queue(sales,tx,,,300)
 same => n,ExecIf($[${X}=1]?StopMixMonitor())
 same => n,Set(__DYNAMIC_FEATURES=automixmon#blindxfer)
; exten => 101,1,Dial(PJSIP/agent1,30,X)   commented out: ignored
exten => 102,1,Dial(PJSIP/agent1,30,tT)
"""

BAD_FEATURES = """\
[general]
[featuremap]
blindxfer => #1
automixmon => *3
automon =>
[applicationmap]
pause => #9,self,PauseMonitor
"""


def test_finds_each_way_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "extensions.conf").write_text(BAD_DIALPLAN)
    (tmp_path / "features.conf").write_text(BAD_FEATURES)
    found = [(f.path.name, f.line, f.rule) for f in lint_paths([tmp_path])]
    assert found == [
        ("extensions.conf", 3, "keypad-recording-option"),
        ("extensions.conf", 5, "keypad-recording-option"),
        ("extensions.conf", 6, "dialplan-stops-recording"),
        ("extensions.conf", 7, "recording-feature-offered"),
        ("features.conf", 4, "recording-feature-mapped"),
        ("features.conf", 7, "recording-feature-mapped"),
    ]
    messages = {f.line: f.message for f in lint_paths([tmp_path / "extensions.conf"])}
    assert "X" in messages[3] and "x" in messages[5]


def test_argument_splitting_respects_nesting() -> None:
    args, end = split_args("PJSIP/${EXTEN}@peer,30,M(a,b)tX),rest")
    assert args == ["PJSIP/${EXTEN}@peer", "30", "M(a,b)tX"] and end == len("PJSIP/${EXTEN}@peer,30,M(a,b)tX)")


def test_shipped_configuration_is_clean() -> None:
    assert lint_paths([ROOT / "dialplans" / "asterisk", ROOT / "config" / "asterisk"]) == []


def test_cli_exit_status(tmp_path: Path) -> None:
    (tmp_path / "extensions.conf").write_text(BAD_DIALPLAN)
    cli = [sys.executable, "-m", "ccengine.cli.main", "pbx", "lint"]
    bad = subprocess.run([*cli, str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 1 and f"{tmp_path / 'extensions.conf'}:3: keypad-recording-option" in bad.stdout
    good = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT)
    assert good.returncode == 0, good.stdout + good.stderr
