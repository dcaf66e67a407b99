"""Callbacks promised while a queue is closed: validation, dialing once open, retries, limits, replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ccengine.acd.callbacks import PendingCallback
from ccengine.acd.definitions import load_queue_config
from ccengine.acd.service import Acd
from ccengine.core.events import Event
from ccengine.yamlconf import ConfigError

HEADER = """
version: 1
skills: [{id: general}]
calendars:
  office: {timezone: UTC, open: {mon-sun: ["09:00-17:00"]}}
agents:
  - {id: a1, name: One, skills: {general: 5}}
queues:
"""
QUEUE = """  - id: general
    required_skills: {general: 1}
    hours: office
    when_closed: callback
    closed_callback: {window: 2d, attempts: 2, retry_after: 10m}
"""
NIGHT = datetime(2026, 11, 26, 22, 0, tzinfo=UTC)  # closed
MORNING = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # open


def issues(tmp_path: Path, queue: str) -> list[tuple[int, int, str, str]]:
    path = tmp_path / "q.yaml"
    path.write_text(HEADER + queue)
    with pytest.raises(ConfigError) as caught:
        load_queue_config(path)
    return [(i.line, i.column, i.key, i.message) for i in caught.value.issues]


def test_callback_needs_hours(tmp_path: Path) -> None:
    assert issues(tmp_path, QUEUE.replace("    hours: office\n", "").replace("    closed_callback", "    #")) == [
        (11, 5, "queues[0].when_closed",
         "'callback' needs 'hours': without a calendar the queue never closes, nor opens again"),
    ]


def test_terms_without_callback_and_bad_terms_are_located(tmp_path: Path) -> None:
    assert issues(tmp_path, QUEUE.replace("when_closed: callback", "when_closed: voicemail")) == [
        (13, 5, "queues[0].closed_callback", "'closed_callback' is only used with when_closed 'callback', "
                                             "not 'voicemail'"),
    ]
    [(line, _, key, message)] = issues(tmp_path, QUEUE.replace("attempts: 2", "attempts: 0"))
    assert (line, key, message) == (13, "queues[0].closed_callback.attempts", "Input should be greater than or "
                                                                                "equal to 1")
    [(line, _, key, message)] = issues(tmp_path, QUEUE.replace("window: 2d", "window: 0s"))
    assert (line, key) == (13, "queues[0].closed_callback") and "'window' must be longer than 0 s" in message


class World:
    """An ACD with its clocks in hand and a recording dialer."""

    def __init__(self, tmp_path: Path, events: list[Event] | None = None) -> None:
        self.path = tmp_path / "q.yaml"
        self.path.write_text(HEADER + QUEUE)
        self.wall = NIGHT
        self.events: list[Event] = []
        self.dialed: list[tuple[str, str]] = []  # callback id, attempt call id
        self.acd = Acd(load_queue_config(self.path), self.events.append, wall=lambda: self.wall)
        for e in events or []:  # the engine's start: replay of the stored events
            self.acd.replay_callback(e.type, e.occurred_at, e.call_id, e.data)
        self.acd.dial_callback = self.dial

    def dial(self, callback: PendingCallback, call_id: str) -> None:
        self.dialed.append((callback.id, call_id))

    def at(self, when: datetime) -> None:
        self.wall = when
        self.acd.tick()

    def of(self, event_type: str) -> list[Event]:
        return [e for e in self.events if e.type == event_type]


def test_dialed_once_open_retried_then_exhausted(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.acd.schedule_callback("c1", "general", "5551234")
    [scheduled] = w.of("callback.scheduled")
    assert scheduled.call_id == "c1" and scheduled.data["number"] == "5551234"
    assert datetime.fromisoformat(scheduled.data["expires_at"]) == NIGHT + timedelta(days=2)
    assert scheduled.data["attempts"] == 2
    w.at(NIGHT + timedelta(hours=1))
    assert w.dialed == []  # still closed
    w.at(MORNING)
    [(callback_id, attempt_call)] = w.dialed
    assert callback_id == "c1" and attempt_call != "c1"
    [attempted] = w.of("callback.attempted")
    assert attempted.call_id == attempt_call and attempted.data == {"callback_id": "c1", "attempt": 1}
    w.at(MORNING + timedelta(minutes=1))
    assert len(w.dialed) == 1  # one attempt at a time
    w.acd.callback_attempt_over("c1", connected=False)
    w.at(MORNING + timedelta(minutes=9))
    assert len(w.dialed) == 1  # retry_after not yet over
    w.at(MORNING + timedelta(minutes=12))
    assert len(w.dialed) == 2 and w.of("callback.attempted")[-1].data["attempt"] == 2
    w.acd.callback_attempt_over("c1", connected=False)
    [finished] = w.of("callback.finished")
    assert finished.call_id == "c1" and finished.data == {"outcome": "exhausted", "attempts": 2}
    w.at(MORNING + timedelta(hours=2))
    assert len(w.dialed) == 2 and not w.acd.callbacks.pending


def test_connected_settles_and_window_expires_unanswered_promises(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.acd.schedule_callback("c1", "general", "5551234")
    w.wall = MORNING + timedelta(days=2)  # both are past c1's window when the queue is next seen open
    w.acd.schedule_callback("c2", "general", "5555678")
    w.at(MORNING + timedelta(days=2, minutes=1))
    assert [d[0] for d in w.dialed] == ["c2"]
    w.acd.callback_attempt_over("c2", connected=True)
    assert [(e.call_id, e.data["outcome"]) for e in w.of("callback.finished")] == [("c1", "expired"),
                                                                                 ("c2", "connected")]
    assert not w.acd.callbacks.pending


def test_pending_callbacks_are_rebuilt_from_the_event_log(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.acd.schedule_callback("c1", "general", "5551234")
    w.acd.schedule_callback("c2", "general", "5555678")
    w.acd.schedule_callback("c3", "general", "5550000")
    w.at(MORNING)
    w.acd.callback_attempt_over("c3", connected=True)  # c3 done; c1 and c2 are being dialed: the engine stops
    stored = list(w.events)

    again = World(tmp_path, stored)
    assert sorted(again.acd.callbacks.pending) == ["c1", "c2"]
    again.at(MORNING + timedelta(minutes=5))
    assert again.dialed == []  # the interrupted attempt counts: retry_after runs from its start
    again.at(MORNING + timedelta(minutes=11))
    assert sorted(d[0] for d in again.dialed) == ["c1", "c2"]
    assert {e.data["attempt"] for e in again.of("callback.attempted")} == {2}
