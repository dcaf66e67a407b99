"""Agents on a persistent line: ready only while the line is up, never offered a call without it."""

from __future__ import annotations

from pathlib import Path

from ccengine.acd.definitions import load_queue_config
from ccengine.acd.router import Reservation
from ccengine.acd.service import Acd
from ccengine.core.events import Event

QUEUES = """
version: 1
skills: [{id: general}]
queues:
  - {id: general, required_skills: {general: 1}}
teams:
  - {id: desk, connection: persistent}
agents:
  - {id: lined, name: On a line, skills: {general: 5}, teams: [desk]}
"""


class Recorder:
    def __init__(self, tmp_path: Path):
        path = tmp_path / "q.yaml"
        path.write_text(QUEUES)
        self.events: list[Event] = []
        self.acd = Acd(load_queue_config(path), self.events.append, rona_pause=None)
        self.offers: list[Reservation] = []
        self.dialed: list[str] = []
        self.dropped: list[str] = []
        self.acd.offer = self.offers.append
        self.acd.dial_line = self.dialed.append
        self.acd.drop_line = self.dropped.append

    def states(self) -> list[tuple[str, str]]:
        return [(e.data["state"], e.data["reason"]) for e in self.events if e.type == "agent.state_changed"]


def test_ready_waits_for_the_line_and_offers_only_once_it_is_up(tmp_path: Path) -> None:
    r = Recorder(tmp_path)
    r.acd.login("lined")
    assert r.dialed == ["lined"] and r.acd.agents["lined"].state == "not_ready"
    r.acd.enqueue("c1", "general")
    assert r.offers == [], "no offer while the line is not up"
    r.acd.ready("lined", "manual")
    assert r.dialed == ["lined"], "a line being called is not called twice"
    r.acd.line_up("lined")
    assert [o.contact_id for o in r.offers] == ["c1"]
    assert r.states() == [("not_ready", "login"), ("not_ready", "line_connecting"), ("ready", "line_up"),
                          ("reserved", "")]


def test_a_dropped_line_makes_the_agent_not_ready_until_made_ready_again(tmp_path: Path) -> None:
    r = Recorder(tmp_path)
    r.acd.login("lined")
    r.acd.line_up("lined")
    r.acd.line_down("lined", "line_down")
    assert r.states()[-1] == ("not_ready", "line_down")
    r.acd.enqueue("c1", "general")
    assert r.offers == []
    r.acd.ready("lined", "manual")
    assert r.dialed == ["lined", "lined"] and r.states()[-1] == ("not_ready", "line_connecting")


def test_a_line_lost_during_a_call_leaves_the_agent_not_ready_after_it(tmp_path: Path) -> None:
    r = Recorder(tmp_path)
    r.acd.login("lined")
    r.acd.line_up("lined")
    r.acd.enqueue("c1", "general")
    [offer] = r.offers
    r.acd.answered(offer)
    r.acd.line_down("lined", "line_down")
    assert r.acd.agents["lined"].state == "on_call"
    r.acd.enqueue("c2", "general")
    r.acd.finished("lined", "c1", 5.0)
    assert r.states()[-1] == ("not_ready", "line_down") and len(r.offers) == 1


def test_logout_hangs_the_line_up(tmp_path: Path) -> None:
    r = Recorder(tmp_path)
    r.acd.login("lined")
    r.acd.line_up("lined")
    r.acd.logout("lined")
    assert r.dropped == ["lined"] and "lined" not in r.acd.lines_up
