"""Contact-center KPIs computed from the stored call projections.

Definitions (per queue-industry usage):
- offered: calls that reached the engine; answered: an agent picked up;
- abandoned: the caller hung up while queued or while an agent was being rung;
- ASA: mean time from queue entry to agent answer, over answered calls;
- AHT: mean talk time plus after-call work (answer to end of wrap-up).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from .schema import CallRow


@dataclass(frozen=True)
class Kpis:
    offered: int
    answered: int
    abandoned: int
    ivr_hangups: int
    failed: int
    in_progress: int
    asa_seconds: float | None
    aht_seconds: float | None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def kpis(engine: Engine, since: datetime | None = None) -> Kpis:
    with Session(engine) as session:
        query = select(CallRow)
        if since is not None:
            query = query.where(CallRow.offered_at >= since.astimezone(UTC))
        calls = session.scalars(query).all()
    answered = [c for c in calls if c.answered_at is not None]
    waits = [w for c in answered if (w := _seconds(c.queued_at, c.answered_at)) is not None]
    handles = [h for c in answered if (h := _seconds(c.answered_at, c.wrapup_ended_at or c.ended_at)) is not None]
    return Kpis(
        offered=len(calls),
        answered=len(answered),
        abandoned=sum(1 for c in calls if c.disposition == "abandoned"),
        ivr_hangups=sum(1 for c in calls if c.disposition == "ivr_hangup"),
        failed=sum(1 for c in calls if c.disposition == "failed"),
        in_progress=sum(1 for c in calls if c.ended_at is None),
        asa_seconds=_mean(waits),
        aht_seconds=_mean(handles),
    )


def format_kpis(k: Kpis) -> str:
    def sec(v: float | None) -> str:
        return f"{v:.1f} s" if v is not None else "n/a"

    return (f"offered {k.offered}  answered {k.answered}  abandoned {k.abandoned}  "
            f"ivr hang-ups {k.ivr_hangups}  failed {k.failed}  in progress {k.in_progress}  "
            f"ASA {sec(k.asa_seconds)}  AHT {sec(k.aht_seconds)}")
