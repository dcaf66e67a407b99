"""Outbound campaigns: the YAML an operator launches, the contact list, and the dialing rules.

Everything here is pure (no PBX, no database) so the rules that keep a
campaign legal -- do-not-call, calling windows in the contact's own time
zone, retry spacing, the 72-hour rule after an abandoned call -- can be
property-tested in isolation and are the very functions the live runner asks
before every dial.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ccengine.yamlconf import ConfigIssue, load_model

from .abandonment import FCC_30_DAY, OFCOM_24H, AbandonDefinition
from .pacing import FixedRatio, Predictive, Progressive, Strategy

LIVE_WARMUP = 40  # call outcomes a live campaign sees before it predicts (see Campaign.strategy)

ABANDON_REDIAL_GAP = timedelta(hours=72)
"""Ofcom: no redial within 72 h of an abandoned call unless an agent is guaranteed."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(value: Any) -> Any:
    """Accept seconds or '90s', '30m', '4h', '3d' so retry rules read naturally."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError("expected a duration such as 300, '30m', '4h' or '3d'")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


Seconds = Annotated[float, BeforeValidator(_duration), Field(ge=0)]


def _clock(value: Any) -> Any:
    if isinstance(value, int):  # YAML 1.1 reads 08:00 as a sexagesimal integer (480)
        return time(value // 60, value % 60)
    return value


Clock = Annotated[time, BeforeValidator(_clock)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Mode(StrEnum):
    PREVIEW = "preview"
    PROGRESSIVE = "progressive"
    POWER = "power"
    PREDICTIVE = "predictive"

    @property
    def agent_guaranteed(self) -> bool:
        """An agent is held for every call, so an answer can never be abandoned."""
        return self in (Mode.PREVIEW, Mode.PROGRESSIVE)


class Outcome(StrEnum):
    """How one dial attempt ended."""

    CONNECTED = "connected"  # a live person talked to an agent
    ABANDONED = "abandoned"  # live answer, no agent within the grace: information message
    MACHINE = "machine"  # answering machine (AMD verdict)
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    HANGUP = "hangup"  # answered, then hung up before a verdict or an agent
    FAILED = "failed"  # invalid number, congestion, PBX error


RETRYABLE = {Outcome.BUSY, Outcome.NO_ANSWER, Outcome.MACHINE, Outcome.ABANDONED, Outcome.HANGUP}


class CallingWindow(_Strict):
    """Local hours (in the contact's own time zone) during which dialing is allowed."""

    start: Clock = time(8, 0)
    end: Clock = time(21, 0)

    @model_validator(mode="after")
    def _ordered(self) -> CallingWindow:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def contains(self, local: datetime) -> bool:
        return self.start <= local.time().replace(tzinfo=None) < self.end


class DncSettings(_Strict):
    files: list[Path] = Field(default_factory=list, description="one number per line, '#' comments")
    use_table: bool = Field(True, description="also honour the internal do-not-call table")


class RetryRules(_Strict):
    """Seconds to wait before redialing after each outcome; ``null`` = never redial."""

    busy: Seconds | None = 300.0
    no_answer: Seconds | None = 3600.0
    machine: Seconds | None = 4 * 3600.0
    abandoned: Seconds | None = 72 * 3600.0
    hangup: Seconds | None = 3600.0

    def delay(self, outcome: Outcome) -> float | None:
        return getattr(self, outcome.value, None) if outcome in RETRYABLE else None


class AbandonmentSettings(_Strict):
    cap: float = Field(0.03, gt=0, lt=1)
    definition: Literal["fcc", "ofcom"] = "fcc"
    grace_seconds: float = Field(2.0, gt=0, description="connect deadline after the greeting")

    def regulator(self) -> AbandonDefinition:
        base = FCC_30_DAY if self.definition == "fcc" else OFCOM_24H
        return AbandonDefinition(base.name, base.period_s, self.grace_seconds, base.clock_start, self.cap,
                                 base.count_amd_false_positives, base.amd_false_positive_rate, base.timezone)


class ContactTable(_Strict):
    """Contacts from the database: a list imported with ``ccengine campaign contacts-import``."""

    table: Literal["campaign_contacts"] = "campaign_contacts"
    list: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")


class Campaign(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    mode: Mode
    ratio: float | None = Field(None, ge=1.0, le=5.0, description="power mode: lines per idle agent")
    target: float | None = Field(None, gt=0, lt=0.03, description="predictive: abandonment setpoint")
    agents: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")]] | None = Field(
        None, min_length=1, description="standalone: the campaign's own agents (not shared with the ACD)")
    queue: str | None = Field(None, min_length=1, max_length=64,
                              description="blended: the ACD queue whose agents work the campaign (needs the "
                                          "running engine; inbound and outbound share them)")
    skills: dict[str, Annotated[int, Field(ge=1, le=100)]] | None = Field(
        None, description="with queue: skill levels an agent needs instead of the queue's own")
    caller_id: str = Field(pattern=r"^\+?[0-9]{3,20}$")
    contacts: Path | ContactTable = Field(description="a CSV file, or {table: campaign_contacts, list: NAME}")
    dial: str = Field("PJSIP/{phone}@peer", description="dial string template; {phone} is the number")
    window: CallingWindow = CallingWindow()
    dnc: DncSettings = DncSettings()
    retry: RetryRules = RetryRules()
    max_attempts: int = Field(3, ge=1, le=20)
    amd: bool = False
    abandonment: AbandonmentSettings = AbandonmentSettings()
    message: str = Field(min_length=10, description="information message played when no agent is free")
    ring_timeout: int = Field(20, ge=15, le=60, description="seconds before an unanswered call is released")
    wrapup_seconds: float = Field(5.0, ge=0, description="standalone agents; a queue's own wrap_up applies with queue")
    max_lines: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _mode_parameters(self) -> Campaign:
        if self.mode is Mode.POWER and self.ratio is None:
            raise ValueError("mode power needs ratio (lines per idle agent)")
        if self.mode is not Mode.POWER and self.ratio is not None:
            raise ValueError("ratio only applies to mode power")
        if self.mode is not Mode.PREDICTIVE and self.target is not None:
            raise ValueError("target only applies to mode predictive")
        if self.target is not None and self.target >= self.abandonment.cap:
            raise ValueError("target must be below abandonment.cap")
        gap = self.retry.abandoned
        if (not self.mode.agent_guaranteed and gap is not None
                and gap < ABANDON_REDIAL_GAP.total_seconds()):
            raise ValueError("retry.abandoned must be at least 72h unless an agent is guaranteed "
                             "(preview or progressive)")
        if self.agents is not None and len(set(self.agents)) != len(self.agents):
            raise ValueError("agents must be unique")
        if (self.agents is None) == (self.queue is None):
            raise ValueError("name either agents (a standalone campaign) or queue (agents shared with the ACD)")
        if self.skills is not None and self.queue is None:
            raise ValueError("skills only apply with queue")
        return self

    def strategy(self) -> Strategy:
        """The pacing strategy this campaign's mode asks for (the simulator uses the same classes).

        A live list's answer rate is unknown at the start, so predictive stays
        progressive for its first LIVE_WARMUP call outcomes and first predicts
        from estimates that include them; the simulator's S0 starts from
        priors near its truth and runs without that warm-up.
        """
        if self.mode is Mode.POWER:
            assert self.ratio is not None
            return FixedRatio(self.ratio)
        if self.mode is Mode.PREDICTIVE:
            return Predictive(target=self.target or 0.02, cap=self.abandonment.cap,
                              grace_s=self.abandonment.grace_seconds, warmup=LIVE_WARMUP)
        return Progressive()

    def dial_string(self, phone: str) -> str:
        return self.dial.format(phone=phone)


def load_campaign(path: str | Path) -> Campaign:
    """Load a campaign YAML (file:line:col errors); relative paths are relative to the file."""
    path = Path(path)
    campaign = load_model(path, Campaign)
    base = path.resolve().parent

    def anchor(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    contacts = campaign.contacts
    return campaign.model_copy(update={
        "contacts": anchor(contacts) if isinstance(contacts, Path) else contacts,
        "dnc": campaign.dnc.model_copy(update={"files": [anchor(p) for p in campaign.dnc.files]}),
    })


# -- contacts ------------------------------------------------------------------------------------
def normalize_phone(raw: str) -> str:
    """Digits with an optional leading '+': the form DNC lists and dial strings compare on."""
    text = raw.strip()
    plus = text.startswith("+")
    digits = re.sub(r"[\s().-]", "", text.lstrip("+"))
    if not digits.isdigit() or not 3 <= len(digits) <= 20:
        raise ValueError(f"not a phone number: {raw!r}")
    return ("+" if plus else "") + digits


def dnc_key(phone: str) -> str:
    """DNC matching ignores the '+' so '+4420…' and '4420…' are the same subscriber."""
    return phone.lstrip("+")


@dataclass(frozen=True)
class Contact:
    id: str
    phone: str
    timezone: str
    name: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    line: int = 0

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


REQUIRED_COLUMNS = ("id", "phone", "timezone")


def load_contacts(path: str | Path) -> tuple[list[Contact], list[ConfigIssue]]:
    """Read a contact CSV. Bad rows become located issues; good rows still load.

    A missing file or missing required column is an issue on line 1 and no
    contacts: nothing in such a file can be trusted.
    """
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        return [], [ConfigIssue(file, 0, 0, "", f"cannot read: {exc.strerror}")]
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        return [], [ConfigIssue(file, 1, 1, "", f"missing column(s): {', '.join(missing)}")]
    contacts: list[Contact] = []
    issues: list[ConfigIssue] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        values = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if None in row:
            issues.append(ConfigIssue(file, line, 1, "", "more fields than columns"))
            continue
        problems = []
        cid = values.get("id", "")
        if not cid:
            problems.append(("id", "empty id"))
        elif cid in seen:
            problems.append(("id", f"duplicate id {cid!r} (first on line {seen[cid]})"))
        try:
            phone = normalize_phone(values.get("phone", ""))
        except ValueError as exc:
            problems.append(("phone", str(exc)))
            phone = ""
        tz = values.get("timezone", "")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(("timezone", f"unknown IANA time zone {tz!r}"))
        if problems:
            for key, message in problems:
                column = header.index(key) + 1 if key in header else 1
                issues.append(ConfigIssue(file, line, column, key, message))
            continue
        seen[cid] = line
        attributes = {k: v for k, v in values.items() if k not in (*REQUIRED_COLUMNS, "name") and k}
        contacts.append(Contact(cid, phone, tz, values.get("name", ""), attributes, line))
    return contacts, issues


def load_dnc_files(paths: Iterable[Path]) -> tuple[set[str], list[ConfigIssue]]:
    """Numbers from DNC files; unreadable lines are issues, never silently dropped."""
    numbers: set[str] = set()
    issues: list[ConfigIssue] = []
    for path in paths:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            issues.append(ConfigIssue(str(path), 0, 0, "", f"cannot read: {exc.strerror}"))
            continue
        for number, raw in enumerate(lines, 1):
            entry = raw.split("#", 1)[0].strip()
            if not entry:
                continue
            try:
                numbers.add(dnc_key(normalize_phone(entry)))
            except ValueError as exc:
                issues.append(ConfigIssue(str(path), number, 1, "", str(exc)))
    return numbers, issues


def load_campaign_inputs(path: str | Path) -> tuple[Campaign, list[Contact], set[str], list[ConfigIssue]]:
    """Campaign, good contacts, DNC numbers from files, and every row-level issue.

    Raises ConfigError only when the campaign YAML itself is invalid. A
    campaign reading a database list gets no contacts here: the caller, who
    holds the database, reads them (``contact_lists.read_list``).
    """
    campaign = load_campaign(path)
    contacts, issues = (load_contacts(campaign.contacts) if isinstance(campaign.contacts, Path)
                        else ([], []))
    dnc, dnc_issues = load_dnc_files(campaign.dnc.files)
    return campaign, contacts, dnc, issues + dnc_issues


# -- the rules -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Attempt:
    """One past dial of a contact, as the rules need it."""

    at: datetime
    outcome: Outcome


@dataclass(frozen=True)
class Eligibility:
    ok: bool
    reason: str = ""  # dnc | done | max_attempts | retry_wait | outside_window
    not_before: datetime | None = None

    def __bool__(self) -> bool:
        return self.ok


ELIGIBLE = Eligibility(True)
FINAL_REASONS = frozenset({"dnc", "done", "max_attempts"})


def next_attempt_at(campaign: Campaign, last: Attempt) -> datetime | None:
    """Earliest redial after ``last``; None when its outcome ends the contact.

    The 72-hour gap after an abandoned call is enforced here too, not only
    by the YAML validation, so no configuration path can bypass it.
    """
    delay = campaign.retry.delay(last.outcome)
    if delay is None:
        return None
    gap = timedelta(seconds=delay)
    if last.outcome is Outcome.ABANDONED and not campaign.mode.agent_guaranteed:
        gap = max(gap, ABANDON_REDIAL_GAP)
    return last.at + gap


def eligible(campaign: Campaign, contact: Contact, now: datetime, history: Sequence[Attempt],
             dnc: set[str] | frozenset[str]) -> Eligibility:
    """May ``contact`` be dialed at ``now``? If not, why, and (when known) from when."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if dnc_key(contact.phone) in dnc:
        return Eligibility(False, "dnc")
    ordered = sorted(history, key=lambda a: a.at)
    if ordered:
        if any(a.outcome not in RETRYABLE for a in ordered):
            return Eligibility(False, "done")
        if len(ordered) >= campaign.max_attempts:
            return Eligibility(False, "max_attempts")
        latest = [a for a in ordered if a.at == ordered[-1].at]
        gaps = [next_attempt_at(campaign, a) for a in latest]
        if any(g is None for g in gaps):
            return Eligibility(False, "done")
        not_before = max(g for g in gaps if g is not None)
        if not campaign.mode.agent_guaranteed:
            for attempt in ordered:
                if attempt.outcome is Outcome.ABANDONED:
                    not_before = max(not_before, attempt.at + ABANDON_REDIAL_GAP)
        if now < not_before:
            return Eligibility(False, "retry_wait", not_before)
    local = now.astimezone(contact.zone)
    if not campaign.window.contains(local):
        return Eligibility(False, "outside_window", _window_opens(campaign.window, local))
    return ELIGIBLE


def _window_opens(window: CallingWindow, local: datetime) -> datetime:
    """Next local window start, as UTC (wall-clock arithmetic, so DST shifts are respected)."""
    day = local.date() if local.time().replace(tzinfo=None) < window.start else local.date() + timedelta(days=1)
    opens = datetime.combine(day, window.start, tzinfo=local.tzinfo)
    return opens.astimezone(UTC)
