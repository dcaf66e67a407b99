"""Skills-based routing: pure, indexed, and with time passed in.

The router only decides; the caller rings and bridges through the PBX and
reports back (confirm, release, finish). Every decision *reserves* the agent
in the same call, so an agent is never offered two contacts at once (the race
seen in FreeSWITCH mod_callcenter and OpenACD).

Indexing. A contact needs a set of (skill, minimum level) on one channel; we
call that its *signature*. Signatures come from queue definitions plus
customer rules, so there are few of them. For each signature a ``_Group``
holds the agents able to serve it (computed once from a per-skill index of
agents, then kept up to date as agents change) with

* one heap of available agents per routing strategy in use, and
* one heap of waiting contacts per priority-aging rate.

Heaps use lazy deletion: every agent and contact carries a version that is
bumped when its availability changes, so stale entries are dropped when they
surface (or when a heap grows to twice its live size). A decision therefore
costs O(log n) for a new contact and O(groups of the agent · log n) for a
freed agent, instead of a scan of every agent or every contact.

Ordering rules, shared by the indexed router and ``LinearScanRouter`` (the
executable specification the tests compare it with):

* contacts: highest effective priority first, where
  ``effective = priority + aging_rate · (now - enqueued_at)``; then earliest
  enqueue time; then arrival sequence. Within one queue the effective order is
  fixed between events, so a heap keyed by ``priority - rate · enqueued_at``
  stays valid as time passes; contacts of queues with different rates sit in
  different heaps and are compared at decision time. A contact released after
  ring-no-answer keeps its key, hence its original position.
* agents, per queue strategy (ties: longest idle, then agent id):
  ``longest_idle`` - earliest ``idle_since``; ``best_skill`` - highest sum of
  the agent's levels in the contact's required skills; ``least_occupancy`` -
  fewest busy seconds today. Busy seconds, not the busy/staffed ratio: the
  ratio of an idle agent drifts as the clock runs, which no event-driven index
  can follow, while the numerator ranks agents of one shift the same way.
* last-agent affinity: a contact whose previous agent (within the queue's
  affinity window) is available goes to that agent; an agent becoming free
  serves waiting contacts that have affinity to it before anyone else.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple

if TYPE_CHECKING:
    from ccengine.acd.definitions import QueueDefinition

# True when this is the mypyc-compiled extension module (see ccengine/acd/native.py)
COMPILED: Final = not __file__.endswith(".py")

StrategyName = Literal["best_skill", "longest_idle", "least_occupancy"]
Signature = tuple[tuple[str, int], ...]  # sorted (skill, minimum level)
# Heap entries hold ids, not objects: tuples of plain values are untracked by the
# cyclic garbage collector, whose passes over hundreds of thousands of tracked
# entries otherwise dominate the latency tail. Validating an entry costs one
# dictionary look-up.
AgentEntry = tuple[float, float, str, int]  # strategy key, idle since, agent id, version
ContactEntry = tuple[float, float, int, int, str]  # -static key, enqueued at, seq, version, contact id
Rank = tuple[float, float, int]


class RoutingError(Exception):
    """An operation that the current state does not allow (caller bug or race)."""


class AgentState(Enum):
    LOGGED_OUT = "logged_out"
    NOT_READY = "not_ready"
    READY = "ready"
    WRAP_UP = "wrap_up"


class ContactState(Enum):
    WAITING = "waiting"
    RESERVED = "reserved"
    CONNECTED = "connected"


# module-level aliases: a global load is cheaper than an attribute of the enum class on the hot path
# (Final: the compiled module keeps them in C variables instead of its globals dict)
_LOGGED_OUT: Final = AgentState.LOGGED_OUT
_NOT_READY: Final = AgentState.NOT_READY
_READY: Final = AgentState.READY
_WRAP_UP: Final = AgentState.WRAP_UP
_WAITING: Final = ContactState.WAITING
_RESERVED: Final = ContactState.RESERVED
_CONNECTED: Final = ContactState.CONNECTED
# a group's agent heaps sit in a list of three slots (None: no queue with that strategy uses the group)
_STRATEGIES: Final[tuple[StrategyName, ...]] = ("longest_idle", "best_skill", "least_occupancy")
_SLOT: Final = {name: slot for slot, name in enumerate(_STRATEGIES)}


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """What the router needs from a queue definition."""

    id: str
    required_skills: Mapping[str, int]
    priority: int = 0
    strategy: StrategyName = "longest_idle"
    aging_per_second: float = 0.0
    affinity_window: float = 0.0
    channel: str = "voice"
    wrap_up: float = 0.0

    @classmethod
    def from_definition(cls, queue: QueueDefinition) -> QueuePolicy:
        return cls(
            id=queue.id,
            required_skills=dict(queue.required_skills),
            priority=queue.priority,
            strategy=queue.strategy,
            aging_per_second=queue.priority_aging_per_minute / 60.0,
            affinity_window=float(queue.affinity_window),
            channel=queue.channel,
            wrap_up=float(queue.wrap_up),
        )


class Reservation(NamedTuple):
    """An agent held for one contact until confirmed (answered) or released.
    (A named tuple: created on every decision, so it must be cheap.)"""

    id: int
    contact_id: str
    agent_id: str
    queue_id: str
    at: float


class _Agent:
    __slots__ = ("active", "active_channel", "busy_seconds", "busy_since", "capacity", "channels",
                 "group_set", "groups", "groups_on", "id", "idle_since", "indexed", "reason", "reservation",
                 "skills", "state", "version")

    def __init__(self, agent_id: str, skills: Mapping[str, int], capacity: Mapping[str, int]):
        self.id = agent_id
        self.skills = dict(skills)
        self.capacity = dict(capacity)
        self.channels = tuple(ch for ch, cap in self.capacity.items() if cap > 0)
        self.state = _LOGGED_OUT
        self.reason = ""
        self.version = 0
        self.idle_since = 0.0
        self.busy_seconds = 0.0
        self.busy_since: float | None = None
        self.active: dict[str, str] = {}  # contact id -> queue id
        self.active_channel: str | None = None
        self.reservation: Reservation | None = None
        self.groups: list[_Group] = []
        self.groups_on: dict[str, list[_Group]] = {}  # the same groups by channel, for the hot loops
        self.group_set: set[_Group] = set()
        self.indexed: list[_Group] = []  # groups counting this agent as available (current version)

    def available(self, channel: str) -> bool:
        """May be offered one more contact on ``channel`` right now."""
        if self.state is not _READY or self.reservation is not None:
            return False
        cap = self.capacity.get(channel, 0)
        if not self.active:
            return cap > 0
        return self.active_channel == channel and len(self.active) < cap

    def qualified(self, channel: str, signature: Signature) -> bool:
        skills = self.skills
        return self.capacity.get(channel, 0) > 0 and all(
            skills.get(skill, 0) >= level for skill, level in signature)


class _Contact:
    __slots__ = ("affinity_window", "channel", "enqueued_at", "group", "id", "lane", "last_agent",
                 "last_agent_at", "priority", "queue_id", "rate", "seq", "signature", "slot", "state",
                 "static_key", "version")

    def __init__(self, contact_id: str, queue: QueuePolicy, signature: Signature, priority: int,
                 now: float, seq: int, last_agent: str | None, last_agent_at: float | None,
                 group: _Group | None = None):
        self.id = contact_id
        self.queue_id = queue.id
        self.channel = queue.channel
        self.slot = _SLOT[queue.strategy]
        self.rate = queue.aging_per_second
        self.affinity_window = queue.affinity_window
        self.signature = signature
        self.priority = priority
        self.enqueued_at = now
        self.seq = seq
        self.static_key = priority - self.rate * now
        self.last_agent = last_agent
        self.last_agent_at = last_agent_at
        self.state = _WAITING
        self.version = 0
        self.group = group
        self.lane: _Lane | None = None  # set when indexed

    def rank(self, now: float) -> Rank:
        """Smaller is served first (see module docstring)."""
        return (-(self.static_key + self.rate * now), self.enqueued_at, self.seq)

    def affine_to(self, agent_id: str, now: float) -> bool:
        return (self.last_agent == agent_id and self.last_agent_at is not None
                and self.affinity_window > 0 and now - self.last_agent_at <= self.affinity_window)


class _Lane:
    """Waiting contacts of one group that age at one rate, as a heap."""

    __slots__ = ("count", "group", "heap", "rate")

    def __init__(self, group: _Group, rate: float):
        self.group = group
        self.rate = rate
        self.heap: list[ContactEntry] = []
        self.count = 0  # live entries


class _Group:
    __slots__ = ("agent_heaps", "available", "channel", "lanes", "lanes_by_rate", "members", "scores",
                 "signature", "total")

    def __init__(self, channel: str, signature: Signature):
        self.channel = channel
        self.signature = signature
        self.members: set[str] = set()
        self.scores: dict[str, float] = {}  # best_skill key: minus the sum of levels
        self.agent_heaps: list[list[AgentEntry] | None] = [None, None, None]  # by strategy slot
        self.lanes: list[_Lane] = []
        self.lanes_by_rate: dict[float, _Lane] = {}
        self.total = 0  # live contacts, all rates
        self.available = 0  # members available on this channel: live entries per agent heap


def _agent_key(agent: _Agent, signature: Signature, strategy: str) -> float:
    if strategy == "best_skill":
        return -float(sum(agent.skills.get(skill, 0) for skill, _ in signature))
    if strategy == "least_occupancy":
        return agent.busy_seconds
    return 0.0


_tuple_new: Final[Any] = tuple.__new__


def _signature(skills: Mapping[str, int]) -> Signature:
    items = tuple(skills.items())
    return items if len(items) < 2 else tuple(sorted(items))


class Router:
    """Indexed skills-based router; see the module docstring for the rules."""

    def __init__(self) -> None:
        self._queues: dict[str, QueuePolicy] = {}
        self._agents: dict[str, _Agent] = {}
        self._contacts: dict[str, _Contact] = {}
        self._reservations: dict[int, Reservation] = {}
        self._by_skill: dict[str, dict[int, set[str]]] = {}  # skill -> level -> agent ids
        self._groups: dict[tuple[str, Signature], _Group] = {}
        self._groups_by_skill: dict[str, list[_Group]] = {}
        self._group_memo: dict[tuple[Any, ...], _Group] = {}  # (channel, *skill items as given) -> group
        # housekeeping deferred out of decisions (see ``maintain``)
        self._bloated_agent_heaps: set[tuple[_Group, int]] = set()  # (group, strategy slot)
        self._bloated_lanes: set[_Lane] = set()
        self._garbage: list[list[Any]] = []
        self._skillless_groups: list[_Group] = []
        self._affine: dict[str, set[str]] = {}  # agent id -> waiting contacts preferring it
        self._waiting_by_queue: dict[str, set[str]] = {}
        self._seq = itertools.count()
        self._reservation_ids = itertools.count(1)

    # ------------------------------------------------------------ queues

    def define_queue(self, policy: QueuePolicy) -> None:
        """Add or replace a queue; contacts already waiting keep their terms."""
        self._queues[policy.id] = policy
        self._waiting_by_queue.setdefault(policy.id, set())
        self._group(policy.channel, _signature(policy.required_skills))

    # ------------------------------------------------------------ agents

    def add_agent(self, agent_id: str, skills: Mapping[str, int],
                  capacity: Mapping[str, int] | None = None) -> None:
        """Register a (logged-out) agent with skill levels and per-channel limits."""
        if agent_id in self._agents:
            raise RoutingError(f"agent {agent_id} already exists")
        agent = _Agent(agent_id, skills, capacity if capacity is not None else {"voice": 1})
        self._agents[agent_id] = agent
        self._attach(agent)

    def update_agent(self, agent_id: str, skills: Mapping[str, int],
                     capacity: Mapping[str, int] | None, now: float) -> Reservation | None:
        """Change skills/limits (hot reload); memberships are recomputed."""
        agent = self._agent(agent_id)
        self._detach(agent)
        agent.skills = dict(skills)
        if capacity is not None:
            agent.capacity = dict(capacity)
            agent.channels = tuple(ch for ch, cap in agent.capacity.items() if cap > 0)
        self._attach(agent)
        return self._agent_changed(agent, now)

    def remove_agent(self, agent_id: str) -> None:
        agent = self._agent(agent_id)
        if agent.state is not _LOGGED_OUT:
            raise RoutingError(f"agent {agent_id} must be logged out first")
        self._detach(agent)
        del self._agents[agent_id]

    def login(self, agent_id: str, now: float) -> None:
        agent = self._agent(agent_id)
        if agent.state is _LOGGED_OUT:
            agent.state = _NOT_READY
            agent.reason = "login"

    def logout(self, agent_id: str, now: float) -> None:
        agent = self._agent(agent_id)
        if agent.active or agent.reservation is not None:
            raise RoutingError(f"agent {agent_id} is busy or reserved")
        self._close_busy(agent, now)
        agent.state = _LOGGED_OUT
        self._agent_changed(agent, now)

    def set_ready(self, agent_id: str, now: float) -> Reservation | None:
        """Agent ready (or wrap-up over): offer the best waiting contact, if any."""
        agent = self._agents.get(agent_id) or self._agent(agent_id)
        if agent.state is _LOGGED_OUT:
            raise RoutingError(f"agent {agent_id} is logged out")
        if agent.state is _READY:
            return None
        if agent.state is _WRAP_UP:
            self._close_busy(agent, now)
        agent.state = _READY
        agent.reason = ""
        if not agent.active:
            agent.idle_since = now
        return self._agent_changed(agent, now)

    def set_not_ready(self, agent_id: str, now: float, reason: str = "") -> None:
        """Stop offers; a call in progress or a pending reservation continues."""
        agent = self._agent(agent_id)
        if agent.state is _LOGGED_OUT:
            raise RoutingError(f"agent {agent_id} is logged out")
        if agent.state is _WRAP_UP:
            self._close_busy(agent, now)
        agent.state = _NOT_READY
        agent.reason = reason
        self._agent_changed(agent, now)

    def new_day(self, now: float) -> None:
        """Reset today's busy time used by least_occupancy (at midnight)."""
        for agent in self._agents.values():
            agent.busy_seconds = 0.0
            if agent.busy_since is not None:
                agent.busy_since = now
            self._agent_changed(agent, now)  # re-key; nothing waits for an idle agent

    # ---------------------------------------------------------- contacts

    def contact_arrives(self, contact_id: str, queue_id: str, now: float, *,
                        priority: int | None = None, skills: Mapping[str, int] | None = None,
                        last_agent: str | None = None,
                        last_agent_at: float | None = None) -> Reservation | None:
        """Route a new contact: reserve the best available agent or enqueue it.

        ``priority`` and ``skills`` default to the queue's; pass the result of
        the customer rules (``QueueConfig.needs``) to override them."""
        contacts = self._contacts
        if contact_id in contacts:
            raise RoutingError(f"contact {contact_id} already exists")
        queue = self._queues.get(queue_id) or self._queue(queue_id)
        channel = queue.channel
        if skills is None:
            skills = queue.required_skills
        group = self._group_memo.get((channel, *skills.items())) or self._group_of(channel, skills)
        contact = contacts[contact_id] = _Contact(
            contact_id, queue, group.signature, queue.priority if priority is None else priority, now,
            next(self._seq), last_agent, last_agent_at, group)
        agent = self._best_agent_for(contact, now)
        if agent is not None:
            return self._reserve(contact_id, contact, agent, now)
        self._enqueue(contact_id, contact)
        return None

    def directed_refusal(self, agent_id: str, queue_id: str, skills: Mapping[str, int] | None = None) -> str | None:
        """Why ``agent_id`` cannot be offered a new contact of ``queue_id`` now (None: they can)."""
        agent = self._agents.get(agent_id)
        if agent is None:
            return f"unknown agent {agent_id}"
        queue = self._queue(queue_id)
        if not agent.available(queue.channel):
            state = "busy" if agent.state is AgentState.READY else agent.state.value
            return f"agent {agent_id} is not ready ({state})"
        if not agent.qualified(queue.channel, _signature(skills if skills is not None else queue.required_skills)):
            return f"agent {agent_id} lacks the skills the call needs in queue {queue_id}"
        return None

    def contact_for_agent(self, contact_id: str, queue_id: str, agent_id: str, now: float, *,
                          priority: int | None = None, skills: Mapping[str, int] | None = None) -> Reservation:
        """Directed routing of a new contact (a transfer to a named agent): reserve that agent, or
        raise ``RoutingError`` and keep nothing. Should the agent not answer, the contact waits in
        ``queue_id`` like any other (``release``)."""
        if contact_id in self._contacts:
            raise RoutingError(f"contact {contact_id} already exists")
        refusal = self.directed_refusal(agent_id, queue_id, skills)
        if refusal is not None:
            raise RoutingError(refusal)
        queue = self._queue(queue_id)
        group = self._group_of(queue.channel, skills if skills is not None else queue.required_skills)
        contact = _Contact(contact_id, queue, group.signature, queue.priority if priority is None else priority,
                           now, next(self._seq), None, None)
        contact.group = group
        self._contacts[contact_id] = contact
        return self._reserve(contact_id, contact, self._agents[agent_id], now)

    def move_contact(self, contact_id: str, queue_id: str, now: float, *,
                     priority: int | None = None,
                     skills: Mapping[str, int] | None = None) -> Reservation | None:
        """Overflow a waiting contact to another queue; it keeps its arrival
        time (so aging continues) but takes the new queue's terms."""
        contact = self._contact(contact_id)
        if contact.state is not _WAITING:
            raise RoutingError(f"contact {contact_id} is not waiting")
        self._unqueue(contact_id, contact)
        queue = self._queue(queue_id)
        signature = _signature(skills if skills is not None else queue.required_skills)
        moved = _Contact(contact_id, queue, signature, queue.priority if priority is None else priority,
                         contact.enqueued_at, contact.seq, contact.last_agent, contact.last_agent_at)
        moved.version = contact.version + 1
        self._contacts[contact_id] = moved
        return self._contact_waiting(contact_id, moved, now)

    def abandon(self, contact_id: str, now: float) -> Reservation | None:
        """The caller hung up (or took the callback offer) before an agent answered."""
        contact = self._contact(contact_id)
        if contact.state is _CONNECTED:
            raise RoutingError(f"contact {contact_id} is connected; use finish()")
        offer = None
        if contact.state is _RESERVED:
            reservation = next(r for r in self._reservations.values() if r.contact_id == contact_id)
            del self._reservations[reservation.id]
            agent = self._agents[reservation.agent_id]
            agent.reservation = None
            offer = self._agent_changed(agent, now)
        else:
            self._unqueue(contact_id, contact)
        del self._contacts[contact_id]
        return offer

    # ------------------------------------------------------ reservations

    def reserve(self, contact_id: str, agent_id: str, now: float) -> Reservation:
        """Directed routing (e.g. supervisor pick): reserve a specific pair."""
        contact = self._contact(contact_id)
        agent = self._agent(agent_id)
        if contact.state is not _WAITING:
            raise RoutingError(f"contact {contact_id} is not waiting")
        if not agent.available(contact.channel) or not agent.qualified(contact.channel, contact.signature):
            raise RoutingError(f"agent {agent_id} cannot take contact {contact_id} now")
        self._unqueue(contact_id, contact)
        return self._reserve(contact_id, contact, agent, now)

    def confirm(self, reservation_id: int, now: float) -> Reservation | None:
        """The agent answered: the contact is connected and leaves the queue.
        An agent with spare capacity (e.g. chat) may get its next offer."""
        reservation = self._reservations.pop(reservation_id, None) or self._reservation(reservation_id)
        agent = self._agents[reservation.agent_id]
        contact = self._contacts[reservation.contact_id]
        contact.state = _CONNECTED
        agent.reservation = None
        if not agent.active:
            agent.active_channel = contact.channel
            if agent.busy_since is None:
                agent.busy_since = now
        agent.active[reservation.contact_id] = contact.queue_id
        return self._agent_changed(agent, now)

    def release(self, reservation_id: int, now: float, *, rona: bool = True) -> list[Reservation]:
        """Undo a reservation. The contact returns to its original position.
        With ``rona`` (ring, no answer) the agent is set not ready; otherwise it
        stays available. Returns the offers made as a consequence."""
        reservation = self._reservation(reservation_id)
        del self._reservations[reservation_id]
        agent = self._agents[reservation.agent_id]
        contact = self._contacts[reservation.contact_id]
        agent.reservation = None
        contact_id = reservation.contact_id
        if rona:
            agent.state = _NOT_READY
            agent.reason = "RONA"
            self._agent_changed(agent, now)
            offer = self._contact_waiting(contact_id, contact, now)
            return [] if offer is None else [offer]
        # back in line first, so the agent chooses among all waiting contacts
        self._enqueue(contact_id, contact)
        offers = [o for o in (self._agent_changed(agent, now),) if o is not None]
        if contact.state is _WAITING:
            other = self._best_agent_for(contact, now)
            if other is not None:
                self._unqueue(contact_id, contact)
                offers.append(self._reserve(contact_id, contact, other, now))
        return offers

    def finish(self, agent_id: str, contact_id: str, now: float) -> Reservation | None:
        """The contact ended. With the queue's wrap-up > 0 the agent enters
        wrap-up (call ``set_ready`` when it ends); otherwise it may get an offer."""
        agent = self._agents.get(agent_id) or self._agent(agent_id)
        queue_id = agent.active.pop(contact_id, None)
        if queue_id is None:
            raise RoutingError(f"agent {agent_id} is not handling contact {contact_id}")
        del self._contacts[contact_id]
        if not agent.active:
            agent.active_channel = None
            queue = self._queues.get(queue_id)
            if queue is not None and queue.wrap_up > 0 and agent.state is _READY:
                agent.state = _WRAP_UP
            else:
                busy_since = agent.busy_since
                if busy_since is not None:
                    agent.busy_seconds += max(0.0, now - busy_since)
                    agent.busy_since = None
                agent.idle_since = now
        return self._agent_changed(agent, now)

    # ------------------------------------------------------------ queries

    def agent_state(self, agent_id: str) -> tuple[AgentState, str]:
        agent = self._agent(agent_id)
        return agent.state, agent.reason

    def is_available(self, agent_id: str, channel: str = "voice") -> bool:
        return self._agent(agent_id).available(channel)

    def reservation_of(self, agent_id: str) -> Reservation | None:
        return self._agent(agent_id).reservation

    def contact_state(self, contact_id: str) -> ContactState | None:
        contact = self._contacts.get(contact_id)
        return None if contact is None else contact.state

    def waiting_count(self, queue_id: str) -> int:
        return len(self._waiting_by_queue.get(queue_id, ()))

    def waiting_order(self, queue_id: str, now: float) -> list[str]:
        """Waiting contacts of a queue in service order (for announcements;
        O(n log n), not used by routing decisions)."""
        ids = self._waiting_by_queue.get(queue_id, set())
        return sorted(ids, key=lambda cid: self._contacts[cid].rank(now))

    def busy_seconds(self, agent_id: str) -> float:
        return self._agent(agent_id).busy_seconds

    # ------------------------------------------------------ housekeeping

    def maintain(self) -> int:
        """Drop stale heap entries; returns how many were freed.

        Lazy deletion leaves stale entries behind. Sweeping them costs time in
        proportion to a heap's size, so decisions only *note* which heaps
        need it and the owner calls this from idle time (the engine's 1 s
        ticker). A heap that outgrows a hard bound (eight times its live
        entries) is still swept inline, so memory stays bounded even if
        nobody calls this."""
        freed = sum(len(old) for old in self._garbage)
        self._garbage.clear()
        for group, slot in self._bloated_agent_heaps:
            heap = group.agent_heaps[slot]
            if heap is not None:
                freed += self._compact_agents(group, slot, heap)
        self._bloated_agent_heaps.clear()
        for lane in self._bloated_lanes:
            freed += self._compact_lane(lane)
        self._bloated_lanes.clear()
        return freed

    # ---------------------------------------------------------- internals

    def _agent(self, agent_id: str) -> _Agent:
        try:
            return self._agents[agent_id]
        except KeyError:
            raise RoutingError(f"unknown agent {agent_id}") from None

    def _contact(self, contact_id: str) -> _Contact:
        try:
            return self._contacts[contact_id]
        except KeyError:
            raise RoutingError(f"unknown contact {contact_id}") from None

    def _queue(self, queue_id: str) -> QueuePolicy:
        try:
            return self._queues[queue_id]
        except KeyError:
            raise RoutingError(f"unknown queue {queue_id}") from None

    def _reservation(self, reservation_id: int) -> Reservation:
        try:
            return self._reservations[reservation_id]
        except KeyError:
            raise RoutingError(f"no open reservation {reservation_id}") from None

    def _close_busy(self, agent: _Agent, now: float) -> None:
        if agent.busy_since is not None:
            agent.busy_seconds += max(0.0, now - agent.busy_since)
            agent.busy_since = None

    def _group_of(self, channel: str, skills: Mapping[str, int]) -> _Group:
        """The group for required ``skills``, memoised on the mapping's items as
        given: rules build the same few mappings over and over, and this skips
        sorting them into a signature on every contact."""
        key = (channel, *skills.items())
        group = self._group_memo.get(key)
        if group is None:
            group = self._group_memo[key] = self._group(channel, _signature(skills))
        return group

    def _group(self, channel: str, signature: Signature) -> _Group:
        key = (channel, signature)
        group = self._groups.get(key)
        if group is not None:
            return group
        group = _Group(channel, signature)
        self._groups[key] = group
        if signature:
            # set algebra on the per-skill, per-level index (C speed), no agent scan
            qualified: list[set[str]] = []
            for skill, level in signature:
                levels = self._by_skill.get(skill, {})
                qualified.append(set().union(*(ids for lvl, ids in levels.items() if lvl >= level)))
                self._groups_by_skill.setdefault(skill, []).append(group)
            qualified.sort(key=len)
            pool: Iterable[str] = qualified[0].intersection(*qualified[1:])
        else:
            pool = self._agents
            self._skillless_groups.append(group)
        for agent_id in pool:
            agent = self._agents[agent_id]
            if agent.qualified(channel, signature):
                self._join(agent, group)
                if agent.available(channel):  # available agents are indexed: count it here too
                    group.available += 1
                    agent.indexed.append(group)
        return group

    @staticmethod
    def _join(agent: _Agent, group: _Group) -> None:
        group.members.add(agent.id)
        group.scores[agent.id] = _agent_key(agent, group.signature, "best_skill")
        agent.groups.append(group)
        agent.groups_on.setdefault(group.channel, []).append(group)
        agent.group_set.add(group)

    def _attach(self, agent: _Agent) -> None:
        for skill, level in agent.skills.items():
            self._by_skill.setdefault(skill, {}).setdefault(level, set()).add(agent.id)
        candidates: set[_Group] = set(self._skillless_groups)
        for skill in agent.skills:
            candidates.update(self._groups_by_skill.get(skill, ()))
        for group in sorted(candidates, key=lambda g: (g.channel, g.signature)):
            if agent.qualified(group.channel, group.signature):
                self._join(agent, group)

    def _detach(self, agent: _Agent) -> None:
        self._unindex_agent(agent)
        for skill, level in agent.skills.items():
            self._by_skill[skill][level].discard(agent.id)
        for group in agent.groups:
            group.members.discard(agent.id)
            group.scores.pop(agent.id, None)
        agent.groups = []
        agent.groups_on = {}
        agent.group_set = set()
        agent.version += 1

    def _agent_changed(self, agent: _Agent, now: float) -> Reservation | None:
        """Re-index after any change; if now available, serve a waiting contact."""
        agent.version += 1
        if agent.indexed:
            self._unindex_agent(agent)
        # the channels on which the agent may be offered a contact now (inlined: runs on every change)
        if agent.state is not _READY or agent.reservation is not None:
            return None
        active = agent.active
        if active:
            channel = agent.active_channel or ""
            if len(active) >= agent.capacity.get(channel, 0):
                return None  # fully occupied
            channels: tuple[str, ...] = (channel,)
        else:
            channels = agent.channels
            if not channels:
                return None
        found = self._best_contact_for(agent, now, channels)
        if found is None:
            self._index_agent(agent, channels)
            return None
        contact_id, contact = found
        self._unqueue(contact_id, contact)
        return self._reserve(contact_id, contact, agent, now)

    def _contact_waiting(self, contact_id: str, contact: _Contact, now: float) -> Reservation | None:
        """Serve a (re)queued contact at once if an agent is free, else index it."""
        agent = self._best_agent_for(contact, now)
        if agent is not None:
            return self._reserve(contact_id, contact, agent, now)
        self._enqueue(contact_id, contact)
        return None

    def _enqueue(self, contact_id: str, contact: _Contact) -> None:
        contact.state = _WAITING
        contact.version += 1
        self._waiting_by_queue[contact.queue_id].add(contact_id)  # created with the queue
        if contact.last_agent is not None and contact.affinity_window > 0:
            self._affine.setdefault(contact.last_agent, set()).add(contact_id)
        self._index_contact(contact_id, contact)

    def _unqueue(self, contact_id: str, contact: _Contact) -> None:
        contact.version += 1
        self._waiting_by_queue[contact.queue_id].discard(contact_id)
        if contact.last_agent is not None:
            self._forget_affinity(contact.last_agent, contact_id)
        lane = contact.lane
        if lane is not None:
            lane.count -= 1
            if not lane.count and lane.heap:
                self._garbage.append(lane.heap)  # only stale entries remain; maintain() frees them
                lane.heap = []
            lane.group.total -= 1

    def _forget_affinity(self, agent_id: str, contact_id: str) -> None:
        affine = self._affine.get(agent_id)
        if affine is not None:
            affine.discard(contact_id)
            if not affine:
                del self._affine[agent_id]  # keeps "agent id in self._affine" a cheap test

    def _reserve(self, contact_id: str, contact: _Contact, agent: _Agent, now: float) -> Reservation:
        # tuple.__new__ skips the generated NamedTuple __new__ (3x faster)
        reservation: Reservation = _tuple_new(
            Reservation, (next(self._reservation_ids), contact_id, agent.id, contact.queue_id, now))
        self._reservations[reservation.id] = reservation
        contact.state = _RESERVED
        contact.version += 1
        agent.reservation = reservation
        agent.version += 1
        if agent.indexed:
            self._unindex_agent(agent)
        return reservation

    def _affine_contact(self, agent: _Agent, now: float) -> tuple[str, _Contact] | None:
        waiting = self._affine.get(agent.id)
        if not waiting:
            return None
        best: tuple[str, _Contact] | None = None
        best_rank: Rank | None = None
        for contact_id in list(waiting):
            contact = self._contacts[contact_id]
            if not contact.affine_to(agent.id, now):
                self._forget_affinity(agent.id, contact_id)  # window passed; it never reopens
                continue
            if not agent.available(contact.channel) or not agent.qualified(contact.channel,
                                                                           contact.signature):
                continue
            rank = contact.rank(now)
            if best_rank is None or rank < best_rank:
                best, best_rank = (contact_id, contact), rank
        return best

    def _affine_agent(self, contact: _Contact, now: float) -> _Agent | None:
        if contact.last_agent is None or not contact.affine_to(contact.last_agent, now):
            return None
        agent = self._agents.get(contact.last_agent)
        if agent is None or not agent.available(contact.channel):
            return None
        return agent if agent.qualified(contact.channel, contact.signature) else None

    # ---- the parts that differ between the indexed and the linear router

    def _unindex_agent(self, agent: _Agent) -> None:
        """The agent's entries just went stale: uncount it; a group left with no
        available agent drops its heaps at once, so a saturated group costs a
        new contact one counter test instead of a run of stale pops."""
        for group in agent.indexed:
            group.available -= 1
            if not group.available:
                heaps = group.agent_heaps
                for slot in (0, 1, 2):
                    heap = heaps[slot]
                    if heap:
                        self._garbage.append(heap)  # freed by maintain(), not inside this decision
                        heaps[slot] = []
        agent.indexed.clear()  # in place: no allocation per state change

    def _index_agent(self, agent: _Agent, channels: tuple[str, ...]) -> None:
        """Make the agent, available on ``channels``, findable by new contacts."""
        idle, agent_id, version = agent.idle_since, agent.id, agent.version
        push = heapq.heappush
        indexed = agent.indexed
        groups_on = agent.groups_on
        for channel in channels:
            for group in groups_on.get(channel, ()):
                live = group.available = group.available + 1
                indexed.append(group)
                # unrolled over the three strategy slots: most groups serve one strategy
                idle_heap, skill_heap, occupancy_heap = group.agent_heaps
                if idle_heap is not None:
                    push(idle_heap, (0.0, idle, agent_id, version))
                    if len(idle_heap) > 2 * live + 16:
                        self._bloated(group, 0, idle_heap)
                if skill_heap is not None:
                    push(skill_heap, (group.scores[agent_id], idle, agent_id, version))
                    if len(skill_heap) > 2 * live + 16:
                        self._bloated(group, 1, skill_heap)
                if occupancy_heap is not None:
                    push(occupancy_heap, (agent.busy_seconds, idle, agent_id, version))
                    if len(occupancy_heap) > 2 * live + 16:
                        self._bloated(group, 2, occupancy_heap)

    def _bloated(self, group: _Group, slot: int, heap: list[AgentEntry]) -> None:
        """Mostly stale entries: note the heap for ``maintain``, or sweep it now past the hard bound."""
        if len(heap) > 8 * group.available + 1024:
            self._compact_agents(group, slot, heap)
        else:
            self._bloated_agent_heaps.add((group, slot))

    def _compact_agents(self, group: _Group, slot: int, heap: list[AgentEntry]) -> int:
        agents = self._agents
        live = [e for e in heap if (a := agents.get(e[2])) is not None and a.version == e[3]]
        heapq.heapify(live)
        group.agent_heaps[slot] = live
        return len(heap) - len(live)

    def _compact_lane(self, lane: _Lane) -> int:
        contacts = self._contacts
        heap = lane.heap
        live = [e for e in heap if (c := contacts.get(e[4])) is not None and c.version == e[3]]
        heapq.heapify(live)
        lane.heap = live
        return len(heap) - len(live)

    def _index_contact(self, contact_id: str, contact: _Contact) -> None:
        group = contact.group
        if group is None:
            group = contact.group = self._group(contact.channel, contact.signature)
        lane = contact.lane
        if lane is None:
            lane = contact.lane = group.lanes_by_rate.get(contact.rate)
            if lane is None:
                lane = contact.lane = group.lanes_by_rate[contact.rate] = _Lane(group, contact.rate)
                group.lanes.append(lane)
        heap = lane.heap
        heapq.heappush(heap, (-contact.static_key, contact.enqueued_at, contact.seq, contact.version,
                              contact_id))
        lane.count += 1
        group.total += 1
        size, live = len(heap), lane.count
        if size > 2 * live + 16:
            if size > 8 * live + 1024:
                self._compact_lane(lane)
            else:
                self._bloated_lanes.add(lane)

    def _agent_heap(self, group: _Group, slot: int) -> list[AgentEntry]:
        heap = group.agent_heaps[slot]
        if heap is None:  # first queue with this strategy on this signature
            agents = self._agents
            strategy = _STRATEGIES[slot]
            heap = [(_agent_key(a, group.signature, strategy), a.idle_since, a.id, a.version)
                    for a in (agents[i] for i in group.members) if a.available(group.channel)]
            heapq.heapify(heap)
            group.agent_heaps[slot] = heap
        return heap

    def _best_agent_for(self, contact: _Contact, now: float) -> _Agent | None:
        if contact.last_agent is not None:
            affine = self._affine_agent(contact, now)
            if affine is not None:
                return affine
        group = contact.group
        if group is None:
            group = contact.group = self._group(contact.channel, contact.signature)
        if not group.available:
            return None
        heap = group.agent_heaps[contact.slot] or self._agent_heap(group, contact.slot)
        pop = heapq.heappop
        agents = self._agents
        while heap:
            entry = heap[0]
            agent = agents.get(entry[2])
            if agent is not None and agent.version == entry[3]:
                return agent
            pop(heap)
        return None

    def _best_contact_for(self, agent: _Agent, now: float,
                          channels: tuple[str, ...]) -> tuple[str, _Contact] | None:
        if agent.id in self._affine:
            affine = self._affine_contact(agent, now)
            if affine is not None:
                return affine
        best: ContactEntry | None = None
        best_score = 0.0
        pop = heapq.heappop
        contacts = self._contacts
        groups_on = agent.groups_on
        groups = (groups_on.get(channels[0], ()) if len(channels) == 1
                  else [g for channel in channels for g in groups_on.get(channel, ())])
        for group in groups:
            if not group.total:
                continue
            for lane in group.lanes:
                if not lane.count:
                    continue
                heap = lane.heap
                entry = heap[0]
                contact = contacts.get(entry[4])
                while contact is None or contact.version != entry[3]:  # count > 0: a live entry exists
                    pop(heap)
                    entry = heap[0]
                    contact = contacts.get(entry[4])
                # same order as _Contact.rank (a tie goes to the earlier arrival), without building the tuple
                score = entry[0] - lane.rate * now
                if best is None or score < best_score or (score == best_score and entry[1:3] < best[1:3]):
                    best, best_score = entry, score
        return None if best is None else (best[4], contacts[best[4]])


