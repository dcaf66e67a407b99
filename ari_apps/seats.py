"""Where a campaign's agents come from: its own fixed list, or the inbound engine's ACD.

The outbound runner asks for an agent per call and reports what happens to
it (ringing, answered, released, unreachable, call ended). :class:`FixedSeats`
keeps those agents' states itself (a standalone campaign owns its agents);
:class:`AcdSeats` routes every request through the ACD's router as a contact of
the campaign's queue, so inbound and outbound share agents and one agent is
never held by two calls. Either way pacing only sees counts and ages.

An ACD agent on a persistent line (``connection: persistent``) already has a
call open to their phone: a campaign call reaches them over that line
(:meth:`Seats.line`), never through a second INVITE.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ccengine.acd.router import Reservation, RoutingError
from ccengine.acd.service import Acd

OnOffer = Callable[[str, str], None]  # call id, agent id: an agent became free for a waiting call

BUSY_STATES = ("reserved", "ringing", "on_call")
ANSWERED_PRIORITY = 1_000_000
"""An answered campaign call has 2 s to reach an agent before it counts as abandoned; a waiting
inbound caller loses 2 s at most, so the answered call goes first whatever the queue priorities."""


@dataclass
class Counts:
    """The agent side of a pacing snapshot."""

    idle: int
    talk_ages: list[float]
    wrap_ages: list[float]
    free_now: int  # agents that could be reserved right now


class NoLine(Exception):
    """The agent works on a persistent line that cannot carry this call: skip the agent (ringing
    their phone would send a second INVITE to a phone already on the line)."""


class LinePool(Protocol):
    """The engine's persistent agent lines (``ari_apps.lines.AgentLines``)."""

    def take(self, agent_id: str, call_id: str) -> str | None: ...
    def zip_tone(self, channel_id: str) -> None: ...
    async def hold(self, channel_id: str) -> None: ...


class Seats(Protocol):
    on_offer: OnOffer
    shared: bool  # other work (inbound calls) competes for these agents

    def counts(self, guaranteed: bool) -> Counts: ...
    def take(self, call_id: str, *, wait: bool) -> str | None: ...
    def cancel(self, call_id: str) -> None: ...
    def ringing(self, agent_id: str, call_id: str) -> None: ...
    def answered(self, agent_id: str, call_id: str) -> None: ...
    def release(self, agent_id: str, call_id: str) -> None: ...
    def unreachable(self, agent_id: str, call_id: str) -> None: ...
    def ended(self, agent_id: str, call_id: str) -> float: ...
    def occupancy(self, elapsed: float) -> float: ...
    def size(self) -> int: ...
    def line(self, agent_id: str, call_id: str) -> str | None:
        """The agent's persistent line, now carrying ``call_id`` (None: ring the agent's phone);
        raises :class:`NoLine` when the agent has a line but it cannot take the call."""
    def zip_tone(self, line: str) -> None: ...
    async def hold_line(self, line: str) -> None:
        """The call on ``line`` is over: the line goes back on hold (it is never hung up)."""


@dataclass
class AgentLine:
    id: str
    state: str = "ready"  # ready | reserved | on_call | wrapup | not_ready
    since: float = field(default_factory=time.monotonic)
    call: str | None = None
    busy_s: float = 0.0  # talk + wrap seconds, for occupancy


