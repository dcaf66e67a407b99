"""Callbacks promised while a queue is closed: which are due, retried, settled.

Pure bookkeeping with time passed in (wall-clock, aware datetimes: a promise
outlives the process). The ACD service publishes an event for every change
and this book can be rebuilt from those events alone (``replay``), so pending
callbacks survive a restart without a table of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

Outcome = Literal["connected", "exhausted", "expired"]


@dataclass
class PendingCallback:
    id: str  # the call during which it was requested
    queue_id: str
    number: str
    expires_at: datetime
    attempts: int  # allowed
    retry_seconds: float
    made: int = 0  # attempts started
    next_at: datetime | None = None  # earliest next attempt (None: as soon as the queue opens)
    dialing: str | None = None  # call id of the attempt in progress


class CallbackBook:
    def __init__(self) -> None:
        self.pending: dict[str, PendingCallback] = {}

    def schedule(self, callback_id: str, queue_id: str, number: str, now: datetime, *, window: float,
                 attempts: int, retry_seconds: float) -> PendingCallback:
        callback = PendingCallback(callback_id, queue_id, number, now + timedelta(seconds=window), attempts,
                                   retry_seconds)
        self.pending[callback_id] = callback
        return callback

    def due(self, now: datetime, is_open: Callable[[str], bool]) -> tuple[list[PendingCallback],
                                                                           list[tuple[PendingCallback, Outcome]]]:
        """Callbacks to dial now (call ``started`` for each), and callbacks settled without a
        further attempt: window closed, or attempts used up (an attempt cut short by a restart)."""
        dial: list[PendingCallback] = []
        settled: list[tuple[PendingCallback, Outcome]] = []
        for callback in self.pending.values():
            if callback.dialing is not None:
                continue  # an attempt in progress runs to its end, even past the window
            if callback.made >= callback.attempts:
                settled.append((callback, "exhausted"))
            elif now >= callback.expires_at:
                settled.append((callback, "expired"))
            elif (callback.next_at is None or now >= callback.next_at) and is_open(callback.queue_id):
                dial.append(callback)
        return dial, settled

    def started(self, callback_id: str, call_id: str) -> int:
        """An attempt begins as call ``call_id``; returns its number (1-based)."""
        callback = self.pending[callback_id]
        callback.made += 1
        callback.dialing = call_id
        return callback.made

    def attempt_over(self, callback_id: str, connected: bool, now: datetime) -> Outcome | None:
        """The attempt ended; returns the outcome if the callback is settled (then call ``settle``)."""
        callback = self.pending.get(callback_id)
        if callback is None:
            return None
        callback.dialing = None
        if connected:
            return "connected"
        callback.next_at = now + timedelta(seconds=callback.retry_seconds)
        if callback.made >= callback.attempts:
            return "exhausted"
        return None

    def settle(self, callback_id: str) -> None:
        self.pending.pop(callback_id, None)

    def replay(self, event_type: str, occurred_at: datetime, call_id: str | None, data: dict[str, Any]) -> None:
        """Rebuild from the stored events, oldest first. An attempt that was in progress when the
        engine stopped counts as made and failed: the retry delay runs from its start."""
        if event_type == "callback.scheduled" and call_id is not None:
            self.pending[call_id] = PendingCallback(
                call_id, data["queue"], data["number"], datetime.fromisoformat(data["expires_at"]),
                data["attempts"], data["retry_seconds"])
        elif event_type == "callback.attempted":
            callback = self.pending.get(data["callback_id"])
            if callback is not None:
                callback.made = max(callback.made, data["attempt"])
                callback.next_at = occurred_at + timedelta(seconds=callback.retry_seconds)
        elif event_type == "callback.finished" and call_id is not None:
            self.pending.pop(call_id, None)
