"""The event stream: stored events fanned out to subscribers, resumable from any offset.

Events reach the hub only after the store writer committed them, so the sequence number a
client sees is the event's ``seq`` in the ``events`` table and a client that reconnects
with ``after=<last seq>`` continues exactly where it stopped: the backlog comes from the
table, then the live feed, with duplicates between the two removed by ``seq``.

Each event is serialised once and the same text goes to every subscriber; what is waiting
for a subscriber leaves in one write (a WebSocket message carries one or more events, one
JSON object per line). A
subscriber whose queue fills is cut off (told so) rather than slowing the others down; it
resumes from its last offset.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ..core.events import Event
from ..store.schema import EventRow
from .security import Principal


@dataclass(frozen=True)
class StreamItem:
    seq: int
    type: str
    agent_id: str | None
    queue: str | None
    call_id: str | None
    frame: str  # the JSON text sent to clients


_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode  # one encoder: json.dumps builds one a call


def frame(seq: int, event: dict[str, Any]) -> str:
    return _encode({"seq": seq, **event})


def _iso(at: datetime) -> str:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


_str = json.encoder.encode_basestring_ascii  # the encoder's own text for a str (ensure_ascii)


def _opt(value: str | None) -> str:
    return "null" if value is None else _str(value)


def _frame(seq: int, id: str, type: str, version: int, occurred_at: str, call_id: str | None,
           agent_id: str | None, queue: str | None, data_json: str) -> str:
    """``{"seq": n, <envelope>}`` written field by field (what ``_encode`` gives for the dict, at a
    third of the cost) around the payload's JSON text, spliced in as it is."""
    return (f'{{"seq":{seq:d},"id":{_str(id)},"type":{_str(type)},"version":{version:d},'
            f'"occurred_at":{_str(occurred_at)},"call_id":{_opt(call_id)},"agent_id":{_opt(agent_id)},'
            f'"queue":{_opt(queue)},"data":{data_json}}}')


def item_of(seq: int, event: Event) -> StreamItem:
    """Built by hand rather than by ``model_dump``, around the payload text the store wrote
    (``Event.data_json``), and the same text as ``item_of_row`` gives for the stored row (live
    and replayed frames are identical)."""
    text = _frame(seq, event.id, event.type, event.version, _iso(event.occurred_at), event.call_id,
                  event.agent_id, event.queue, event.data_json)
    return StreamItem(seq, event.type, event.agent_id, event.queue, event.call_id, text)


def item_of_row(row: EventRow) -> StreamItem:
    text = _frame(row.seq, row.id, row.type, row.version, _iso(row.occurred_at), row.call_id, row.agent_id,
                  row.queue, _encode(row.data))
    return StreamItem(row.seq, row.type, row.agent_id, row.queue, row.call_id, text)


@dataclass(frozen=True)
class StreamFilter:
    """What a client asked for (``types`` are exact types or ``family.*``), bounded by its role."""

    principal: Principal
    types: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()

    def __call__(self, item: StreamItem) -> bool:
        if not self.principal.may_see_event(item.type, item.agent_id):
            return False
        if self.types and not any(item.type == t or (t.endswith(".*") and item.type.startswith(t[:-1]))
                                  for t in self.types):
            return False
        if self.queues and item.queue not in self.queues:
            return False
        return not self.agents or item.agent_id in self.agents


class Lagged(Exception):
    """The subscriber fell too far behind and was cut off; it should resume from its offset."""


class Batch(list[StreamItem]):
    """Items committed together that passed one filter; shared by every subscriber with that
    filter, so their wire text is built once."""

    _text: str | None = None
    _data: bytes | None = None
    _frame: bytes | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = "\n".join(item.frame for item in self)
        return self._text

    @property
    def data(self) -> bytes:
        """``text`` encoded once for all the subscribers it goes to."""
        if self._data is None:
            self._data = self.text.encode()
        return self._data

    @property
    def websocket_frame(self) -> bytes:
        """``data`` as one unmasked, uncompressed WebSocket text frame (RFC 6455 5.2), built once."""
        if self._frame is None:
            size = len(self.data)
            if size < 126:
                header = bytes((0x81, size))
            elif size < 1 << 16:
                header = bytes((0x81, 126)) + size.to_bytes(2, "big")
            else:
                header = bytes((0x81, 127)) + size.to_bytes(8, "big")
            self._frame = header + self.data
        return self._frame


Sink = Callable[[Batch], bool]
"""Writes a live batch to the client at once, without waiting (False: not now, queue it)."""


@dataclass(eq=False)
class Subscriber:
    accept: Callable[[StreamItem], bool]  # hashable: subscribers with equal filters share batches
    queue: asyncio.Queue[Batch | None]
    limit: int
    sink: Sink | None = None
    last: int = 0  # the highest seq handed to the client
    live: bool = False  # the backlog is sent: what the queue holds comes next
    pending: int = 0
    lagged: bool = False


