"""The minimal first-in-first-out queue of the spine: no skills, longest-ready agent first.

Pure data structure, no I/O: the skills-based router replaces it behind the
same three verbs (enqueue a call, make an agent available, match). An agent
taken by :meth:`FifoQueue.match` leaves the ready set in the same step, so it
can never be offered two calls at once.
"""

from __future__ import annotations

from collections import OrderedDict, deque


class FifoQueue:
    def __init__(self, name: str):
        self.name = name
        self._waiting: deque[str] = deque()
        self._ready: OrderedDict[str, float] = OrderedDict()

    @property
    def waiting(self) -> tuple[str, ...]:
        return tuple(self._waiting)

    @property
    def ready_agents(self) -> tuple[str, ...]:
        return tuple(self._ready)

    def enqueue(self, call_id: str, *, front: bool = False) -> int:
        """Add a call; ``front`` puts a call back at the head (its turn came already). Returns position."""
        if call_id in self._waiting:
            return self._waiting.index(call_id) + 1
        if front:
            self._waiting.appendleft(call_id)
            return 1
        self._waiting.append(call_id)
        return len(self._waiting)

    def remove(self, call_id: str) -> bool:
        try:
            self._waiting.remove(call_id)
            return True
        except ValueError:
            return False

    def agent_ready(self, agent_id: str, since: float) -> None:
        """Mark an agent available; agents are offered calls in order of ``since`` (longest idle first)."""
        self._ready.pop(agent_id, None)
        # keep insertion order sorted by readiness time; agents usually arrive in time order
        later = [a for a, t in self._ready.items() if t > since]
        self._ready[agent_id] = since
        for agent in later:
            self._ready.move_to_end(agent)

    def agent_unavailable(self, agent_id: str) -> None:
        self._ready.pop(agent_id, None)

    def match(self) -> list[tuple[str, str]]:
        """Pair waiting calls with ready agents, oldest call with longest-ready agent."""
        pairs = []
        while self._waiting and self._ready:
            agent_id, _ = self._ready.popitem(last=False)
            pairs.append((self._waiting.popleft(), agent_id))
        return pairs
