"""Dialer tables: campaigns, their contacts, every dial attempt, every live answer, the DNC list.

Live answers are stored raw (answer, greeting end, agent connect, message,
AMD verdict) rather than as an abandonment counter, because regulators
disagree on the window and on where the 2-second clock starts: any rate must
be recomputable later. The campaign row's ``state`` is also the control
channel: the CLI writes ``paused``/``running``/``stopped`` and the runner
polls it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ccengine.store.schema import Base

CAMPAIGN_STATES = ("running", "paused", "stopped", "completed")


class CampaignRow(Base):
    __tablename__ = "dialer_campaigns"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    mode: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    definition: Mapped[dict[str, Any]]  # the validated campaign YAML, as run
    source: Mapped[str] = mapped_column(Text)  # path of the YAML file
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    runner_pid: Mapped[int | None]


class ContactRow(Base):
    __tablename__ = "dialer_contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("dialer_campaigns.id"), index=True)
    contact_key: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(24), index=True)
    timezone: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128), default="")
    attributes: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))  # pending | dialing | closed
    final_reason: Mapped[str | None] = mapped_column(String(32))  # outcome, dnc, max_attempts, ...
    attempts: Mapped[int] = mapped_column(default=0)
    last_outcome: Mapped[str | None] = mapped_column(String(16))
    next_attempt_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class AttemptRow(Base):
    __tablename__ = "dialer_attempts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # = the customer channel id
    campaign_id: Mapped[str] = mapped_column(ForeignKey("dialer_campaigns.id"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("dialer_contacts.id"), index=True)
    phone: Mapped[str] = mapped_column(String(24), index=True)
    number: Mapped[int]  # 1 = first attempt of this contact
    dialed_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))
    cause: Mapped[str | None] = mapped_column(String(128))
    agent_id: Mapped[str | None] = mapped_column(String(64))
    amd_verdict: Mapped[str | None] = mapped_column(String(16))
    amd_cause: Mapped[str | None] = mapped_column(String(64))
    recording_path: Mapped[str | None] = mapped_column(Text)


class LiveAnswerRow(Base):
    """One answered call a regulator may count; mirrors :class:`ccengine.dialer.abandonment.LiveAnswer`."""

    __tablename__ = "dialer_live_answers"

    attempt_id: Mapped[str] = mapped_column(ForeignKey("dialer_attempts.id"), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("dialer_campaigns.id"), index=True)
    answer_ts: Mapped[datetime]
    greeting_end_ts: Mapped[datetime | None]
    agent_connect_ts: Mapped[datetime | None]
    message_played: Mapped[bool] = mapped_column(default=False)
    amd_verdict: Mapped[str | None] = mapped_column(String(16))
    agent_id: Mapped[str | None] = mapped_column(String(64))


class DncRow(Base):
    """The internal do-not-call table (numbers without '+', as ``campaign.dnc_key`` makes them)."""

    __tablename__ = "dialer_dnc"

    phone: Mapped[str] = mapped_column(String(24), primary_key=True)
    reason: Mapped[str] = mapped_column(String(128), default="")
    added_at: Mapped[datetime]


class ContactListRow(Base):
    """A named contact list imported from CSV (``ccengine campaign contacts-import``).

    Campaigns read it with ``contacts: {table: campaign_contacts, list: NAME}``;
    each run copies the list into ``dialer_contacts``, so re-importing a list
    never rewrites what an earlier run dialed.
    """

    __tablename__ = "campaign_contacts"
    __table_args__ = (UniqueConstraint("list_name", "contact_key", name="uq_campaign_contacts_list_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    list_name: Mapped[str] = mapped_column(String(64), index=True)
    contact_key: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(24))
    timezone: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128), default="")
    attributes: Mapped[dict[str, Any]]
    source: Mapped[str] = mapped_column(Text)  # file:line it was imported from
    imported_at: Mapped[datetime]


Index("ix_dialer_contacts_campaign_status", ContactRow.campaign_id, ContactRow.status)