class EventHub:
    def __init__(self, db: Engine, replay_batch: int = 1000, subscriber_queue: int = 20_000):
        self.db = db
        self.replay_batch = replay_batch
        self.subscriber_queue = subscriber_queue  # events a subscriber may have waiting before it is cut off
        self.last_seq = 0
        self.published = 0
        self._subscribers: set[Subscriber] = set()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def on_commit(self, stored: list[tuple[int, Event]]) -> None:
        """Store-writer listener: fan out what was just committed."""
        self.publish([item_of(seq, event) for seq, event in stored])

    def publish(self, items: list[StreamItem]) -> None:
        """Filter once per distinct filter; the shared batch goes straight to each live subscriber
        with a sink and nothing queued (no task wake-up per subscriber and commit), else to its
        queue, which its reader drains in order."""
        if not items:
            return
        self.last_seq = max(self.last_seq, items[-1].seq)
        self.published += len(items)
        shared: dict[Callable[[StreamItem], bool], Batch] = {}
        for sub in list(self._subscribers):
            batch = shared.get(sub.accept)
            if batch is None:
                batch = shared[sub.accept] = Batch(item for item in items if sub.accept(item))
            if not batch:
                continue
            if sub.live and not sub.pending and sub.sink is not None:
                if batch[0].seq <= sub.last:  # already sent from the table
                    batch = Batch(item for item in batch if item.seq > sub.last)
                    if not batch:
                        continue
                if sub.sink(batch):
                    sub.last = batch[-1].seq
                    continue
            if sub.pending + len(batch) > sub.limit:
                sub.lagged = True
                self._subscribers.discard(sub)
                sub.queue.put_nowait(None)  # wakes the reader, which ends after what it has
                continue
            sub.pending += len(batch)
            sub.queue.put_nowait(batch)

    def _backlog(self, after: int, accept: Callable[[StreamItem], bool]) -> list[StreamItem]:
        with Session(self.db) as session:
            rows = session.scalars(select(EventRow).where(EventRow.seq > after).order_by(EventRow.seq)
                                   .limit(self.replay_batch)).all()
            items = [item_of_row(row) for row in rows]
        if not items:
            return []
        kept = [item for item in items if accept(item)]
        # keep the offset moving even when nothing in this page passes the filter
        return kept if kept and kept[-1].seq == items[-1].seq else [*kept, _marker(items[-1].seq)]

    async def batches(self, accept: Callable[[StreamItem], bool], after: int | None = None, most: int = 5000,
                      sink: Sink | None = None) -> AsyncIterator[Batch]:
        """Backlog after ``after`` (None: live only), then live events, in order and in batches of
        what is already waiting (one network write per batch); raises ``Lagged``. With a ``sink``,
        live batches go to it directly whenever nothing is waiting here (the caller sends what
        this yields with the same connection, so the order holds)."""
        sub = Subscriber(accept, asyncio.Queue(), self.subscriber_queue, sink)
        self._subscribers.add(sub)  # before reading the table: nothing committed meanwhile is missed
        try:
            sub.last = self.last_seq if after is None else after
            if after is not None:
                while True:
                    page = await asyncio.to_thread(self._backlog, sub.last, accept)
                    if not page:
                        break
                    sub.last = page[-1].seq
                    if sendable := Batch(item for item in page if item.frame):
                        yield sendable
            sub.live = True
            queue = sub.queue
            ended = False
            while not ended:
                got = await queue.get()
                if got is None:
                    break
                sub.pending -= len(got)
                if got[0].seq <= sub.last:  # already sent from the table
                    got = Batch(item for item in got if item.seq > sub.last)
                merged = got
                while len(merged) < most and not queue.empty():
                    more = queue.get_nowait()
                    if more is None:
                        ended = True
                        break
                    sub.pending -= len(more)
                    merged = Batch([*merged, *more])
                if merged:
                    sub.last = merged[-1].seq
                    yield merged
            if sub.lagged:
                raise Lagged(f"subscriber fell behind; resume after {sub.last}")
        finally:
            self._subscribers.discard(sub)

    async def stream(self, accept: Callable[[StreamItem], bool], after: int | None = None
                     ) -> AsyncIterator[StreamItem]:
        """``batches`` one item at a time."""
        async for batch in self.batches(accept, after):
            for item in batch:
                yield item

    def disconnect(self, username: str, token_id: int | None = None) -> int:
        """End the open streams of a user (of one of their tokens): disabling a user or revoking a
        token takes effect on connections already authenticated, not only on the next request."""
        cut = 0
        for sub in list(self._subscribers):
            who = sub.accept.principal if isinstance(sub.accept, StreamFilter) else None
            if who is not None and who.username == username and token_id in (None, who.token_id):
                self._subscribers.discard(sub)
                sub.queue.put_nowait(None)
                cut += 1
        return cut

    def close(self) -> None:
        for sub in list(self._subscribers):
            sub.queue.put_nowait(None)
        self._subscribers.clear()


def _marker(seq: int) -> StreamItem:
    """An offset-only item: advances the cursor, never sent."""
    return StreamItem(seq, "", None, None, None, "")


def parse_filter(principal: Principal, query: dict[str, str] | Any) -> StreamFilter:
    def split(name: str) -> tuple[str, ...]:
        return tuple(p for v in query.getall(name, []) for p in v.split(",") if p) if hasattr(query, "getall") \
            else tuple(p for p in str(query.get(name, "")).split(",") if p)

    return StreamFilter(principal, split("type"), split("queue"), split("agent"))
