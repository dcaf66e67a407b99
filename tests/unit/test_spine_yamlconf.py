"""ccengine.yamlconf: every configuration mistake located as file:line:column: key.

Expected positions are computed from the YAML text itself (the line and column
where the offending key or item is written), never from the module's output.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from ccengine.yamlconf import (
    ConfigError,
    ConfigIssue,
    format_path,
    load_model,
    load_yaml,
    parse_yaml,
    validate_document,
)


def where(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """1-based (line, column) of the ``occurrence``-th ``needle`` in ``text``."""
    index = -1
    for _ in range(occurrence):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Item(_Strict):
    name: str
    size: int


class Inner(_Strict):
    port: int = Field(ge=1, le=65535)
    host: str = "localhost"


class Root(_Strict):
    title: str
    inner: Inner
    items: list[Item] = []
    ports: list[int] = []


GOOD = """\
title: demo
inner:
  port: 80
items:
  - name: a
    size: 1
ports: [1, 2]
"""

BAD = """\
# every mistake below must be reported at once
title: demo
inner:
  port: eighty
  host: h
  colour: red
items:
  - name: a
    size: 1
  - name: b
    size: big
  - size: 3
ports: [1, x, 3]
"""


# ------------------------------------------------------------------ syntax


@pytest.mark.parametrize(
    ("text", "line", "column", "problem"),
    [
        # the ':' after "b" is the offending token: line 2, column 4
        ("a: 1\n  b: 2\n", 2, 4, "mapping values are not allowed"),
        # a tab at the start of line 3
        ("a:\n  b: 1\n\tc: 2\n", 3, 1, "'\\t'"),
    ],
)
def test_syntax_error_is_a_config_error_with_position(text: str, line: int, column: int, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "conf/x.yaml")
    (issue,) = info.value.issues
    assert (issue.file, issue.line, issue.column) == ("conf/x.yaml", line, column)
    assert issue.message.startswith("YAML syntax:")
    assert problem in issue.message
    assert str(info.value).startswith(f"conf/x.yaml:{line}:{column}:")


def test_syntax_error_from_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("pbx:\n  ami: [1, 2\n  ari: 3\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert info.value.issues[0].file == str(path)
    assert info.value.issues[0].line >= 2


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_yaml(missing)
    assert info.value.issues[0].file == str(missing)
    assert "cannot read" in info.value.issues[0].message


# ------------------------------------------------------------------ duplicates


def test_duplicate_key_reported_at_its_second_occurrence() -> None:
    text = "a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\n"
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "f.yaml")
    (issue,) = info.value.issues
    assert (issue.line, issue.column) == where(text, "c:", occurrence=2)
    assert issue.key == "b.c"
    assert issue.message == "duplicate key"


def test_every_duplicate_key_reported_including_inside_lists() -> None:
    text = "x: 1\nx: 2\nlist:\n  - k: 1\n    k: 2\n"
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "f.yaml")
    found = {(i.key, i.line, i.column) for i in info.value.issues}
    assert found == {
        ("x", *where(text, "x:", occurrence=2)),
        ("list[0].k", *where(text, "k:", occurrence=2)),
    }


def test_same_key_in_sibling_mappings_is_not_a_duplicate() -> None:
    doc = parse_yaml("a:\n  k: 1\nb:\n  k: 2\n", "f.yaml")
    assert doc.data == {"a": {"k": 1}, "b": {"k": 2}}


def test_empty_document_is_an_empty_mapping() -> None:
    assert parse_yaml("# nothing\n", "f.yaml").data == {}


# ------------------------------------------------------------------ validation


def test_valid_document_validates() -> None:
    root = validate_document(parse_yaml(GOOD, "f.yaml"), Root)
    assert root.inner.port == 80
    assert root.items == [Item(name="a", size=1)]


def test_every_validation_error_located_at_its_key() -> None:
    with pytest.raises(ConfigError) as info:
        validate_document(parse_yaml(BAD, "conf.yaml"), Root)
    issues = {i.key: i for i in info.value.issues}
    expected = {
        "inner.port": where(BAD, "port: eighty"),
        "inner.colour": where(BAD, "colour:"),
        "items[1].size": where(BAD, "size: big"),
        # a missing key points at its parent: the list item that lacks it
        "items[2].name": where(BAD, "size: 3"),
        # a scalar list item is located at the item itself
        "ports[1]": where(BAD, "x, 3"),
    }
    assert set(issues) == set(expected)
    for key, position in expected.items():
        assert (issues[key].line, issues[key].column) == position, key
        assert issues[key].file == "conf.yaml"
    assert issues["inner.colour"].message == "unknown key"
    assert issues["items[2].name"].message == "required key is missing"
    assert "integer" in issues["inner.port"].message
    # reported in file order
    assert [(i.line, i.column) for i in info.value.issues] == sorted(
        (i.line, i.column) for i in info.value.issues)


def test_missing_top_level_key_points_at_document_start() -> None:
    text = "\n\ninner:\n  port: 1\n"
    with pytest.raises(ConfigError) as info:
        validate_document(parse_yaml(text, "f.yaml"), Root)
    (issue,) = info.value.issues
    assert issue.key == "title"
    assert (issue.line, issue.column) == (1, 1)
    assert issue.message == "required key is missing"


def test_missing_nested_key_points_at_parent_mapping() -> None:
    text = "title: t\ninner:\n  host: h\n"
    with pytest.raises(ConfigError) as info:
        validate_document(parse_yaml(text, "f.yaml"), Root)
    (issue,) = info.value.issues
    assert issue.key == "inner.port"
    assert (issue.line, issue.column) == where(text, "inner:")


def test_range_violation_message_and_str_format() -> None:
    text = "title: t\ninner:\n  port: 70000\n"
    with pytest.raises(ConfigError) as info:
        validate_document(parse_yaml(text, "a/b.yaml"), Root)
    (issue,) = info.value.issues
    line, column = where(text, "port:")
    assert str(issue) == f"a/b.yaml:{line}:{column}: inner.port: {issue.message}"
    assert "65535" in issue.message


def test_load_model_reads_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(BAD)
    with pytest.raises(ConfigError) as info:
        load_model(path, Root)
    assert {i.file for i in info.value.issues} == {str(path)}
    assert len(info.value.issues) == 5


def test_format_path_and_issue_without_key() -> None:
    assert format_path(("a", 0, "b", 2)) == "a[0].b[2]"
    assert format_path((3, "x")) == "[3].x"
    assert format_path(()) == ""
    assert str(ConfigIssue("f", 3, 4, "", "boom")) == "f:3:4: boom"
