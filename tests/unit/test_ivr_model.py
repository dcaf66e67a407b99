"""IVR tree files: node shapes and graph mistakes are reported with file:line; the CLI exits non-zero."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ccengine.cli.main import main
from ccengine.config import FlowSettings
from ccengine.ivr.graph import to_dot
from ccengine.ivr.model import load_tree, tree_from_text
from ccengine.ivr.registry import TreeRegistry
from ccengine.yamlconf import ConfigError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "ivr"
LAB_TREE = ROOT / "config" / "ivr" / "lab-bank.yaml"
LAB_QUEUES = ROOT / "config" / "lab-queues.yaml"


def issues(path: Path, queues: list[str] | None = None, skills: list[str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_tree(path, queues, skills)
    return [str(i) for i in err.value.issues]


def test_lab_tree_is_valid_against_the_lab_queues() -> None:
    tree = load_tree(LAB_TREE, ["general", "cards", "fraud"])
    assert tree.start == "screen" and "balance_auth" in tree.nodes
    assert tree.lines["screen"] < tree.lines["main"]
    assert len(tree.version) == 12


def test_graph_mistakes_are_located() -> None:
    found = issues(FIXTURES / "broken_graph.yaml", ["general"])
    file = str(FIXTURES / "broken_graph.yaml")
    assert found == [
        f"{file}:5:3: nodes.main: endless loop for a caller who presses nothing: main → main",
        f"{file}:8:15: nodes.main.choices.1: press 1 goes to undefined node 'nowhere'",
        f"{file}:10:3: nodes.spin: endless loop for a caller who presses nothing: spin → spin2 → spin",
        f"{file}:20:5: nodes.q.queue: unknown queue 'nosuch'",
        f"{file}:21:3: nodes.orphan: node 'orphan' is unreachable from 'main'",
    ]


def test_queue_check_needs_queue_ids() -> None:
    found = issues(FIXTURES / "broken_graph.yaml", None)
    assert not any("unknown queue" in i for i in found)


def test_loops_without_exit() -> None:
    found = issues(FIXTURES / "no_exit.yaml")
    assert any(":5:3: nodes.hello: loop without exit: no route" in i for i in found), found
    assert any(":9:3: nodes.a: endless loop for a caller who presses nothing: a → b → a" in i for i in found), found
    assert any("nodes.c: node 'c' is unreachable" in i for i in found), found
    assert len(found) == 3, found


def test_node_shapes_are_located() -> None:
    found = issues(FIXTURES / "bad_shapes.yaml")
    text = "\n".join(found)
    assert ":8:25: nodes.main.choices.x: String should match" in text  # the bad key's position
    assert "nodes.main.attempts: Input should be greater than or equal to 1" in text
    assert ":11:3: nodes.ask.prompt: required key is missing" in text
    assert ":16:5: nodes.ask.bogus: unknown key" in text
    assert "nodes.odd.type: type must be one of:" in text


def test_cross_field_rules() -> None:
    text = ("version: 1\nid: t\nstart: a\nnodes:\n  a:\n    type: collect\n    prompt: x\n    var: v\n"
            "    min_length: 9\n    max_length: 4\n    next: b\n    fallback: b\n  b: {type: hangup}\n")
    with pytest.raises(ConfigError) as err:
        tree_from_text(text, "c.yaml")
    assert "c.yaml:5:3: nodes.a: Value error, min_length is greater than max_length" in str(err.value)


RULES = """version: 1
id: t
start: card
nodes:
  card:
    type: collect
    prompt: Card number.
    var: card
    validate: luhn
    next: dip
    fallback: bye
  dip:
    type: dip
    operation: tickets
    args: {acount: "{account}"}
    store: t
    next: bye
    fallback: bye
  bye: {type: hangup}
