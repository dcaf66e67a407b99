"""The ACD service: the router plus the clock, agent states and queue rules around it.

The router (pure) decides; this layer keeps time (wrap-up and ring-no-answer
pauses, overflow and announcement schedules), publishes ``agent.state_changed``
and queue events, and asks the Stasis application to ring an agent through
``offer``. It owns no PBX connection, so it can be driven and tested alone.

Agents with a persistent line (``connection: persistent``) are only ready while
their line is up: becoming ready without one asks the application to call the
phone (``dial_line``) and waits, not ready with reason ``line_connecting``, for
``line_up``; a line that drops makes the agent not ready (``line_down``), and
logging out hangs the line up (``drop_line``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ..core.events import (
    AgentStateChanged,
    CallbackAttempted,
    CallbackFinished,
    CallbackScheduled,
    CallOverflowed,
    Event,
)
from .callbacks import CallbackBook, PendingCallback
from .definitions import ContactNeeds, Customer, QueueConfig
from .router import AgentState, ContactState, Reservation, Router, RoutingError
from .router import QueuePolicy as Policy

log = logging.getLogger(__name__)

Offer = Callable[[Reservation], None]
Announce = Callable[[str, int, float | None], None]  # call id, position, estimated wait
OfferCallback = Callable[[str], None]  # call id
Expire = Callable[[str], None]  # call id: waited past the queue's max_wait, end the call
MessageReason = Literal["overflow", "max_wait", "closed", "ivr"]
TakeMessage = Callable[[str, MessageReason], None]  # call id, why: send the caller to voicemail
DialCallback = Callable[[PendingCallback, str], None]  # a scheduled callback, the attempt's call id
LineAction = Callable[[str], None]  # agent id: call the agent's persistent line, or hang it up
LINE_CONNECTING = "line_connecting"


@dataclass
class Waiting:
    call_id: str
    queue_id: str
    queue_entered: float  # monotonic, entry into the current queue
    customer: Customer
    next_announcement: float | None = None
    callback_offered: bool = False
    callback: bool = False  # the caller hung up to be called back; the place is kept
    expired: bool = False  # max_wait handled
    extra_skills: Mapping[str, int] = field(default_factory=dict)  # from the IVR (intent-specific)
    priority_boost: int = 0  # from the IVR


@dataclass
class AgentView:
    """What supervisors and events see of an agent (the router keeps routing state)."""

    id: str
    state: str = "logged_out"
    reason: str = ""
    since: float = field(default_factory=time.monotonic)
    call_id: str | None = None
    queue_id: str | None = None  # queue of the current or last call (wrap-up length)


class Acd:
    def __init__(self, config: QueueConfig, publish: Callable[[Event], None], *,
                 rona_pause: float | None = 10.0, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.config = config
        self._publish = publish
        self.rona_pause = rona_pause
        self.clock = clock
        self.wall = wall  # callbacks promised while closed are kept in wall-clock time (they outlive the process)
        self.router = Router()
        self.agents: dict[str, AgentView] = {}
        self.waiting: dict[str, Waiting] = {}
        self.offer: Offer = lambda _r: None
        self.announce: Announce = lambda _c, _p, _w: None
        self.offer_callback: OfferCallback = lambda _c: None
        self.expire: Expire = lambda _c: None
        self.take_message: TakeMessage = lambda _c, _r: None
        self.dial_callback: DialCallback | None = None  # set by the application that can place calls
        self.callbacks = CallbackBook()
        self.dial_line: LineAction = lambda _a: None
        self.drop_line: LineAction = lambda _a: None
        self.lines_up: set[str] = set()  # agents whose persistent line is answered
        self._last_agent: dict[str, tuple[str, float]] = {}  # caller → (agent, monotonic time)
        self._caller_of: dict[str, str] = {}  # call id → caller, for affinity
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._handle_seconds: list[float] = []  # recent talk+wrap times, for wait estimates
        self._outbound: dict[str, Offer] = {}  # campaign call id → where its offers go
        self._apply(config, initial=True)

    # -- configuration -------------------------------------------------------------------------
    def _apply(self, config: QueueConfig, initial: bool = False) -> None:
        now = self.clock()
        for queue in config.queues.values():
            self.router.define_queue(Policy.from_definition(queue))
        for agent in config.agents.values():
            if agent.id in self.agents:
                self._offer_all(self.router.update_agent(agent.id, agent.skills, agent.capacity(), now))
            else:
                self.router.add_agent(agent.id, agent.skills, agent.capacity())
                self.agents[agent.id] = AgentView(agent.id)
        self.config = config
        if not initial:
            for agent_id in [a for a in self.agents if a not in config.agents]:
                self._retire(agent_id)
            for agent_id in [a for a in self.lines_up if a in self.agents and not self.persistent(a)]:
                if self.agents[agent_id].call_id is None:  # no longer persistent: the line goes
                    self.lines_up.discard(agent_id)
                    self.drop_line(agent_id)

    def reload(self, config: QueueConfig) -> None:
        """Hot reload: new terms apply to new contacts; waiting and connected calls are kept."""
        self._apply(config)
        log.info("ACD reloaded: %d queues, %d agents", len(config.queues), len(config.agents))

    def _retire(self, agent_id: str) -> None:
        """An agent removed from the definitions leaves once idle (never mid-call)."""
        view = self.agents[agent_id]
        if view.call_id is None and view.state in ("ready", "not_ready", "logged_out"):
            if view.state != "logged_out":
                self.router.logout(agent_id, self.clock())
                self._set(view, "logged_out", "removed")
            self.router.remove_agent(agent_id)
            del self.agents[agent_id]
            if agent_id in self.lines_up:
                self.lines_up.discard(agent_id)
                self.drop_line(agent_id)

    # -- agents --------------------------------------------------------------------------------
    def _set(self, view: AgentView, state: str, reason: str = "", call_id: str | None = None) -> None:
        previous = view.state
        event_call = call_id or view.call_id
        view.state, view.reason, view.since = state, reason, self.clock()
        view.call_id = call_id if state in ("reserved", "ringing", "on_call", "wrapup") else None
        if state == "wrapup":
            view.call_id = event_call
        self._publish(Event.of(AgentStateChanged(state=state, previous=previous, reason=reason),
                               agent_id=view.id, call_id=event_call))

    def login(self, agent_id: str, ready: bool = True) -> None:
        view = self.agents[agent_id]
        if view.state != "logged_out":
            return
        self.router.login(agent_id, self.clock())
        self._set(view, "not_ready", "login")
        if ready:
            self.ready(agent_id)

    def login_all(self) -> None:
        for agent_id in list(self.agents):
            self.login(agent_id)

    def persistent(self, agent_id: str) -> bool:
        agent = self.config.agents.get(agent_id)
        return agent is not None and agent.persistent

    def ready(self, agent_id: str, reason: str = "") -> None:
        view = self.agents[agent_id]
        self._cancel_timer(agent_id)
        if view.state in ("ready", "reserved", "ringing", "on_call", "logged_out"):
            return
        if self.persistent(agent_id) and agent_id not in self.lines_up:
            if view.reason != LINE_CONNECTING:  # ready once the line is answered (line_up)
                self.router.set_not_ready(agent_id, self.clock(), LINE_CONNECTING)
                self._set(view, "not_ready", LINE_CONNECTING)
                self.dial_line(agent_id)
            return
        self._set(view, "ready", reason)
        self._offer_all(self.router.set_ready(agent_id, self.clock()))

    def logout(self, agent_id: str) -> None:
        """Log an agent out; refused (RoutingError) while a call is reserved or connected."""
        view = self.agents[agent_id]
        if view.state == "logged_out":
            return
        self._cancel_timer(agent_id)
        self.router.logout(agent_id, self.clock())
        self._set(view, "logged_out", "logout")
        if self.persistent(agent_id):
            self.lines_up.discard(agent_id)
            self.drop_line(agent_id)

    def line_up(self, agent_id: str) -> None:
        """The agent's persistent line was answered (or found up after a restart)."""
        self.lines_up.add(agent_id)
        view = self.agents.get(agent_id)
        if view is not None and view.state == "not_ready" and view.reason == LINE_CONNECTING:
            self.ready(agent_id, "line_up")

    def line_down(self, agent_id: str, reason: str) -> None:
        """The persistent line failed or dropped: no offers until the agent is made ready again
        (which calls the line anew). A call in progress on it is ended by the application."""
        self.lines_up.discard(agent_id)
        view = self.agents.get(agent_id)
        if view is None or view.state == "logged_out":
            return
        self._cancel_timer(agent_id)
        self.router.set_not_ready(agent_id, self.clock(), reason)
        if view.state in ("ready", "wrapup", "not_ready"):
            self._set(view, "not_ready", reason)

    def not_ready(self, agent_id: str, reason: str) -> None:
        view = self.agents[agent_id]
        self._cancel_timer(agent_id)
        self.router.set_not_ready(agent_id, self.clock(), reason)
        if view.state in ("ready", "wrapup", "not_ready"):
            self._set(view, "not_ready", reason)

    def occupied(self, agent_id: str, call_id: str) -> None:
        """Recovery: an agent found on a call at resync stays busy on it."""
        view = self.agents.get(agent_id)
        if view is None:
            return
        now = self.clock()
        if view.state == "logged_out":
            self.router.login(agent_id, now)
        self.router.set_not_ready(agent_id, now, "recovered")
        self._set(view, "on_call", "recovered", call_id)

    def _later(self, agent_id: str, delay: float, action: Callable[[], None]) -> None:
        self._cancel_timer(agent_id)
        self._timers[agent_id] = asyncio.get_running_loop().call_later(delay, action)

    def _cancel_timer(self, agent_id: str) -> None:
        timer = self._timers.pop(agent_id, None)
        if timer is not None:
            timer.cancel()

    # -- contacts ------------------------------------------------------------------------------
    def is_open(self, queue_id: str, when: datetime) -> bool:
        queue = self.config.queues[queue_id]
        if queue.hours is None:
            return True
        return self.config.calendars[queue.hours].is_open(when)

    def remember_agent(self, caller: str, agent_id: str, seconds_ago: float) -> None:
        """Who last served ``caller`` (seeded from the store at start, updated as calls end)."""
        self._last_agent[caller] = (agent_id, self.clock() - seconds_ago)

    def enqueue(self, call_id: str, queue_id: str, customer: Customer | None = None,
                entered: Callable[[int], None] = lambda _position: None, caller: str = "", *,
                extra_skills: Mapping[str, int] | None = None, priority_boost: int = 0) -> None:
        """Route a new call. ``entered(position)`` runs before any agent is offered the call, so
        the queue entry is recorded before the reservation it may cause (position 0 = agent found).
        ``extra_skills`` and ``priority_boost`` come from the IVR (what the caller needs) and stay
        with the call through overflows."""
        customer = customer or Customer()
        now = self.clock()
        queue = self.config.queues[queue_id]
        first = queue.announcements.first_after if (queue.announcements.position
                                                     or queue.announcements.estimated_wait) else None
        waiting = self.waiting[call_id] = Waiting(call_id, queue_id, now, customer,
                                                  now + first if first is not None else None,
                                                  extra_skills=dict(extra_skills or {}),
                                                  priority_boost=priority_boost)
        needs = self._needs(queue_id, waiting)
        last_agent, last_at = self._last_agent.get(caller, (None, None)) if caller else (None, None)
        if caller:
            self._caller_of[call_id] = caller
        offer = self.router.contact_arrives(call_id, queue_id, now, priority=needs.priority,
                                            skills=needs.required_skills, last_agent=last_agent,
                                            last_agent_at=last_at)
        entered(0 if offer is not None else self.position(call_id))
        self._offer_all(offer)

    def direct_refusal(self, agent_id: str, queue_id: str, customer: Customer | None = None, *,
                       extra_skills: Mapping[str, int] | None = None, priority_boost: int = 0) -> str | None:
        """Why a call of ``queue_id`` cannot be offered to ``agent_id`` now (None: it can)."""
        needs = self._needs(queue_id, Waiting("", queue_id, 0.0, customer or Customer(),
                                              extra_skills=dict(extra_skills or {}), priority_boost=priority_boost))
        return self.router.directed_refusal(agent_id, queue_id, needs.required_skills)

    def direct(self, call_id: str, queue_id: str, agent_id: str, customer: Customer | None = None, *,
               extra_skills: Mapping[str, int] | None = None, priority_boost: int = 0) -> None:
        """Offer a call to a named agent (a transfer), reserved like any offer; ``RoutingError``
        when they cannot take it now. Unanswered, it waits in ``queue_id`` like any call."""
        now = self.clock()
        waiting = Waiting(call_id, queue_id, now, customer or Customer(), extra_skills=dict(extra_skills or {}),
                          priority_boost=priority_boost)
        needs = self._needs(queue_id, waiting)
        reservation = self.router.contact_for_agent(call_id, queue_id, agent_id, now, priority=needs.priority,
                                                    skills=needs.required_skills)
        self.waiting[call_id] = waiting
        self._offer_all(reservation)

    def _needs(self, queue_id: str, waiting: Waiting) -> ContactNeeds:
        needs = self.config.needs(queue_id, waiting.customer)
        if not waiting.extra_skills and not waiting.priority_boost:
            return needs
        skills = dict(needs.required_skills)
        for skill, level in waiting.extra_skills.items():
            skills[skill] = max(level, skills.get(skill, 0))
        return ContactNeeds(queue_id, needs.priority + waiting.priority_boost, skills, needs.rules)
    def route_outbound(self, call_id: str, queue_id: str, offer: Offer, *, wait: bool = True,
                       skills: dict[str, int] | None = None, priority: int | None = None) -> Reservation | None:
        """A campaign's call asks for an agent of ``queue_id`` (blending).

        It is routed as a contact like any other (queue priority, skills,
        longest idle), so one agent is never held by an inbound and an outbound
        call at once. Returns the reservation when an agent is free now; later
        offers (``wait``) go to ``offer``, not to the inbound application.
        Without ``wait`` nobody free means no contact is left behind."""
        now = self.clock()
        self._outbound[call_id] = offer
        reservation = self.router.contact_arrives(call_id, queue_id, now, skills=skills, priority=priority)
        if reservation is None:
            if not wait:
                self.router.abandon(call_id, now)
                self._outbound.pop(call_id, None)
            return None
        view = self.agents[reservation.agent_id]
        view.queue_id = reservation.queue_id
        self._set(view, "reserved", "outbound", call_id)
        return reservation

    def position(self, call_id: str) -> int:
        waiting = self.waiting.get(call_id)
        if waiting is None:
            return 0
        order = self.router.waiting_order(waiting.queue_id, self.clock())
        return order.index(call_id) + 1 if call_id in order else 0

    # -- callbacks promised while the queue is closed ------------------------------------------
    def schedule_callback(self, call_id: str, queue_id: str, number: str) -> PendingCallback:
        """The caller found ``queue_id`` closed and asked to be called back once it opens."""
        terms = self.config.queues[queue_id].closed_callback
        now = self.wall()
        callback = self.callbacks.schedule(call_id, queue_id, number, now, window=terms.window,
                                           attempts=terms.attempts, retry_seconds=terms.retry_after)
        self._publish(Event.of(CallbackScheduled(queue=queue_id, number=number, expires_at=callback.expires_at,
                                                 attempts=callback.attempts, retry_seconds=callback.retry_seconds),
                               call_id=call_id, queue=queue_id, occurred_at=now))
        return callback

    def replay_callback(self, event_type: str, occurred_at: datetime, call_id: str | None,
                        data: dict[str, Any]) -> None:
        """Rebuild pending callbacks from the stored events at start (oldest first)."""
        self.callbacks.replay(event_type, occurred_at, call_id, data)

    def callback_attempt_over(self, callback_id: str, connected: bool) -> None:
        """The attempt's call was connected, or ended without reaching the customer."""
        callback = self.callbacks.pending.get(callback_id)
        outcome = self.callbacks.attempt_over(callback_id, connected, self.wall())
        if callback is not None and outcome is not None:
            self._settle(callback, outcome)

    def _settle(self, callback: PendingCallback, outcome: Literal["connected", "exhausted", "expired"]) -> None:
        self.callbacks.settle(callback.id)
        self._publish(Event.of(CallbackFinished(outcome=outcome, attempts=callback.made), call_id=callback.id,
                               queue=callback.queue_id, occurred_at=self.wall()))

    def _due_callbacks(self) -> None:
        """Dial the callbacks whose queue is open and whose retry delay has passed."""
        if self.dial_callback is None:
            return
        now = self.wall()
        dial, settled = self.callbacks.due(now, lambda queue_id: queue_id in self.config.queues
                                           and self.is_open(queue_id, now))
        for callback, outcome in settled:
            self._settle(callback, outcome)
        for callback in dial:
            call_id = str(uuid.uuid4())
            attempt = self.callbacks.started(callback.id, call_id)
            self._publish(Event.of(CallbackAttempted(callback_id=callback.id, attempt=attempt), call_id=call_id,
                                   queue=callback.queue_id, occurred_at=now))
            self.dial_callback(callback, call_id)

    def keep_place_for_callback(self, call_id: str) -> None:
        """The caller accepted a callback: their place is kept, announcements stop."""
        waiting = self.waiting.get(call_id)
        if waiting is not None:
            waiting.callback = True

    def abandon(self, call_id: str) -> None:
        """The caller left before being connected (hung up while waiting or ringing)."""
        self.waiting.pop(call_id, None)
        self._caller_of.pop(call_id, None)
        self._outbound.pop(call_id, None)
        reservation = self._reservation_for(call_id)
        if self.router.contact_state(call_id) is None:
            return
        offer = self.router.abandon(call_id, self.clock())
        if reservation is not None:
            view = self.agents[reservation.agent_id]
            self._set(view, "ready", "call_abandoned")
        self._offer_all(offer)

    def _reservation_for(self, call_id: str) -> Reservation | None:
        for agent_id, view in self.agents.items():
            if view.call_id == call_id and view.state in ("reserved", "ringing"):
                return self.router.reservation_of(agent_id)
        return None

    def ringing(self, reservation: Reservation) -> None:
        self._set(self.agents[reservation.agent_id], "ringing", "", reservation.contact_id)

    def answered(self, reservation: Reservation) -> None:
        self.waiting.pop(reservation.contact_id, None)
        view = self.agents[reservation.agent_id]
        self._set(view, "on_call", "", reservation.contact_id)
        self._offer_all(self.router.confirm(reservation.id, self.clock()))

    def missed(self, reservation: Reservation) -> None:
        """Ring-no-answer: the agent goes not ready, the call returns to its original place."""
        view = self.agents[reservation.agent_id]
        offers = self.router.release(reservation.id, self.clock(), rona=True)
        self._set(view, "not_ready", "ring_no_answer")
        if self.rona_pause is not None:
            agent_id = view.id
            self._later(agent_id, self.rona_pause, lambda: self.ready(agent_id, "auto_after_rona"))
        self._offer_all(offers)

    def finished(self, agent_id: str, call_id: str, handle_seconds: float | None = None) -> None:
        """The connected call ended: wrap-up for the queue's time, then ready again."""
        view = self.agents.get(agent_id)
        if view is None or view.call_id != call_id:
            return
        caller = self._caller_of.pop(call_id, None)
        self._outbound.pop(call_id, None)
        if caller:
            self._last_agent[caller] = (agent_id, self.clock())
        try:
            offer = self.router.finish(agent_id, call_id, self.clock())
        except RoutingError:  # a call recovered after a restart: the router never routed it
            self._set(view, "not_ready", "recovered_call_ended")
            self.ready(agent_id, "recovered")
            return
        state, _ = self.router.agent_state(agent_id)
        if state is AgentState.WRAP_UP:
            wrap = self._wrap_up(agent_id)
            self._set(view, "wrapup", "after_call_work", call_id)
            self._later(agent_id, wrap, lambda: self.ready(agent_id, "wrapup_done"))
            if handle_seconds is not None:
                self._remember(handle_seconds + wrap)
        else:
            _, reason = self.router.agent_state(agent_id)
            lost = self.persistent(agent_id) and agent_id not in self.lines_up
            self._set(view, "ready" if state is AgentState.READY else "not_ready", reason if lost else "call_ended")
            if handle_seconds is not None:
                self._remember(handle_seconds)
        self._offer_all(offer)

    def _wrap_up(self, agent_id: str) -> float:
        """Wrap-up length of the queue the agent's last call came from."""
        queue = self.config.queues.get(self.agents[agent_id].queue_id or "")
        return float(queue.wrap_up) if queue else 0.0

    def _remember(self, seconds: float) -> None:
        self._handle_seconds.append(seconds)
        del self._handle_seconds[:-50]

    def estimated_wait(self, call_id: str) -> float | None:
        """Position * mean handle time / qualified agents logged in (None before any call ended)."""
        waiting = self.waiting.get(call_id)
        if waiting is None or not self._handle_seconds:
            return None
        staffed = sum(1 for a in self.config.qualified_agents(waiting.queue_id)
                      if a in self.agents and self.agents[a].state != "logged_out")
        mean = sum(self._handle_seconds) / len(self._handle_seconds)
        return self.position(call_id) * mean / max(staffed, 1)

    # -- time-driven rules ---------------------------------------------------------------------
    def tick(self) -> None:
        """Apply overflow rules and due announcements, dial due callbacks, then the
        router's housekeeping; call about once a second."""
        now = self.clock()
        for waiting in list(self.waiting.values()):
            state = self.router.contact_state(waiting.call_id)
            if state is None:
                self.waiting.pop(waiting.call_id, None)
                continue
            if state is not ContactState.WAITING or self._overflow(waiting, now) or self._max_wait(waiting, now):
                continue
            if waiting.callback:
                continue
            if waiting.next_announcement is not None and now >= waiting.next_announcement:
                queue = self.config.queues[waiting.queue_id]
                waiting.next_announcement = now + queue.announcements.repeat_every
                self.announce(waiting.call_id, self.position(waiting.call_id),
                              self.estimated_wait(waiting.call_id))
        self._due_callbacks()
        self.router.maintain()  # sweep the routing indexes here, between decisions

    def _max_wait(self, waiting: Waiting, now: float) -> bool:
        """Past the queue's maximum wait: offer a callback, or end the call with an apology."""
        queue = self.config.queues[waiting.queue_id]
        if queue.max_wait is None or waiting.expired or now - waiting.queue_entered < queue.max_wait:
            return False
        if queue.on_max_wait == "callback" and not waiting.callback_offered and not waiting.callback:
            waiting.callback_offered = True
            self.offer_callback(waiting.call_id)
            return True
        if waiting.callback:
            return False  # a callback keeps its place however long it takes
        waiting.expired = True
        if queue.on_max_wait == "voicemail":
            self.take_message(waiting.call_id, "max_wait")
        else:
            self.expire(waiting.call_id)
        return True

    def _overflow(self, waiting: Waiting, now: float) -> bool:
        queue = self.config.queues[waiting.queue_id]
        waited = now - waiting.queue_entered
        for rule in queue.overflow:
            due = rule.after is not None and waited >= rule.after
            if not due and rule.estimated_wait_over is not None:
                ewt = self.estimated_wait(waiting.call_id)
                due = ewt is not None and ewt > rule.estimated_wait_over
            if not due:
                continue
            if rule.action == "callback":
                if not waiting.callback_offered and not waiting.callback:
                    waiting.callback_offered = True
                    self.offer_callback(waiting.call_id)
                continue
            if rule.action == "voicemail":
                if waiting.callback:
                    continue  # a callback already keeps the caller's place
                waiting.expired = True
                self.take_message(waiting.call_id, "overflow")
                return True
            target = rule.queue
            assert target is not None  # validated: action 'queue' names one
            needs = self._needs(target, waiting)
            self._publish(Event.of(CallOverflowed(from_queue=waiting.queue_id, to_queue=target,
                                                  waited_seconds=round(waited, 3)),
                                   call_id=waiting.call_id, queue=target))
            waiting.queue_id, waiting.queue_entered = target, now
            self._offer_all(self.router.move_contact(waiting.call_id, target, now, priority=needs.priority,
                                                     skills=needs.required_skills))
            return True
        return False

    # -- offers --------------------------------------------------------------------------------
    def _offer_all(self, offers: Reservation | list[Reservation] | None) -> None:
        if offers is None:
            return
        for reservation in offers if isinstance(offers, list) else [offers]:
            view = self.agents[reservation.agent_id]
            view.queue_id = reservation.queue_id
            self._set(view, "reserved", "", reservation.contact_id)
            self._outbound.get(reservation.contact_id, self.offer)(reservation)
