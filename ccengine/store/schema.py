"""Relational model: the event log plus projections of calls, legs, agents, recordings.

``events`` is the append-only source of truth (its ``seq`` is the offset the
API stream resumes from); the other tables are projections kept for queries
and reports. Timestamps are stored as timezone-aware UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class EventRow(Base):
    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                     autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int]
    occurred_at: Mapped[datetime]
    call_id: Mapped[str | None] = mapped_column(String(36), index=True)
    agent_id: Mapped[str | None] = mapped_column(String(64), index=True)
    queue: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]


class CallRow(Base):
    __tablename__ = "calls"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    caller_number: Mapped[str] = mapped_column(String(64), index=True)
    caller_name: Mapped[str] = mapped_column(String(128), default="")
    dialed: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)
    queue: Mapped[str | None] = mapped_column(String(64))
    agent_id: Mapped[str | None] = mapped_column(String(64))
    menu_digit: Mapped[str | None] = mapped_column(String(1))
    disposition: Mapped[str | None] = mapped_column(String(16))
    ended_by: Mapped[str | None] = mapped_column(String(16))
    end_cause: Mapped[str | None] = mapped_column(String(128))
    offered_at: Mapped[datetime] = mapped_column(index=True)
    menu_at: Mapped[datetime | None]
    queued_at: Mapped[datetime | None]
    agent_offered_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    bridged_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    wrapup_ended_at: Mapped[datetime | None]


class LegRow(Base):
    __tablename__ = "legs"

    # the PBX channel; "<channel>/<call id>" for an agent's persistent line, which carries many calls
    channel_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # customer | agent | transfer (an outside number)
    agent_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    end_cause: Mapped[str | None] = mapped_column(String(128))


class AgentRow(Base):
    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    state_since: Mapped[datetime]
    reason: Mapped[str] = mapped_column(String(64), default="")
    call_id: Mapped[str | None] = mapped_column(String(36))


class RecordingRow(Base):
    __tablename__ = "recordings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id"), index=True)
    path: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))


class RetentionRow(Base):
    """How long a sealed recording must be kept, and whether it is gone (crypto-shredded)."""

    __tablename__ = "recording_retention"

    recording_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    call_id: Mapped[str | None] = mapped_column(String(36), index=True)
    policy: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    retain_until: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    purged_by: Mapped[str | None] = mapped_column(String(64))
    purge_reason: Mapped[str | None] = mapped_column(String(32))  # expired | erasure


class LegalHoldRow(Base):
    """A legal hold: while it is not released, nothing it covers may be destroyed."""

    __tablename__ = "legal_holds"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # recording | call | caller
    target: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(Text)
    placed_by: Mapped[str] = mapped_column(String(64))
    placed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    released_by: Mapped[str | None] = mapped_column(String(64))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class QueueLogRow(Base):
    """Append-only log of every queue step (in the spirit of Asterisk's queue_log); statistics
    are computed from it, never from mutable projections."""

    __tablename__ = "queue_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    call_id: Mapped[str | None] = mapped_column(String(36), index=True)
    queue: Mapped[str | None] = mapped_column(String(64), index=True)
    agent_id: Mapped[str | None] = mapped_column(String(64), index=True)
    verb: Mapped[str] = mapped_column(String(24))
    wait_seconds: Mapped[float | None] = mapped_column(Float)
    talk_seconds: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[str] = mapped_column(String(128), default="")


Index("ix_calls_open", CallRow.state, CallRow.ended_at)
