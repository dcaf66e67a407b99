"""Queue, skill, agent and customer-rule definitions written by PBX admins.

The files are validated in two passes. Pass one checks each item (a skill, a
queue, an agent, ...) against its pydantic model on its own, so one broken
queue does not hide the mistakes in the next one. Pass two cross-checks the
items that passed: unknown skills, duplicate ids, negative times, overflow to
an unknown queue and overflow cycles. Every mistake from both passes is raised
at once as a :class:`~ccengine.yamlconf.ConfigError` with file, line, column
and key path, even when the definitions are spread over a folder of files.

Skill levels are integers 1..10 (10 = expert). Integers make "minimum level"
comparisons exact and let the router keep per-level indexes; a 0.0-5.0 scale
from another platform maps onto it by doubling and rounding.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ccengine.yamlconf import (
    ConfigError,
    ConfigIssue,
    KeyPath,
    LocatedDocument,
    load_yaml,
    validation_issues,
)

# ---------------------------------------------------------------- scalar types


class Duration(float):
    """Seconds parsed from the YAML; a distinct type so the negative-time
    cross-check can find every duration without a list of field names."""


_DURATION_RE = re.compile(r"^\s*(-)?\s*((?:\d+(?:\.\d+)?\s*[dhms]\s*)+)$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_DURATION_HELP = "expected seconds or a duration such as 20s, 5m, 1h, 7d"
_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def _parse_duration(value: Any) -> Any:
    """Accept plain seconds or ``90s`` / ``5m`` / ``1h30m`` / ``7d``: admins write both."""
    if isinstance(value, bool):
        raise ValueError(_DURATION_HELP)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if not match:
            raise ValueError(_DURATION_HELP)
        total = sum(float(n) * _UNIT[u] for n, u in _DURATION_PART.findall(match.group(2)))
        return -total if match.group(1) else total
    return value


Seconds = Annotated[float, BeforeValidator(_parse_duration), AfterValidator(Duration)]
Level = Annotated[int, Field(ge=1, le=10)]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
Channel = Literal["voice", "chat", "email", "sms", "video"]
Strategy = Literal["best_skill", "longest_idle", "least_occupancy"]
# per_call: the agent's phone rings for every call; persistent: the engine calls it once at
# login/ready and keeps the answered line open between calls ("nailed-up" agents)
Connection = Literal["per_call", "persistent"]


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


StrList = Annotated[list[str], BeforeValidator(_listify)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -------------------------------------------------------------------- skills


class Skill(_Model):
    """An entry of the skills catalogue; queues and agents may only name these."""

    id: Identifier
    name: str | None = None
    kind: Literal["product", "language", "licence", "desk", "customer_care", "other"] = "other"
    description: str | None = None


# ----------------------------------------------------------------- calendars

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def _parse_ranges(value: list[str]) -> list[str]:
    for item in value:
        match = _RANGE_RE.match(item)
        if not match:
            raise ValueError(f"'{item}' is not a time range like 08:00-20:00")
        start = int(match.group(1)) * 60 + int(match.group(2))
        end = int(match.group(3)) * 60 + int(match.group(4))
        if end > 24 * 60 or end <= start:
            raise ValueError(f"'{item}' must end after it starts, at 24:00 at the latest")
    return value


Ranges = Annotated[list[str], BeforeValidator(_listify), AfterValidator(_parse_ranges)]


def _expand_days(spec: str) -> list[int]:
    days: list[int] = []
    for part in spec.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            raise ValueError(f"'{spec}' is not a day or day range like mon-fri")
        a, b = _DAYS.index(first), _DAYS.index(last or first)
        if b < a:
            raise ValueError(f"'{spec}': day range runs backwards")
        days.extend(range(a, b + 1))
    return days


def _minutes(rng: str) -> tuple[int, int]:
    start, end = rng.split("-")
    return (int(start[:2]) * 60 + int(start[3:]), int(end[:2]) * 60 + int(end[3:]))


class Holiday(_Model):
    """A closed day, or a day with special hours (e.g. Christmas Eve mornings)."""

    date: date
    name: str | None = None
    open: Ranges = Field(default_factory=list)


class Calendar(_Model):
    """Opening hours in the calendar's own timezone, so DST is handled by zoneinfo."""

    timezone: str
    open: dict[str, Ranges]
    holidays: list[Holiday] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone '{value}'") from None
        return value

    @field_validator("open")
    @classmethod
    def _days(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        seen: set[int] = set()
        for spec in value:
            days = _expand_days(spec)
            if seen.intersection(days):
                raise ValueError(f"'{spec}' overlaps another day entry")
            seen.update(days)
        return value

    def is_open(self, when: datetime) -> bool:
        """Whether the calendar is open at the aware datetime ``when``."""
        local = when.astimezone(ZoneInfo(self.timezone))
        minute = local.hour * 60 + local.minute
        for holiday in self.holidays:
            if holiday.date == local.date():
                return any(a <= minute < b for a, b in map(_minutes, holiday.open))
        for spec, ranges in self.open.items():
            if local.weekday() in _expand_days(spec):
                return any(a <= minute < b for a, b in map(_minutes, ranges))
        return False


# -------------------------------------------------------------------- queues


class ServiceLevel(_Model):
    """Target such as 80 % of answered contacts within 20 s."""

    percent: float = Field(gt=0, le=100)
    within: Seconds


class Announcements(_Model):
    position: bool = True
    estimated_wait: bool = True
    first_after: Seconds = Duration(30)
    repeat_every: Seconds = Duration(60)


class OverflowRule(_Model):
    """Leave the queue after ``after`` seconds of waiting or when the estimated
    wait exceeds ``estimated_wait_over``, whichever is given (either triggers)."""

    after: Seconds | None = None
    estimated_wait_over: Seconds | None = None
    action: Literal["queue", "callback", "voicemail"] = "queue"
    queue: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> OverflowRule:
        if self.after is None and self.estimated_wait_over is None:
            raise ValueError("give 'after' or 'estimated_wait_over'")
        if self.action == "queue" and self.queue is None:
            raise ValueError("action 'queue' needs 'queue'")
        if self.action != "queue" and self.queue is not None:
            raise ValueError(f"'queue' is only used with action 'queue', not '{self.action}'")
        return self


class ClosedCallback(_Model):
    """The terms of a callback promised while the queue is closed (``when_closed: callback``):
    it is placed once the queue opens, within ``window`` of the request, at most ``attempts``
    times, ``retry_after`` apart when the customer does not answer."""

    window: Seconds = Duration(24 * 3600)
    attempts: int = Field(default=3, ge=1, le=10)
    retry_after: Seconds = Duration(600)

    @model_validator(mode="after")
    def _positive(self) -> ClosedCallback:
        if self.window <= 0:
            raise ValueError("'window' must be longer than 0 s")
        return self


class QueueDefinition(_Model):
    id: Identifier
    name: str | None = None
    channel: Channel = "voice"
    required_skills: dict[str, Level] = Field(default_factory=dict)
    priority: int = Field(default=0, ge=0, le=1000)
    strategy: Strategy = "longest_idle"
    priority_aging_per_minute: float = Field(default=0.0, ge=0, le=1000)
    affinity_window: Seconds = Duration(0)
    service_level: ServiceLevel | None = None
    max_wait: Seconds | None = None
    on_max_wait: Literal["voicemail", "callback", "disconnect"] = "voicemail"
    overflow: list[OverflowRule] = Field(default_factory=list)
    hours: str | None = None
    when_closed: Literal["voicemail", "announcement", "callback"] = "announcement"
    closed_callback: ClosedCallback = Field(default_factory=ClosedCallback)
    voicemail_max: Seconds = Duration(120)  # longest message a caller may leave
    # fail closed when a connected call cannot be recorded: end it with an apology, or hold
    # both parties on music until recording works again
    recording_failure: Literal["end", "hold"] = "end"
    announcements: Announcements = Field(default_factory=Announcements)
    wrap_up: Seconds = Duration(0)
    music_on_hold: str = "default"


# ------------------------------------------------------------ customer rules


class CustomerMatch(_Model):
    """All given fields must match; a list means any of its values."""

    segment: StrList | None = None
    language: StrList | None = None
    risk: StrList | None = None
    flags: StrList | None = None  # every listed flag must be set on the customer

    @model_validator(mode="after")
    def _not_empty(self) -> CustomerMatch:
        if not any((self.segment, self.language, self.risk, self.flags)):
            raise ValueError("match needs at least one of segment, language, risk, flags")
        return self


class CustomerRule(_Model):
    """Raise priority and/or add required skills for matching customers, from
    the customer directory or the IVR (e.g. VIP, vulnerable, caller language)."""

    id: Identifier
    match: CustomerMatch
    queues: list[str] | None = None  # None = every queue
    priority_boost: int = Field(default=0, ge=0, le=1000)
    extra_skills: dict[str, Level] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _has_effect(self) -> CustomerRule:
        if not self.priority_boost and not self.extra_skills:
            raise ValueError("rule has no effect: give priority_boost or extra_skills")
        return self


@dataclass(frozen=True)
class Customer:
    """What the directory or IVR knows about a caller, as rules consume it."""

    segment: str | None = None
    language: str | None = None
    risk: str | None = None
    flags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ContactNeeds:
    """Result of applying customer rules to a queue: what the router needs."""

    queue_id: str
    priority: int
    required_skills: Mapping[str, int]
    rules: tuple[str, ...]


# -------------------------------------------------------------------- agents


def _voice_only() -> list[Channel]:
    return ["voice"]


class Team(_Model):
    """Settings shared by the agents that list the team; an agent's own setting wins."""

    id: Identifier
    name: str | None = None
    connection: Connection | None = None


class AgentDefinition(_Model):
    id: Identifier
    name: str
    skills: dict[str, Level] = Field(default_factory=dict)
    teams: list[str] = Field(default_factory=list)
    channels: list[Channel] = Field(default_factory=_voice_only)
    max_concurrent: dict[Channel, Annotated[int, Field(ge=1, le=50)]] = Field(default_factory=dict)
    connection: Connection | None = None  # None: the teams' setting, else per_call

    def capacity(self) -> dict[str, int]:
        """Concurrent contacts per channel; 1 unless ``max_concurrent`` says more."""
        return {ch: self.max_concurrent.get(ch, 1) for ch in self.channels}

    @property
    def persistent(self) -> bool:
        """Reached over a persistent line (resolved from the teams once loaded)."""
        return self.connection == "persistent"


# -------------------------------------------------------------- whole config


class QueueConfig(_Model):
    """Every definition from every file, keyed by id in file order."""

    skills: dict[str, Skill]
    calendars: dict[str, Calendar]
    queues: dict[str, QueueDefinition]
    customer_rules: tuple[CustomerRule, ...]
    agents: dict[str, AgentDefinition]
    teams: dict[str, Team] = Field(default_factory=dict)

    def needs(self, queue_id: str, customer: Customer) -> ContactNeeds:
        """Priority and skills for a contact after the customer rules; boosts
        add up and extra skills take the highest minimum level asked."""
        queue = self.queues[queue_id]
        priority = queue.priority
        skills = dict(queue.required_skills)
        matched: list[str] = []
        for rule in self.customer_rules:
            if rule.queues is not None and queue_id not in rule.queues:
                continue
            if not _matches(rule.match, customer):
                continue
            matched.append(rule.id)
            priority += rule.priority_boost
            for skill, level in rule.extra_skills.items():
                skills[skill] = max(level, skills.get(skill, 0))
        return ContactNeeds(queue_id, priority, skills, tuple(matched))

    def qualified_agents(self, queue_id: str) -> list[str]:
        """Agents able to serve the queue's own requirements (rules excluded)."""
        queue = self.queues[queue_id]
        return [
            agent.id
            for agent in self.agents.values()
            if queue.channel in agent.channels
            and all(agent.skills.get(s, 0) >= lvl for s, lvl in queue.required_skills.items())
        ]


def _matches(match: CustomerMatch, customer: Customer) -> bool:
    pairs = ((match.segment, customer.segment), (match.language, customer.language),
             (match.risk, customer.risk))
    if any(allowed is not None and value not in allowed for allowed, value in pairs):
        return False
    return not match.flags or set(match.flags) <= customer.flags


# -------------------------------------------------------------------- loader


@dataclass(frozen=True)
class _Origin:
    doc: LocatedDocument
    path: KeyPath

    def issue(self, sub: Iterable[str | int], message: str) -> ConfigIssue:
        return self.doc.issue((*self.path, *sub), message)

    def where(self) -> str:
        pos, _ = self.doc.locate(self.path)
        return f"{self.doc.file}:{pos.line}"


_SECTIONS: dict[str, type[_Model]] = {
    "skills": Skill,
    "calendars": Calendar,
    "queues": QueueDefinition,
    "customer_rules": CustomerRule,
    "agents": AgentDefinition,
    "teams": Team,
}
_SINGULAR = {"skills": "skill", "calendars": "calendar", "queues": "queue",
             "customer_rules": "customer rule", "agents": "agent", "teams": "team"}


@dataclass
class _Collected:
    items: dict[str, list[tuple[Any, _Origin]]] = dataclasses.field(
        default_factory=lambda: {name: [] for name in _SECTIONS})
    raw_ids: dict[str, set[str]] = dataclasses.field(
        default_factory=lambda: {name: set() for name in _SECTIONS})
    issues: list[ConfigIssue] = dataclasses.field(default_factory=list)
    files: list[str] = dataclasses.field(default_factory=list)


def _expand_paths(paths: str | Path | Iterable[str | Path], out: _Collected) -> list[Path]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            found = sorted(p for p in entry.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                out.issues.append(ConfigIssue(str(entry), 0, 0, "", "folder has no *.yaml files"))
            files.extend(found)
        else:
            files.append(entry)
    return files


def _clean(issue: ConfigIssue) -> ConfigIssue:
    """Drop pydantic's 'Value error, ' prefix: our validators speak for themselves."""
    for prefix in ("Value error, ", "Assertion failed, "):
        if issue.message.startswith(prefix):
            return dataclasses.replace(issue, message=issue.message[len(prefix):])
    return issue


def _collect_document(doc: LocatedDocument, out: _Collected) -> None:
    data = doc.data
    if not isinstance(data, dict):
        out.issues.append(doc.issue((), "top level must be a mapping of sections"))
        return
    for key, value in data.items():
        if key == "version":
            if value != 1:
                out.issues.append(doc.issue(("version",), "only version 1 is supported"))
            continue
        if key not in _SECTIONS:
            out.issues.append(doc.issue((key,), "unknown key"))
            continue
        model = _SECTIONS[key]
        if value is None:
            continue
        if key == "calendars":
            if not isinstance(value, dict):
                out.issues.append(doc.issue((key,), "must be a mapping of calendar name to calendar"))
                continue
            entries: Iterable[tuple[str | int, Any]] = value.items()
        else:
            if not isinstance(value, list):
                out.issues.append(doc.issue((key,), f"must be a list of {_SINGULAR[key]} entries"))
                continue
            entries = enumerate(value)
        for index, raw in entries:
            path: KeyPath = (key, index)
            if key == "calendars":
                out.raw_ids[key].add(str(index))
            elif isinstance(raw, dict) and isinstance(raw.get("id"), str):
                out.raw_ids[key].add(raw["id"])
            try:
                item = model.model_validate(raw)
            except ValidationError as exc:
                out.issues.extend(_clean(i) for i in validation_issues(doc, exc, prefix=path))
                partial = _without_bad_keys(model, raw, exc)
                if partial is not None:  # still cross-check what is valid
                    out.items[key].append((partial, _Origin(doc, path)))
                continue
            out.items[key].append((item, _Origin(doc, path)))


def _without_bad_keys(model: type[_Model], raw: Any, error: ValidationError) -> _Model | None:
    """The item minus its invalid keys, if that validates, so the cross-checks
    can still report e.g. an unknown skill in a queue whose strategy is wrong."""
    if not isinstance(raw, dict):
        return None
    bad = set()
    for err in error.errors():
        if not err["loc"]:
            return None  # a whole-item rule failed: nothing safe to keep
        bad.add(err["loc"][0])
    try:
        return model.model_validate({k: v for k, v in raw.items() if k not in bad})
    except ValidationError:
        return None


def _negative_times(value: Any, path: KeyPath) -> Iterator[tuple[KeyPath, float]]:
    if isinstance(value, Duration):
        if value < 0:
            yield path, float(value)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _negative_times(getattr(value, name), (*path, name))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _negative_times(item, (*path, key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _negative_times(item, (*path, index))


def _unique(section: str, out: _Collected) -> dict[str, tuple[Any, _Origin]]:
    by_id: dict[str, tuple[Any, _Origin]] = {}
    for item, origin in out.items[section]:
        ident = str(origin.path[1]) if section == "calendars" else item.id
        if ident in by_id:
            first = by_id[ident][1]
            sub: KeyPath = () if section == "calendars" else ("id",)
            out.issues.append(origin.issue(
                sub, f"duplicate {_SINGULAR[section]} id '{ident}' (first defined at {first.where()})"))
            continue
        by_id[ident] = (item, origin)
    return by_id


def _check_skills(skills: Mapping[str, int], origin: _Origin, sub: KeyPath,
                  known: set[str], out: _Collected) -> None:
    for skill in skills:
        if skill not in known:
            out.issues.append(origin.issue((*sub, skill), f"unknown skill '{skill}'"))


def _overflow_cycles(queues: Mapping[str, tuple[QueueDefinition, _Origin]], out: _Collected) -> None:
    """Report each cycle of queue-to-queue overflow once, at the first queue
    (in file order) on the cycle: a contact would bounce forever."""
    edges = {qid: [r.queue for r in q.overflow if r.action == "queue" and r.queue in queues]
             for qid, (q, _) in queues.items()}
    reported: set[str] = set()
    for start in queues:
        if start in reported:
            continue
        # breadth-first search for the shortest path back to ``start``
        parent: dict[str, str] = {}
        frontier = [start]
        found = False
        while frontier and not found:
            nxt: list[str] = []
            for node in frontier:
                for target in edges[node]:
                    assert target is not None
                    if target == start:
                        parent[start] = node
                        found = True
                        break
                    if target not in parent:
                        parent[target] = node
                        nxt.append(target)
                if found:
                    break
            frontier = nxt
        if not found:
            continue
        cycle = [start]
        node = parent[start]
        while node != start:
            cycle.append(node)
            node = parent[node]
        cycle.append(start)
        cycle.reverse()
        reported.update(cycle)
        queue, origin = queues[start]
        rule = next(i for i, r in enumerate(queue.overflow) if r.action == "queue" and r.queue == cycle[1])
        out.issues.append(origin.issue(("overflow", rule, "queue"),
                                       "overflow cycle: " + " -> ".join(cycle)))


def _cross_check(out: _Collected) -> QueueConfig | None:
    for section in _SECTIONS:
        for item, origin in out.items[section]:
            for sub, value in _negative_times(item, ()):
                out.issues.append(origin.issue(sub, f"negative time {value:g} s: durations must be >= 0"))
    skills = _unique("skills", out)
    calendars = _unique("calendars", out)
    queues = _unique("queues", out)
    agents = _unique("agents", out)
    rules = _unique("customer_rules", out)
    known_skills = set(skills) | out.raw_ids["skills"]
    known_queues = set(queues) | out.raw_ids["queues"]
    known_calendars = set(calendars) | out.raw_ids["calendars"]

    for queue, origin in out.items["queues"]:
        _check_skills(queue.required_skills, origin, ("required_skills",), known_skills, out)
        if queue.hours is not None and queue.hours not in known_calendars:
            out.issues.append(origin.issue(("hours",), f"unknown calendar '{queue.hours}'"))
        if queue.when_closed == "callback" and queue.hours is None:
            out.issues.append(origin.issue(("when_closed",), "'callback' needs 'hours': without a calendar "
                                                             "the queue never closes, nor opens again"))
        if "closed_callback" in queue.model_fields_set and queue.when_closed != "callback":
            out.issues.append(origin.issue(("closed_callback",), "'closed_callback' is only used with "
                                                                 f"when_closed 'callback', not '{queue.when_closed}'"))
        for index, rule in enumerate(queue.overflow):
            if rule.queue is not None and rule.queue not in known_queues:
                out.issues.append(origin.issue(("overflow", index, "queue"),
                                               f"overflow to unknown queue '{rule.queue}'"))
    for rule, origin in out.items["customer_rules"]:
        _check_skills(rule.extra_skills, origin, ("extra_skills",), known_skills, out)
        for index, qid in enumerate(rule.queues or ()):
            if qid not in known_queues:
                out.issues.append(origin.issue(("queues", index), f"unknown queue '{qid}'"))
    teams = _unique("teams", out)
    resolved: dict[str, AgentDefinition] = {}
    for agent, origin in out.items["agents"]:
        _check_skills(agent.skills, origin, ("skills",), known_skills, out)
        for channel in agent.max_concurrent:
            if channel not in agent.channels:
                out.issues.append(origin.issue(("max_concurrent", channel),
                                               f"channel '{channel}' is not in the agent's channels"))
        resolved[agent.id] = _resolve_connection(agent, origin, {k: v for k, (v, _) in teams.items()}, out)
    _overflow_cycles(queues, out)
    if out.issues:
        return None
    return QueueConfig(
        skills={k: v for k, (v, _) in skills.items()},
        calendars={k: v for k, (v, _) in calendars.items()},
        queues={k: v for k, (v, _) in queues.items()},
        customer_rules=tuple(v for v, _ in rules.values()),
        agents={k: resolved[k] for k in agents},
        teams={k: v for k, (v, _) in teams.items()},
    )


def _resolve_connection(agent: AgentDefinition, origin: _Origin, teams: Mapping[str, Team],
                        out: _Collected) -> AgentDefinition:
    """The agent's own connection, else its teams' (which must agree), else per_call; a
    persistent line is one voice call at a time."""
    connection = agent.connection
    if connection is None:
        chosen = {teams[t].connection: t for t in agent.teams if t in teams and teams[t].connection}
        if len(chosen) > 1:
            out.issues.append(origin.issue(("teams",), "teams " + " and ".join(f"'{t}'" for t in chosen.values())
                                           + " disagree on 'connection': set it on the agent"))
        connection = next(iter(chosen), None) or "per_call"
    if connection == "persistent":
        sub: KeyPath = ("connection",) if agent.connection else ("teams",)
        if "voice" not in agent.channels:
            out.issues.append(origin.issue(sub, "a persistent line needs the 'voice' channel"))
        elif agent.max_concurrent.get("voice", 1) > 1:
            out.issues.append(origin.issue(("max_concurrent", "voice"),
                                           "a persistent line carries one voice call at a time"))
    return agent.model_copy(update={"connection": connection})


def load_queue_config(paths: str | Path | Sequence[str | Path]) -> QueueConfig:
    """Load and validate one file, a folder of ``*.yaml`` files, or several of
    either, merged into one configuration; raise ConfigError listing every issue."""
    out = _Collected()
    for file in _expand_paths(paths, out):
        try:
            doc = load_yaml(file)
        except ConfigError as exc:
            out.issues.extend(exc.issues)
            continue
        out.files.append(doc.file)
        _collect_document(doc, out)
    config = _cross_check(out)
    if config is None:
        order = {name: i for i, name in enumerate(out.files)}
        raise ConfigError(sorted(out.issues, key=lambda i: (order.get(i.file, -1), i.line, i.column)))
    return config
