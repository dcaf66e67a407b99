"""YAML loading that remembers where every key came from.

Configuration is validated once, at the edge, by pydantic. When validation
fails, an admin needs ``file:line:column: key.path: reason`` for *every*
mistake at once, not a stack trace. PyYAML's composer keeps a mark on each
node; we walk the node tree alongside the data to build a map from key path to
position, then translate pydantic's error locations through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

KeyPath = tuple[str | int, ...]
ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass(frozen=True)
class ConfigIssue:
    """One mistake in one file, located as precisely as the YAML allows."""

    file: str
    line: int
    column: int
    key: str
    message: str

    def __str__(self) -> str:
        key = f" {self.key}:" if self.key else ""
        return f"{self.file}:{self.line}:{self.column}:{key} {self.message}"


class ConfigError(Exception):
    """Raised with every issue found in one or more files."""

    def __init__(self, issues: Sequence[ConfigIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


@dataclass
class LocatedDocument:
    """Parsed YAML data plus the position of every key and item."""

    file: str
    data: Any
    positions: dict[KeyPath, Position]

    def locate(self, path: Iterable[str | int]) -> tuple[Position, KeyPath]:
        """Position of the deepest existing prefix of ``path``."""
        path = tuple(path)
        for cut in range(len(path), -1, -1):
            found = self.positions.get(path[:cut])
            if found is not None:
                return found, path[:cut]
        return Position(1, 1), ()

    def issue(self, path: Iterable[str | int], message: str) -> ConfigIssue:
        path = tuple(path)
        pos, _ = self.locate(path)
        return ConfigIssue(self.file, pos.line, pos.column, format_path(path), message)


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _walk(node: yaml.Node, path: KeyPath, positions: dict[KeyPath, Position]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            child = (*path, key)
            mark = key_node.start_mark
            positions[child] = Position(mark.line + 1, mark.column + 1)
            _walk(value_node, child, positions)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            mark = item.start_mark
            positions[child] = Position(mark.line + 1, mark.column + 1)
            _walk(item, child, positions)


def _duplicate_keys(node: yaml.Node, path: KeyPath, file: str) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                mark = key_node.start_mark
                issues.append(
                    ConfigIssue(file, mark.line + 1, mark.column + 1,
                                format_path((*path, key)), "duplicate key")
                )
            seen.add(key)
            issues.extend(_duplicate_keys(value_node, (*path, key), file))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            issues.extend(_duplicate_keys(item, (*path, index), file))
    return issues


def parse_yaml(text: str, file: str) -> LocatedDocument:
    """Parse one YAML document; syntax errors and duplicate keys become ConfigError."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ConfigError([ConfigIssue(file, line, col, "", f"YAML syntax: {exc.problem}")]) from None
    positions: dict[KeyPath, Position] = {(): Position(1, 1)}
    if node is not None:
        duplicates = _duplicate_keys(node, (), file)
        if duplicates:
            raise ConfigError(duplicates)
        _walk(node, (), positions)
    return LocatedDocument(file, data if data is not None else {}, positions)


def load_yaml(path: str | Path) -> LocatedDocument:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(path), 0, 0, "", f"cannot read: {exc.strerror}")]) from None
    return parse_yaml(text, str(path))


def validation_issues(doc: LocatedDocument, error: ValidationError,
                      prefix: KeyPath = ()) -> list[ConfigIssue]:
    """Translate a pydantic ValidationError into located issues."""
    issues = []
    for err in error.errors():
        loc = tuple(part for part in (*prefix, *err["loc"]) if isinstance(part, (str, int)))
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        issues.append(doc.issue(loc, message))
    return sorted(issues, key=lambda i: (i.file, i.line, i.column))


def validate_document(doc: LocatedDocument, model: type[ModelT]) -> ModelT:
    """Validate ``doc`` against ``model`` or raise ConfigError listing every issue."""
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(validation_issues(doc, exc)) from None


def load_model(path: str | Path, model: type[ModelT]) -> ModelT:
    return validate_document(load_yaml(path), model)
