"""The IVR's extra skills and priority boost reach the router and survive an overflow."""

from __future__ import annotations

from pathlib import Path

from ccengine.acd.definitions import load_queue_config
from ccengine.acd.router import Reservation
from ccengine.acd.service import Acd
from ccengine.core.events import Event

QUEUES = """
version: 1
skills:
  - {id: general}
  - {id: wealth}
calendars:
  always: {timezone: UTC, open: {mon-sun: ["00:00-24:00"]}}
queues:
  - id: first
    required_skills: {general: 1}
    hours: always
    overflow: [{after: 5s, queue: second}]
  - id: second
    required_skills: {general: 1}
    hours: always
agents:
  - {id: plain, name: Plain, skills: {general: 9}}
  - {id: expert, name: Expert, skills: {general: 2, wealth: 6}}
"""


def make(tmp_path: Path) -> tuple[Acd, list[Reservation], list[float]]:
    path = tmp_path / "q.yaml"
    path.write_text(QUEUES)
    now = [0.0]
    events: list[Event] = []
    acd = Acd(load_queue_config(path), events.append, clock=lambda: now[0])
    offers: list[Reservation] = []
    acd.offer = offers.append
    return acd, offers, now


def test_extra_skills_pick_the_qualified_agent(tmp_path: Path) -> None:
    acd, offers, _ = make(tmp_path)
    acd.login("plain")
    acd.login("expert")
    acd.enqueue("c1", "first", extra_skills={"wealth": 3}, priority_boost=5)
    assert [o.agent_id for o in offers] == ["expert"]


def test_extra_skills_survive_an_overflow(tmp_path: Path) -> None:
    acd, offers, now = make(tmp_path)
    acd.login("plain")
    acd.enqueue("c1", "first", extra_skills={"wealth": 3})
    assert offers == []  # the only agent lacks the skill
    now[0] = 6.0
    acd.tick()
    assert acd.waiting["c1"].queue_id == "second" and offers == []
    acd.login("expert")
    assert [o.agent_id for o in offers] == ["expert"]


def test_priority_boost_orders_the_queue(tmp_path: Path) -> None:
    acd, offers, now = make(tmp_path)
    acd.enqueue("early", "first")
    now[0] = 1.0
    acd.enqueue("boosted", "first", priority_boost=50)
    acd.login("plain")
    assert [o.contact_id for o in offers] == ["boosted"]
