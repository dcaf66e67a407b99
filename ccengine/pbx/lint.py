"""Compliance lint of the Asterisk configuration the engine runs on.

Recording is forced: nobody but the engine may stop or pause it. In Asterisk
a party can do so from the keypad when a one-touch recording feature is
mapped (``automixmon``/``automon`` in features.conf, or offered through
``DYNAMIC_FEATURES``) and enabled on the call by ``Dial``/``Queue`` options
``X``/``x`` (``W``/``w`` for the older Monitor); and the dialplan itself can
stop a recording with ``StopMixMonitor``/``StopMonitor``. This module finds
each of those, with file and line, so ``ccengine pbx lint`` and the test suite
can refuse a configuration that would let a recording be cut.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

RECORDING_FEATURES = ("automixmon", "automon")
# application -> (index of its options argument, option letters that enable keypad recording control)
OPTION_RULES = {"dial": (2, "XxWw"), "queue": (1, "XxWw")}
STOPPING_APPS = ("stopmixmonitor", "stopmonitor", "pausemonitor")

_APP_CALL = re.compile(r"([A-Za-z][A-Za-z0-9_]*)\s*\(")
_SECTION = re.compile(r"^\s*\[([^\]]+)\]")


@dataclass(frozen=True, order=True)
class Finding:
    path: Path
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.message}"


def _strip_comment(line: str) -> str:
    """Drop a ``;`` comment (``\\;`` is a literal semicolon in Asterisk configs)."""
    out = []
    escaped = False
    for char in line:
        if char == ";" and not escaped:
            break
        escaped = char == "\\" and not escaped
        out.append(char)
    return "".join(out)


def split_args(text: str) -> tuple[list[str], int]:
    """Split an application's argument text at top-level commas; stops at the
    closing parenthesis. Returns the arguments and the index after it."""
    args, current, depth, i = [], [], 0, 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current.append(text[i:i + 2])
            i += 2
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                args.append("".join(current))
                return args, i + 1
            depth -= 1
        elif char == "," and depth == 0:
            args.append("".join(current))
            current = []
            i += 1
            continue
        current.append(char)
        i += 1
    args.append("".join(current))
    return args, i


def _app_calls(code: str) -> Iterator[tuple[str, list[str]]]:
    """Every ``App(args)`` in a dialplan line, including nested ones such as
    ``ExecIf(cond?Dial(...))`` or a ``Gosub`` argument."""
    pos = 0
    while match := _APP_CALL.search(code, pos):
        args, _end = split_args(code[match.end():])
        yield match.group(1).lower(), args
        pos = match.end()  # continue inside the arguments: nested calls count too


def lint_dialplan(path: Path, text: str) -> list[Finding]:
    findings = []
    for number, raw in enumerate(text.splitlines(), 1):
        code = _strip_comment(raw)
        if "=>" not in code and not code.lstrip().lower().startswith("same"):
            continue
        for app, args in _app_calls(code):
            if app in OPTION_RULES:
                index, letters = OPTION_RULES[app]
                options = args[index] if len(args) > index else ""
                options = re.sub(r"\([^)]*\)", "", options)  # option arguments such as M(macro) are not options
                bad = sorted({c for c in options if c in letters})
                if bad:
                    findings.append(Finding(path, number, "keypad-recording-option",
                                            f"{app.capitalize()}() option(s) {''.join(bad)} let a party "
                                            f"start/stop recording from the keypad"))
            elif app in STOPPING_APPS:
                findings.append(Finding(path, number, "dialplan-stops-recording",
                                        f"{app} in the dialplan can end a forced recording"))
            elif app == "set" and args and "DYNAMIC_FEATURES" in args[0].upper():
                offered = [f for f in RECORDING_FEATURES if f in args[0].lower()]
                if offered:
                    findings.append(Finding(path, number, "recording-feature-offered",
                                            f"DYNAMIC_FEATURES offers {', '.join(offered)}"))
    return findings


def lint_features(path: Path, text: str) -> list[Finding]:
    findings = []
    section = ""
    for number, raw in enumerate(text.splitlines(), 1):
        code = _strip_comment(raw).strip()
        if match := _SECTION.match(code):
            section = match.group(1).strip().lower()
            continue
        if "=" not in code:
            continue
        key, _, value = (part.strip() for part in code.partition("=>" if "=>" in code else "="))
        value = value.lstrip(">").strip()
        if section == "featuremap" and key.lower() in RECORDING_FEATURES and value:
            findings.append(Finding(path, number, "recording-feature-mapped",
                                    f"{key} is mapped to {value!r}: a party could stop the recording"))
        elif section == "applicationmap" and "monitor" in value.lower():
            findings.append(Finding(path, number, "recording-feature-mapped",
                                    f"application map {key!r} runs a recording application"))
    return findings


def lint_paths(paths: Iterable[Path]) -> list[Finding]:
    """Lint every ``features.conf`` and dialplan (``extensions.conf`` or any
    ``.conf`` with ``exten =>`` lines) found in ``paths`` (files or folders)."""
    findings: list[Finding] = []
    for root in paths:
        files = sorted(root.rglob("*.conf")) if root.is_dir() else [root]
        for path in files:
            text = path.read_text(errors="replace")
            if path.name == "features.conf":
                findings += lint_features(path, text)
            elif re.search(r"(?m)^\s*(exten|same)\s*=>", text):
                findings += lint_dialplan(path, text)
    return sorted(findings)
