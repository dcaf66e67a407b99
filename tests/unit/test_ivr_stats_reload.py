"""Per-node IVR statistics from the event log (real SQLite), and hot reload by tree version."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy.orm import Session

from ccengine.cli.main import main
from ccengine.config import FlowSettings
from ccengine.core.events import CallIvrFinished, CallIvrStarted, CallIvrStep, Event, Payload
from ccengine.ivr.interpreter import Collect, Context, Digits, Done, Play, Walk
from ccengine.ivr.registry import TreeRegistry, flow_tree
from ccengine.ivr.stats import compute, format_stats, from_store
from ccengine.store.database import make_engine, upgrade
from ccengine.store.schema import EventRow

V1 = """
version: 1
id: hot
start: menu
nodes:
  menu:
    type: menu
    prompt: "Press 1."
    choices: {"1": first}
    fallback: first
  first: {type: route, queue: general}
"""
V2 = V1.replace("first: {type: route, queue: general}", "first: {type: hangup, served: true}")


def walk_events(walk: Walk, digits: list[str], hang_up: bool = False) -> list[tuple[str, dict[str, object]]]:
    """Drive ``walk`` and return the events the driver would publish."""
    tree = walk.tree
    out: list[tuple[str, dict[str, object]]] = [("call.ivr_started", {"tree": tree.id,
                                                                      "tree_version": tree.version})]
    action = walk.start()
    for digit in digits:
        if walk.ended is not None:
            break
        action = walk.feed(Done() if isinstance(action, Play) else Digits(digit))
        assert isinstance(action, (Collect, Play)) or walk.ended is not None
    if hang_up:
        walk.hangup()
    for step in walk.take_steps():
        out.append(("call.ivr_step", {"tree": tree.id, "tree_version": tree.version, "node": step.node,
                                      "kind": step.kind, "exit": step.exit, "attempts": step.attempts}))
    if walk.ended is not None:
        served = getattr(walk.ended, "served", False)
        outcome = "abandoned" if hang_up else ("served" if served else
                                              "routed" if type(walk.ended).__name__ == "Route" else "hangup")
        out.append(("call.ivr_finished", {"tree": tree.id, "tree_version": tree.version, "outcome": outcome}))
    return out


def test_hot_reload_keeps_running_walks_on_their_version(tmp_path: Path) -> None:
    path = tmp_path / "hot.yaml"
    path.write_text(V1)
    registry = TreeRegistry(path, FlowSettings(), lambda: ["general"])
    old = registry.tree
    walk = Walk(registry.tree, Context("1", lambda: datetime.now(UTC)))
    walk.start()
    path.write_text(V2)
    assert registry.reload() and registry.tree.version != old.version
    assert type(walk.feed(Digits("1"))).__name__ == "Route"  # finished on the version it started
    fresh = Walk(registry.tree, Context("1", lambda: datetime.now(UTC)))
    fresh.start()
    assert type(fresh.feed(Digits("1"))).__name__ == "Hangup"
    path.write_text(V2.replace("queue: general", "queue: nowhere").replace("type: hangup, served: true",
                                                                             "type: route, queue: nowhere"))
    assert not registry.reload() and registry.tree.node("first").type == "hangup"  # a bad file is refused


def test_flow_settings_become_a_tree() -> None:
    tree = flow_tree(FlowSettings(menu={"1": "general", "3": "fraud"}, default_queue="general",
                                  menu_attempts=2, menu_timeout=4), ["general", "fraud"])
    walk = Walk(tree, Context("1", lambda: datetime.now(UTC)))
    assert isinstance(walk.start(), Collect)
    end = walk.feed(Digits("3"))
    assert getattr(end, "queue", None) == "fraud"
    walk = Walk(tree, Context("1", lambda: datetime.now(UTC)))
    walk.start()
    walk.feed(Digits(""))
    assert getattr(walk.feed(Digits("")), "queue", None) == "general"


def test_stats_entries_exits_drop_offs_and_containment(tmp_path: Path) -> None:
    path = tmp_path / "hot.yaml"
    path.write_text(V2)
    tree = TreeRegistry(path, FlowSettings(), lambda: ["general"]).tree
    events = []
    events += walk_events(Walk(tree, Context("1", lambda: datetime.now(UTC))), ["1"])  # served
    events += walk_events(Walk(tree, Context("1", lambda: datetime.now(UTC))), ["9", "", "1"])  # served, retries
    events += walk_events(Walk(tree, Context("1", lambda: datetime.now(UTC))), ["9"], hang_up=True)  # drop-off
    found = compute(events)[("hot", tree.version)]
    assert found.started == 3 and found.finished == 3
    assert found.containment == 2 / 3
    menu = found.nodes["menu"]
    assert menu.entries == 3 and menu.drop_offs == 1 and menu.exits["press 1"] == 2
    assert found.nodes["first"].entries == 2 and found.nodes["first"].exits == {"end": 2}
    assert "containment 67%" in format_stats(found)

    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    db = make_engine(url)
    payloads: dict[str, type[Payload]] = {"call.ivr_started": CallIvrStarted, "call.ivr_step": CallIvrStep,
                                          "call.ivr_finished": CallIvrFinished}
    with Session(db) as session:
        for kind, data in events:
            full = {**data, "node": data.get("node", "menu")} if kind == "call.ivr_finished" else data
            event = Event.of(payloads[kind].model_validate(full), call_id="c")
            session.add(EventRow(id=event.id, type=event.type, version=event.version,
                                 occurred_at=event.occurred_at, call_id="c", data=event.data))
        session.commit()
    stored = from_store(db)[("hot", tree.version)]
    assert stored.nodes["menu"].exits == menu.exits and stored.containment == found.containment
    db.dispose()

    config = tmp_path / "ccengine.yaml"
    config.write_text("pbx:\n  ami: {username: u, secret: s}\n  ari: {username: u, password: p}\n"
                      f"database: {{url: '{url}'}}\n")
    result = CliRunner().invoke(main, ["-c", str(config), "ivr", "stats"])
    assert result.exit_code == 0, result.output
    assert f"tree hot version {tree.version}: 3 callers, 3 finished, containment 67%" in result.output
    svg = tmp_path / "hot.svg"
    result = CliRunner().invoke(main, ["-c", str(config), "ivr", "graph", str(path), "-o", str(svg),
                                       "--with-stats", "--queues", str(Path(__file__).parents[2] / "config" /
                                                                         "lab-queues.yaml")])
    assert result.exit_code == 0, result.output
    assert "3 entries" in svg.read_text() and "press 1 (2)" in svg.read_text()
