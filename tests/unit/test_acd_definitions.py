"""Queue definitions: each kind of mistake is reported at its exact place."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccengine.acd.cli import queues
from ccengine.acd.definitions import Customer, load_queue_config
from ccengine.yamlconf import ConfigError

FIXTURES = Path(__file__).parent / "fixtures" / "queues"
EXAMPLE = Path(__file__).parents[2] / "config" / "queues.yaml"


def issues_of(*paths: Path) -> list[tuple[str, int, int, str, str]]:
    with pytest.raises(ConfigError) as caught:
        load_queue_config(list(paths))
    return [(Path(i.file).name, i.line, i.column, i.key, i.message) for i in caught.value.issues]


def test_unknown_skill() -> None:
    assert issues_of(FIXTURES / "unknown_skill.yaml") == [
        ("unknown_skill.yaml", 6, 33, "queues[0].required_skills.lang_fr", "unknown skill 'lang_fr'"),
    ]


def test_bad_type() -> None:
    assert issues_of(FIXTURES / "bad_type.yaml") == [
        ("bad_type.yaml", 6, 5, "queues[0].priority",
         "Input should be a valid integer, unable to parse string as an integer"),
        ("bad_type.yaml", 10, 14, "agents[0].skills.cards", "Input should be less than or equal to 10"),
    ]


def test_duplicate_id() -> None:
    path = FIXTURES / "duplicate_id.yaml"
    assert issues_of(path) == [
        ("duplicate_id.yaml", 10, 5, "agents[1].id", f"duplicate agent id 'a1' (first defined at {path}:7)"),
    ]


def test_negative_time() -> None:
    assert issues_of(FIXTURES / "negative_time.yaml") == [
        ("negative_time.yaml", 6, 5, "queues[0].wrap_up", "negative time -5 s: durations must be >= 0"),
    ]


def test_overflow_cycle() -> None:
    assert issues_of(FIXTURES / "overflow_cycle.yaml") == [
        ("overflow_cycle.yaml", 7, 22, "queues[0].overflow[0].queue",
         "overflow cycle: retail -> backup -> retail"),
    ]


def test_overflow_to_unknown_queue() -> None:
    assert issues_of(FIXTURES / "overflow_unknown_queue.yaml") == [
        ("overflow_unknown_queue.yaml", 8, 22, "queues[0].overflow[1].queue",
         "overflow to unknown queue 'nowhere'"),
    ]


def test_every_mistake_at_once_even_inside_an_invalid_item() -> None:
    found = issues_of(FIXTURES / "many_mistakes.yaml")
    assert [(line, key) for _, line, _, key, _ in found] == [
        (3, "skills[1].id"),
        (6, "queues[0].required_skills.mortgages"),
        (7, "queues[0].strategy"),
        (8, "queues[0].wrap_up"),
        (10, "queues[0].overflow[0].queue"),
        (11, "queues[0].hours"),
        (16, "agents[0].colour"),
        (18, "customer_rules[0]"),
    ]
    assert found[6][4] == "unknown key"


def test_folder_merges_files_and_keeps_each_origin() -> None:
    folder = FIXTURES / "split"
    found = issues_of(folder)
    first = folder / "10-skills.yaml"
    assert found == [
        ("20-queues.yaml", 12, 5, "agents[1].id", f"duplicate agent id 'a1' (first defined at {first}:5)"),
        ("20-queues.yaml", 14, 25, "agents[1].skills.lang_zh", "unknown skill 'lang_zh'"),
    ]


def test_longer_cycle_is_reported_once(tmp_path: Path) -> None:
    text = "queues:\n" + "".join(
        f"  - id: q{i}\n    overflow:\n      - {{after: 10s, queue: q{(i + 1) % 3}}}\n" for i in range(3))
    path = tmp_path / "cycle.yaml"
    path.write_text(text, encoding="utf-8")
    found = issues_of(path)
    assert [(line, message) for _, line, _, _, message in found] == [
        (4, "overflow cycle: q0 -> q1 -> q2 -> q0")]


def test_example_config_is_valid_and_rules_apply() -> None:
    config = load_queue_config(EXAMPLE)
    assert {"retail", "cards", "fraud", "investments"} <= set(config.queues)
    # the licence is what keeps the unlicensed investment specialist out
    assert "a3003" not in config.qualified_agents("investments")
    assert config.qualified_agents("investments")
    caller = Customer(segment="premier", language="zh", flags=frozenset({"vulnerable"}))
    needs = config.needs("retail", caller)
    assert needs.rules == ("chinese", "vip", "vulnerable")
    assert needs.priority == config.queues["retail"].priority + 30 + 20
    assert needs.required_skills["lang_zh"] == 6
    # VIP boost is scoped to some queues: not the fraud desk
    assert config.needs("fraud", Customer(segment="premier")).priority == config.queues["fraud"].priority


def test_calendar_holidays_and_timezone() -> None:
    calendar = load_queue_config(EXAMPLE).calendars["retail_hours"]
    assert calendar.is_open(datetime(2025, 12, 24, 12, 30, tzinfo=UTC))  # Christmas Eve morning
    assert not calendar.is_open(datetime(2025, 12, 24, 13, 30, tzinfo=UTC))
    assert not calendar.is_open(datetime(2025, 12, 25, 10, 0, tzinfo=UTC))
    assert calendar.is_open(datetime(2025, 7, 1, 7, 30, tzinfo=UTC))  # 08:30 BST
    assert not calendar.is_open(datetime(2025, 7, 6, 10, 0, tzinfo=UTC))  # Sunday


def test_cli_validate_reports_and_fails() -> None:
    result = CliRunner().invoke(queues, ["validate", str(FIXTURES / "overflow_cycle.yaml"),
                                         str(FIXTURES / "negative_time.yaml")])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines == [
        f"{FIXTURES / 'overflow_cycle.yaml'}:7:22: queues[0].overflow[0].queue: "
        "overflow cycle: retail -> backup -> retail",
        f"{FIXTURES / 'negative_time.yaml'}:6:5: queues[0].wrap_up: "
        "negative time -5 s: durations must be >= 0",
    ]


def test_cli_validate_success_summary() -> None:
    result = CliRunner().invoke(queues, ["validate", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    config = load_queue_config(EXAMPLE)
    assert result.stdout.startswith(f"ok: {len(config.skills)} skills, {len(config.queues)} queues")


LINES = """version: 1
skills: [{id: general}]
teams:
  - {id: desk, connection: persistent}
  - {id: floor, connection: per_call}