class FixedSeats:
    """The campaign's own agent list (standalone runner); longest-idle first."""

    def __init__(self, agents: list[str], wrapup_s: float, pause_s: float):
        self.agents = {a: AgentLine(a) for a in agents}
        self.wrapup_s = wrapup_s
        self.pause_s = pause_s
        self.waiting: list[str] = []
        self.on_offer: OnOffer = lambda _c, _a: None
        self.shared = False

    def counts(self, guaranteed: bool) -> Counts:
        mono = time.monotonic()
        lines = self.agents.values()
        return Counts(sum(1 for a in lines if a.state == "ready" or (guaranteed and a.state == "reserved")),
                      [mono - a.since for a in lines if a.state == "on_call"],
                      [mono - a.since for a in lines if a.state == "wrapup"],
                      sum(1 for a in lines if a.state == "ready"))

    def take(self, call_id: str, *, wait: bool) -> str | None:
        ready = [a for a in self.agents.values() if a.state == "ready"]
        if not ready:
            if wait:
                self.waiting.append(call_id)
            return None
        agent = min(ready, key=lambda a: a.since)
        self._set(agent, "reserved", call_id)
        return agent.id

    def cancel(self, call_id: str) -> None:
        if call_id in self.waiting:
            self.waiting.remove(call_id)

    def ringing(self, agent_id: str, call_id: str) -> None:
        self._set(self.agents[agent_id], "on_call", call_id)

    def answered(self, agent_id: str, call_id: str) -> None:
        return None

    def release(self, agent_id: str, call_id: str) -> None:
        agent = self.agents[agent_id]
        if agent.call == call_id:
            self._set(agent, "ready")

    def unreachable(self, agent_id: str, call_id: str) -> None:
        """Like ring-no-answer: out of pacing for a while instead of retried hot."""
        agent = self.agents[agent_id]
        if agent.call != call_id:
            return
        self._set(agent, "not_ready")
        asyncio.get_running_loop().call_later(self.pause_s, self._back, agent)

    def _back(self, agent: AgentLine) -> None:
        if agent.state == "not_ready":
            self._set(agent, "ready")

    def ended(self, agent_id: str, call_id: str) -> float:
        agent = self.agents[agent_id]
        if agent.call != call_id:
            return 0.0
        self._set(agent, "wrapup", call_id)
        asyncio.get_running_loop().call_later(self.wrapup_s, self._wrapped, agent, call_id)
        return self.wrapup_s

    def _wrapped(self, agent: AgentLine, call_id: str) -> None:
        if agent.state == "wrapup" and agent.call == call_id:
            self._set(agent, "ready")

    def _set(self, agent: AgentLine, state: str, call_id: str | None = None) -> None:
        mono = time.monotonic()
        if agent.state in ("on_call", "wrapup"):
            agent.busy_s += mono - agent.since
        agent.state, agent.since, agent.call = state, mono, call_id
        if state == "ready" and self.waiting:
            call = self.waiting.pop(0)
            self._set(agent, "reserved", call)
            self.on_offer(call, agent.id)

    def occupancy(self, elapsed: float) -> float:
        mono = time.monotonic()
        busy = sum(a.busy_s + (mono - a.since if a.state in ("on_call", "wrapup") else 0.0)
                   for a in self.agents.values())
        return busy / max(elapsed * len(self.agents), 1e-9)

    def size(self) -> int:
        return len(self.agents)

    def line(self, agent_id: str, call_id: str) -> str | None:
        return None  # a standalone campaign's agents are rung for every call

    def zip_tone(self, line: str) -> None:
        return None

    async def hold_line(self, line: str) -> None:
        return None


