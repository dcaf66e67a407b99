"""Queue, agent and skill statistics, computed from the append-only queue log.

Definitions: *offered* = distinct calls that entered the queue (an overflowed
call counts in the queue that answered or lost it); *service level* = calls
answered within the queue's threshold ÷ (answered + abandoned); *ASA* = mean
wait of answered calls; *abandon rate* = abandoned ÷ (answered + abandoned).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ..store.schema import AgentRow, CallRow, QueueLogRow
from .definitions import QueueConfig


@dataclass(frozen=True)
class QueueStats:
    queue: str
    offered: int
    answered: int
    abandoned: int
    overflowed_out: int
    service_level: float | None  # 0..1
    asa_seconds: float | None
    abandon_rate: float | None


@dataclass(frozen=True)
class AgentStats:
    agent: str
    answered: int
    talk_seconds: float
    ring_no_answer: int


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _log(engine: Engine, since: datetime) -> list[QueueLogRow]:
    with Session(engine) as session:
        rows = list(session.scalars(select(QueueLogRow).where(QueueLogRow.at >= since.astimezone(UTC))
                                    .order_by(QueueLogRow.id)))
        session.expunge_all()
        return rows


def queue_stats(engine: Engine, config: QueueConfig, since: datetime) -> list[QueueStats]:
    rows = _log(engine, since)
    entered: dict[str, set[str]] = defaultdict(set)
    waits: dict[str, list[float]] = defaultdict(list)
    abandoned: dict[str, int] = defaultdict(int)
    overflowed: dict[str, int] = defaultdict(int)
    for row in rows:
        if row.queue is None:
            continue
        if row.verb == "ENTERQUEUE" and row.call_id:
            entered[row.queue].add(row.call_id)
        elif row.verb == "CONNECT" and row.wait_seconds is not None:
            waits[row.queue].append(row.wait_seconds)
        elif row.verb == "ABANDON":
            abandoned[row.queue] += 1
        elif row.verb == "OVERFLOW":
            overflowed[row.queue] += 1
    out = []
    for queue_id, queue in config.queues.items():
        answered = len(waits[queue_id])
        handled = answered + abandoned[queue_id]
        threshold = queue.service_level.within if queue.service_level else 20.0
        within = sum(1 for w in waits[queue_id] if w <= threshold)
        out.append(QueueStats(
            queue=queue_id,
            offered=len(entered[queue_id]) - overflowed[queue_id] + _overflowed_in(rows, queue_id),
            answered=answered, abandoned=abandoned[queue_id], overflowed_out=overflowed[queue_id],
            service_level=within / handled if handled else None,
            asa_seconds=_mean(waits[queue_id]),
            abandon_rate=abandoned[queue_id] / handled if handled else None,
        ))
    return out


def _overflowed_in(rows: list[QueueLogRow], queue_id: str) -> int:
    return sum(1 for r in rows if r.verb == "OVERFLOW" and r.detail == f"to {queue_id}")


def agent_stats(engine: Engine, since: datetime) -> list[AgentStats]:
    answered: dict[str, int] = defaultdict(int)
    talk: dict[str, float] = defaultdict(float)
    rona: dict[str, int] = defaultdict(int)
    for row in _log(engine, since):
        if row.agent_id is None:
            continue
        if row.verb == "CONNECT":
            answered[row.agent_id] += 1
        elif row.verb in ("COMPLETEAGENT", "COMPLETECALLER"):
            talk[row.agent_id] += row.talk_seconds or 0.0
        elif row.verb == "RINGNOANSWER":
            rona[row.agent_id] += 1
    agents = sorted(set(answered) | set(talk) | set(rona))
    return [AgentStats(a, answered[a], round(talk[a], 3), rona[a]) for a in agents]


def skill_stats(stats: list[QueueStats], config: QueueConfig) -> dict[str, QueueStats]:
    """Per skill: the queues requiring it, added up (SL and ASA weighted by calls)."""
    by_skill: dict[str, list[QueueStats]] = defaultdict(list)
    for s in stats:
        for skill in config.queues[s.queue].required_skills:
            by_skill[skill].append(s)
    out = {}
    for skill, items in by_skill.items():
        answered = sum(i.answered for i in items)
        abandoned = sum(i.abandoned for i in items)
        handled = answered + abandoned
        within = sum((i.service_level or 0) * (i.answered + i.abandoned) for i in items)
        asa = sum((i.asa_seconds or 0) * i.answered for i in items)
        out[skill] = QueueStats(skill, sum(i.offered for i in items), answered, abandoned,
                                sum(i.overflowed_out for i in items),
                                within / handled if handled else None,
                                asa / answered if answered else None,
                                abandoned / handled if handled else None)
    return out


@dataclass(frozen=True)
class LiveQueue:
    queue: str
    waiting: int
    longest_wait_seconds: float | None


def live_state(engine: Engine, now: datetime) -> tuple[list[LiveQueue], dict[str, int]]:
    """Waiting calls per queue and agents per state, from the engine's projections."""
    with Session(engine) as session:
        queued = session.execute(select(CallRow.queue, CallRow.queued_at)
                                 .where(CallRow.state.in_(("queued", "ringing")))).all()
        states = session.scalars(select(AgentRow.state)).all()
    longest: dict[str, float] = {}
    counts: dict[str, int] = defaultdict(int)
    for queue, queued_at in queued:
        if queue is None or queued_at is None:
            continue
        at = queued_at if queued_at.tzinfo else queued_at.replace(tzinfo=UTC)
        counts[queue] += 1
        longest[queue] = max(longest.get(queue, 0.0), (now - at).total_seconds())
    agents: dict[str, int] = defaultdict(int)
    for state in states:
        agents[state] += 1
    return [LiveQueue(q, counts[q], longest.get(q)) for q in sorted(counts)], dict(agents)