agents:
  - {id: a1, name: Own, teams: [floor], connection: persistent}
  - {id: a2, name: Team, teams: [desk]}
  - {id: a3, name: Neither}
  - {id: a4, name: Overruled, teams: [desk], connection: per_call}
"""


def test_persistent_line_from_the_agent_or_its_team(tmp_path: Path) -> None:
    path = tmp_path / "lines.yaml"
    path.write_text(LINES)
    agents = load_queue_config(path).agents
    assert {a: agents[a].persistent for a in agents} == {"a1": True, "a2": True, "a3": False, "a4": False}
    assert agents["a3"].connection == "per_call"


def test_persistent_line_mistakes_are_located(tmp_path: Path) -> None:
    path = tmp_path / "lines.yaml"
    path.write_text(LINES.replace("agents:\n", """agents:
  - {id: b1, name: Both teams, teams: [desk, floor]}
  - {id: b2, name: Chat only, channels: [chat], connection: persistent}
  - {id: b3, name: Two calls, max_concurrent: {voice: 2}, teams: [desk]}
  - {id: b4, name: Typo, connection: nailed}
""").replace("- {id: floor, connection: per_call}", "- {id: floor, connection: per_call}\n  - {id: desk}"))
    assert issues_of(path) == [
        ("lines.yaml", 6, 6, "teams[2].id", f"duplicate team id 'desk' (first defined at {path}:4)"),
        ("lines.yaml", 8, 32, "agents[0].teams", "teams 'desk' and 'floor' disagree on 'connection': "
                                                  "set it on the agent"),
        ("lines.yaml", 9, 49, "agents[1].connection", "a persistent line needs the 'voice' channel"),
        ("lines.yaml", 10, 48, "agents[2].max_concurrent.voice",
         "a persistent line carries one voice call at a time"),
        ("lines.yaml", 11, 26, "agents[3].connection", "Input should be 'per_call' or 'persistent'"),
    ]