class AcdSeats:
    """Agents of an ACD queue, shared with inbound (blending).

    Every request is a router contact of ``queue`` (so queue priority decides
    between a waiting inbound caller and an answered outbound one, and the
    reservation is atomic); a call already answered and waiting within its
    grace outranks inbound callers (ANSWERED_PRIORITY). Offers made later are delivered on the next loop
    turn, after the ACD call that made them returned, and only if still valid.
    """

    def __init__(self, acd: Acd, queue: str, skills: dict[str, int] | None = None, lines: LinePool | None = None):
        if queue not in acd.config.queues:
            raise ValueError(f"unknown queue {queue!r}; known: {', '.join(sorted(acd.config.queues))}")
        self.acd = acd
        self.queue = queue
        self.skills = skills
        self.lines = lines
        self.held: dict[str, Reservation] = {}  # call id → its reservation (until answered)
        self.serving: dict[str, str] = {}  # call id → agent that answered it
        self.on_offer: OnOffer = lambda _c, _a: None
        self.shared = True
        self._busy_acc = 0.0
        self._staffed_acc = 0.0
        self._sampled: float | None = None
        self._ringing: set[str] = set()

    def agents(self) -> list[str]:
        return [a for a in self.acd.config.qualified_agents(self.queue) if a in self.acd.agents]

    def counts(self, guaranteed: bool) -> Counts:
        mono = self.acd.clock()
        held = {r.agent_id for c, r in self.held.items() if c not in self._ringing}
        idle = talk_n = 0
        talk: list[float] = []
        wrap: list[float] = []
        free = 0
        for agent_id in self.agents():
            view = self.acd.agents[agent_id]
            if view.state == "ready":
                idle += 1
                free += 1
            elif guaranteed and agent_id in held:
                idle += 1
            elif view.state in BUSY_STATES:
                talk.append(mono - view.since)
            elif view.state == "wrapup":
                wrap.append(mono - view.since)
        talk_n = len(talk)
        self._sample(mono, talk_n + len(wrap), idle + talk_n + len(wrap))
        return Counts(idle, talk, wrap, free)

    def _sample(self, mono: float, busy: int, staffed: int) -> None:
        if self._sampled is not None:
            dt = mono - self._sampled
            self._busy_acc += dt * busy
            self._staffed_acc += dt * staffed
        self._sampled = mono

    def take(self, call_id: str, *, wait: bool) -> str | None:
        reservation = self.acd.route_outbound(call_id, self.queue, self._offered, wait=wait, skills=self.skills,
                                              priority=ANSWERED_PRIORITY if wait else None)
        if reservation is None:
            return None
        self.held[call_id] = reservation
        return reservation.agent_id

    def _offered(self, reservation: Reservation) -> None:
        asyncio.get_running_loop().call_soon(self._deliver, reservation)

    def _deliver(self, reservation: Reservation) -> None:
        try:
            current = self.acd.router.reservation_of(reservation.agent_id)
        except RoutingError:
            return
        if current != reservation:
            return  # withdrawn meanwhile (the call ended, or the ACD moved on)
        self.held[reservation.contact_id] = reservation
        self.on_offer(reservation.contact_id, reservation.agent_id)

    def cancel(self, call_id: str) -> None:
        """The call no longer wants an agent: withdraw its contact (and any reservation)."""
        self.held.pop(call_id, None)
        self._ringing.discard(call_id)
        if call_id in self.serving:
            return
        if self.acd.router.contact_state(call_id) is not None:
            self.acd.abandon(call_id)

    def ringing(self, agent_id: str, call_id: str) -> None:
        reservation = self.held.get(call_id)
        if reservation is not None and reservation.agent_id == agent_id:
            self._ringing.add(call_id)
            self.acd.ringing(reservation)

    def answered(self, agent_id: str, call_id: str) -> None:
        reservation = self.held.pop(call_id, None)
        self._ringing.discard(call_id)
        if reservation is not None and reservation.agent_id == agent_id:
            self.acd.answered(reservation)
            self.serving[call_id] = agent_id

    def release(self, agent_id: str, call_id: str) -> None:
        if self.serving.get(call_id) == agent_id:
            self.ended(agent_id, call_id)
            return
        self.cancel(call_id)

    def unreachable(self, agent_id: str, call_id: str) -> None:
        """Ring-no-answer: the ACD pauses the agent; the call gives up on agents."""
        reservation = self.held.pop(call_id, None)
        self._ringing.discard(call_id)
        if reservation is not None and reservation.agent_id == agent_id:
            self.acd.missed(reservation)
        if self.acd.router.contact_state(call_id) is not None:
            self.acd.abandon(call_id)

    def ended(self, agent_id: str, call_id: str) -> float:
        if self.serving.pop(call_id, None) != agent_id:
            self.cancel(call_id)
            return 0.0
        self.acd.finished(agent_id, call_id)
        view = self.acd.agents.get(agent_id)
        return float(self.acd.config.queues[self.queue].wrap_up) if view and view.state == "wrapup" else 0.0

    def occupancy(self, elapsed: float) -> float:
        return self._busy_acc / self._staffed_acc if self._staffed_acc > 0 else 0.0

    def size(self) -> int:
        return max(sum(1 for a in self.agents() if self.acd.agents[a].state != "logged_out"), 1)

    def line(self, agent_id: str, call_id: str) -> str | None:
        if not self.acd.persistent(agent_id):
            return None
        line = self.lines.take(agent_id, call_id) if self.lines is not None else None
        if line is None:
            raise NoLine(f"agent {agent_id} is on a persistent line that is not free")
        return line

    def zip_tone(self, line: str) -> None:
        if self.lines is not None:
            self.lines.zip_tone(line)

    async def hold_line(self, line: str) -> None:
        if self.lines is not None:
            await self.lines.hold(line)
