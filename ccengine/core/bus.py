"""In-process event bus: every subscriber gets its own bounded queue.

Publishing never blocks the call-control path. A subscriber that cannot keep
up loses events *visibly*: its ``dropped`` counter rises and it is told so
(``overflowed``) so it can resynchronise from the store instead of silently
holding a wrong picture.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from .events import Event

log = logging.getLogger(__name__)

EventFilter = Callable[[Event], bool]


class Subscription:
    def __init__(self, bus: EventBus, name: str, accept: EventFilter | None, maxsize: int):
        self._bus = bus
        self.name = name
        self.accept = accept
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0

    @property
    def overflowed(self) -> bool:
        return self.dropped > 0

    def offer(self, event: Event) -> None:
        if self.accept is not None and not self.accept(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1:
                log.error("subscriber %s is too slow: dropping events", self.name)

    async def get(self) -> Event:
        return await self.queue.get()

    def close(self) -> None:
        self._bus.unsubscribe(self)

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            yield await self.queue.get()


class EventBus:
    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self.published = 0

    def subscribe(self, name: str, accept: EventFilter | None = None, maxsize: int = 10_000) -> Subscription:
        subscription = Subscription(self, name, accept, maxsize)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def publish(self, event: Event) -> None:
        self.published += 1
        for subscription in self._subscriptions:
            subscription.offer(event)