# every attribute Router.__init__ sets: what a LinearScanRouter takes over (a test checks the list)
_ROUTER_STATE: Final = ("_queues", "_agents", "_contacts", "_reservations", "_by_skill", "_groups",
                        "_groups_by_skill", "_group_memo", "_bloated_agent_heaps", "_bloated_lanes", "_garbage",
                        "_skillless_groups", "_affine", "_waiting_by_queue", "_seq", "_reservation_ids")


class LinearScanRouter(Router):
    """The same rules decided by scanning every agent / every waiting contact.

    It is the executable specification the property tests compare the indexed
    router with, and the baseline of ``bench/routing.py``."""

    @classmethod
    def taking_over(cls, router: Router) -> LinearScanRouter:
        """Continue from ``router``'s state, taken over rather than copied (do not use
        ``router`` afterwards): the benchmark's baseline starts from a state that only
        the indexed router builds in reasonable time."""
        linear = cls()
        for name in _ROUTER_STATE:
            setattr(linear, name, getattr(router, name))
        return linear

    def _index_agent(self, agent: _Agent, channels: tuple[str, ...]) -> None:
        pass

    def _index_contact(self, contact_id: str, contact: _Contact) -> None:
        pass

    def _unqueue(self, contact_id: str, contact: _Contact) -> None:
        contact.version += 1
        self._waiting_by_queue[contact.queue_id].discard(contact_id)
        if contact.last_agent is not None:
            self._forget_affinity(contact.last_agent, contact_id)

    def _best_agent_for(self, contact: _Contact, now: float) -> _Agent | None:
        affine = self._affine_agent(contact, now)
        if affine is not None:
            return affine
        best: _Agent | None = None
        best_key: tuple[float, float, str] | None = None
        for agent in self._agents.values():
            if agent.available(contact.channel) and agent.qualified(contact.channel, contact.signature):
                key = (_agent_key(agent, contact.signature, _STRATEGIES[contact.slot]), agent.idle_since, agent.id)
                if best_key is None or key < best_key:
                    best, best_key = agent, key
        return best

    def _best_contact_for(self, agent: _Agent, now: float,
                          channels: tuple[str, ...]) -> tuple[str, _Contact] | None:
        affine = self._affine_contact(agent, now)
        if affine is not None:
            return affine
        best: tuple[str, _Contact] | None = None
        best_rank: Rank | None = None
        for ids in self._waiting_by_queue.values():
            for contact_id in ids:
                contact = self._contacts[contact_id]
                if agent.available(contact.channel) and agent.qualified(contact.channel, contact.signature):
                    rank = contact.rank(now)
                    if best_rank is None or rank < best_rank:
                        best, best_rank = (contact_id, contact), rank
        return best