"""


def test_card_entry_must_be_secure_and_dip_arguments_must_fit_the_operation() -> None:
    with pytest.raises(ConfigError) as err:
        tree_from_text(RULES, "r.yaml")
    assert [str(i) for i in err.value.issues] == [
        "r.yaml:9:5: nodes.card.validate: card numbers (validate: luhn) must be collected with secure: true "
        "(PCI: never stored or published)",
        "r.yaml:15:5: nodes.dip.args: tickets needs args.customer",
        "r.yaml:15:12: nodes.dip.args.acount: tickets takes no argument 'acount' (it takes: customer)",
    ]
    with pytest.raises(ConfigError) as err:
        tree_from_text(RULES.replace("validate: luhn", "validate: luhn\n    secure: false")
                       .replace('    args: {acount: "{account}"}\n', ""), "r.yaml")
    assert [str(i) for i in err.value.issues] == [
        "r.yaml:10:5: nodes.card.secure: card numbers (validate: luhn) must be collected with secure: true "
        "(PCI: never stored or published)",
        "r.yaml:15:5: nodes.dip.operation: tickets needs args.customer",
    ]
    fixed = RULES.replace("validate: luhn", "validate: luhn\n    secure: true").replace("acount: \"{account}\"",
                                                                                        "customer: \"{customer[id]}\"")
    assert tree_from_text(fixed).node("dip").args == {"customer": "{customer[id]}"}


def test_route_skills_are_checked_against_the_acd(tmp_path: Path) -> None:
    tree = tmp_path / "skills.yaml"
    tree.write_text(LAB_TREE.read_text().replace("skills: {fraud: 5}", "skills: {fruad: 5, cards: 2}"))
    assert load_tree(tree, ["general", "cards", "fraud"]).node("locked").skills == {"fruad": 5, "cards": 2}
    found = issues(tree, ["general", "cards", "fraud"], ["general", "cards", "fraud"])
    line = next(n for n, text in enumerate(tree.read_text().splitlines(), 1) if "fruad" in text)
    assert found == [f"{tree}:{line}:14: nodes.locked.skills.fruad: unknown skill 'fruad'"]
    result = CliRunner().invoke(main, ["ivr", "validate", str(tree), "--queues", str(LAB_QUEUES)])
    assert result.exit_code == 1 and f"{tree}:{line}:14: nodes.locked.skills.fruad: unknown skill" in result.output
    registry_skills = ["general", "cards", "fraud"]
    with pytest.raises(ConfigError):
        TreeRegistry(tree, FlowSettings(), lambda: ["general", "cards", "fraud"], lambda: registry_skills)
    registry_skills.append("fruad")
    assert TreeRegistry(tree, FlowSettings(), lambda: ["general", "cards", "fraud"], lambda: registry_skills).tree


def test_syntax_errors_and_missing_start() -> None:
    with pytest.raises(ConfigError) as err:
        tree_from_text("version: 1\nid: t\nstart: x\nnodes:\n  a: {type: hangup}\n", "t.yaml")
    assert "t.yaml:3:1: start: start node 'x' is not defined" in str(err.value)
    with pytest.raises(ConfigError) as err:
        tree_from_text("version: 1\nnodes: [\n", "s.yaml")
    assert str(err.value).startswith("s.yaml:")


def test_cli_validate_exit_status(tmp_path: Path) -> None:
    runner = CliRunner()
    good = runner.invoke(main, ["ivr", "validate", str(LAB_TREE), "--queues", str(LAB_QUEUES)])
    assert good.exit_code == 0, good.output
    assert "ok: tree lab-bank" in good.output
    bad = runner.invoke(main, ["ivr", "validate", str(FIXTURES / "broken_graph.yaml"), "--queues",
                               str(LAB_QUEUES)])
    assert bad.exit_code == 1
    assert "unknown queue 'nosuch'" in bad.output and "broken_graph.yaml:21:3" in bad.output


def test_cli_graph_renders_svg_and_png(tmp_path: Path) -> None:
    runner = CliRunner()
    svg = tmp_path / "tree.svg"
    result = runner.invoke(main, ["ivr", "graph", str(LAB_TREE), "-o", str(svg), "--queues", str(LAB_QUEUES)])
    assert result.exit_code == 0, result.output
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "balance_auth" in text and "PCI masked" in text
    png = tmp_path / "tree.png"
    result = runner.invoke(main, ["ivr", "graph", str(LAB_TREE), "-o", str(png), "--queues", str(LAB_QUEUES)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    broken = runner.invoke(main, ["ivr", "graph", str(FIXTURES / "no_exit.yaml"), "-o", str(tmp_path / "x.svg")])
    assert broken.exit_code == 1 and not (tmp_path / "x.svg").exists()


def test_dot_has_every_edge_and_stats_labels() -> None:
    tree = load_tree(LAB_TREE)
    dot = to_dot(tree, {"main": 7}, {("main", "press 1"): 3})
    assert '"main" -> "balance_auth" [label="press 1 (3)"]' in dot
    assert "7 entries" in dot
    edges = sum(len(n.exits()) for n in tree.nodes.values())
    assert dot.count(" -> ") == edges


RECORDED = """version: 1
id: t
start: bye
record: {value}
nodes:
  bye: {{type: hangup, say: Goodbye.}}
"""


def test_record_from_answer_is_a_strict_tree_level_switch(tmp_path: Path) -> None:
    assert tree_from_text(RECORDED.format(value="true")).record is True
    assert tree_from_text(RECORDED.format(value="x").replace("record: x\n", "")).record is False
    for value in ('"yes"', "1"):
        path = tmp_path / "tree.yaml"
        path.write_text(RECORDED.format(value=value))
        assert issues(path) == [f"{path}:4:1: record: Input should be a valid boolean"], value
