"""IVR trees: the YAML model and its validation, with every mistake located as file:line:col.

A tree is a set of named nodes and a ``start``. Nodes that read input (menu, collect,
authenticate, language) name their exits; so do data dips and branches. Terminal nodes
(route, callback, voicemail, transfer, hangup) end the walk. Validation is two-staged:
pydantic checks each node's shape, then :func:`check_tree` checks the graph (missing
targets, unreachable nodes, loops without exit, unknown queues, skills and calendars).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, TypeAdapter, ValidationError, model_validator

from ..acd.definitions import Calendar
from ..yamlconf import ConfigError, ConfigIssue, LocatedDocument, load_yaml, parse_yaml, validation_issues

NodeId = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")]
Digit = Annotated[str, Field(pattern=r"^[0-9*#]$")]
VarName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
TERMINALS = frozenset({"route", "callback", "voicemail", "transfer", "hangup"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Prompt(_Model):
    """What the caller hears: generated speech (per language or one text) and/or sound files.

    ``say`` may use ``{var}`` and ``{var[key]}`` placeholders filled from the walk's variables."""

    say: str | dict[str, str] | None = None
    sound: str | None = None  # a media URI (sound:..., or an absolute path without extension)

    @model_validator(mode="after")
    def _something(self) -> Prompt:
        if self.say is None and self.sound is None:
            raise ValueError("a prompt needs say or sound")
        return self


def _prompt(value: Any) -> Any:
    """A bare string is speech; a mapping of language codes is speech per language."""
    if isinstance(value, str):
        return {"say": value}
    if isinstance(value, dict) and value and all(isinstance(k, str) and re.fullmatch(r"[a-z]{2}", k)
                                                 for k in value):
        return {"say": value}
    return value


class _Node(_Model):
    type: str
    stat_label: str | None = None  # optional name in statistics and graphs

    @model_validator(mode="before")
    @classmethod
    def _prompts(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: _prompt(v) if k in PROMPT_FIELDS else v for k, v in data.items()}
        return data

    def exits(self) -> dict[str, str]:
        """Exit name → target node id."""
        return {}


PROMPT_FIELDS = frozenset({"prompt", "invalid", "no_input", "say", "account_prompt", "pin_prompt",
                           "failed_prompt", "locked_prompt", "goodbye"})


class PlayNode(_Node):
    type: Literal["play"]
    say: Prompt
    next: NodeId

    def exits(self) -> dict[str, str]:
        return {"next": self.next}


class MenuNode(_Node):
    """One DTMF choice; re-prompts after an invalid digit or silence, then takes ``fallback``."""

    type: Literal["menu"]
    prompt: Prompt
    choices: dict[Digit, NodeId] = Field(min_length=1)
    timeout: float = Field(5.0, gt=0, le=60)
    attempts: int = Field(3, ge=1, le=10)
    invalid: Prompt | None = None
    no_input: Prompt | None = None
    fallback: NodeId

    def exits(self) -> dict[str, str]:
        return {**{f"press {d}": t for d, t in self.choices.items()}, "fallback": self.fallback}


class LanguageNode(_Node):
    """A menu whose choice sets the caller's language (prompts and routing skills follow it)."""

    type: Literal["language"]
    prompt: Prompt
    choices: dict[Digit, Annotated[str, Field(pattern=r"^[a-z]{2}$")]] = Field(min_length=1)
    timeout: float = Field(5.0, gt=0, le=60)
    attempts: int = Field(2, ge=1, le=10)
    next: NodeId

    def exits(self) -> dict[str, str]:
        return {"next": self.next}


Validation = Literal["none", "luhn", "date", "account"]


class CollectNode(_Node):
    """Digits into a variable. ``secure`` input (card numbers) is never kept with the call's
    variables, logged or published: it lives in the walk's secret slots until a dip uses it."""

    type: Literal["collect"]
    prompt: Prompt
    var: VarName
    min_length: int = Field(1, ge=1, le=32)
    max_length: int = Field(16, ge=1, le=32)
    terminator: Literal["#", "*", ""] = "#"
    timeout: float = Field(6.0, gt=0, le=60)
    inter_digit_timeout: float = Field(3.0, gt=0, le=30)
    validate_as: Validation = Field("none", alias="validate")
    account_pattern: str | None = None  # regex for validate: account (default: 8 digits)
    secure: bool = False
    attempts: int = Field(3, ge=1, le=10)
    invalid: Prompt | None = None
    no_input: Prompt | None = None
    next: NodeId
    fallback: NodeId

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _lengths(self) -> CollectNode:
        if self.min_length > self.max_length:
            raise ValueError("min_length is greater than max_length")
        if self.account_pattern is not None:
            try:
                re.compile(self.account_pattern)
            except re.error as exc:
                raise ValueError(f"account_pattern is not a regular expression: {exc}") from None
        return self

    def exits(self) -> dict[str, str]:
        return {"next": self.next, "fallback": self.fallback}


class AuthenticateNode(_Node):
    """Account number and PIN checked by the customer directory; the PIN is secure input.
    ``max_failures`` wrong PINs in this call (or the directory saying the account is locked)
    takes ``locked``. An account unknown to the directory is treated as a wrong PIN all the way
    (the caller cannot tell which account numbers exist; nothing is locked, ``account_unknown``
    is set); silence, malformed account numbers and directory failures take ``fallback``."""

    type: Literal["authenticate"]
    account_prompt: Prompt
    pin_prompt: Prompt
    failed_prompt: Prompt | None = None
    locked_prompt: Prompt | None = None
    account_length: int = Field(8, ge=4, le=20)
    pin_length: int = Field(4, ge=4, le=12)
    timeout: float = Field(6.0, gt=0, le=60)
    max_failures: int = Field(3, ge=1, le=10)
    dip_timeout: float = Field(3.0, gt=0, le=30)
    ok: NodeId
    locked: NodeId
    fallback: NodeId

    def exits(self) -> dict[str, str]:
        return {"ok": self.ok, "locked": self.locked, "fallback": self.fallback}


Operation = Literal["lookup_caller", "lookup_account", "lookup_card", "balance", "transactions", "tickets"]
# the arguments each operation takes (all required): a misspelt or missing one would send an empty
# value and fail on every call, so validation refuses it
DIP_ARGS: Mapping[str, tuple[str, ...]] = {
    "lookup_caller": ("number",), "lookup_account": ("account",), "lookup_card": ("card",),
    "balance": ("account",), "transactions": ("account",), "tickets": ("customer",)}


class DipNode(_Node):
    """A call to the customer directory / core banking. The answer is stored under ``store``;
    an error or no answer within ``timeout`` takes ``fallback``; "not found" takes ``not_found``
    (or ``fallback`` when not given)."""

    type: Literal["dip"]
    operation: Operation
    args: dict[str, str] = Field(default_factory=dict)  # values may use {var} and secure {var}
    store: VarName
    timeout: float = Field(2.0, gt=0, le=30)
    next: NodeId
    fallback: NodeId
    not_found: NodeId | None = None

    def exits(self) -> dict[str, str]:
        out = {"next": self.next, "fallback": self.fallback}
        if self.not_found:
            out["not_found"] = self.not_found
        return out


Scalar = str | int | float | bool


class SetNode(_Node):
    """Variables for later branches, the agent and the event stream; ``intent`` and ``segment``
    are plain variables the route hands to the ACD."""

    type: Literal["set"]
    vars: dict[VarName, Scalar] = Field(min_length=1)
    next: NodeId

    def exits(self) -> dict[str, str]:
        return {"next": self.next}


class Condition(_Model):
    """One test; all given fields must hold."""

    var: str | None = None  # a variable name (dots reach into dip results: balance.amount)
    equals: Scalar | None = None
    one_of: list[Scalar] | None = None
    exists: bool | None = None
    open: str | None = None  # calendar id: open now
    holiday: str | None = None  # calendar id: today is one of its holidays
    caller_prefix: str | list[str] | None = None
    caller_anonymous: bool | None = None

    @model_validator(mode="after")
    def _sane(self) -> Condition:
        tests = [self.var, self.open, self.holiday, self.caller_prefix, self.caller_anonymous]
        if all(t is None for t in tests):
            raise ValueError("a condition needs var, open, holiday, caller_prefix or caller_anonymous")
        if self.var is None and (self.equals is not None or self.one_of is not None or self.exists is not None):
            raise ValueError("equals/one_of/exists need var")
        return self


class Case(_Model):
    when: Condition = Field(alias="if")
    goto: NodeId


class BranchNode(_Node):
    type: Literal["branch"]
    cases: list[Case] = Field(min_length=1)
    otherwise: NodeId = Field(alias="else")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def exits(self) -> dict[str, str]:
        return {**{f"case {i + 1}": c.goto for i, c in enumerate(self.cases)}, "else": self.otherwise}


class RouteNode(_Node):
    """Hand the caller to the ACD: queue plus extra skills, a priority boost and the intent."""

    type: Literal["route"]
    queue: str
    skills: dict[str, Annotated[int, Field(ge=1, le=10)]] = Field(default_factory=dict)
    priority: int = Field(0, ge=0, le=1000)
    intent: str | None = None
    say: Prompt | None = None


class CallbackNode(_Node):
    """Keep a place in ``queue`` and call the customer back when an agent is free."""

    type: Literal["callback"]
    queue: str
    intent: str | None = None
    say: Prompt | None = None


class VoicemailNode(_Node):
    type: Literal["voicemail"]
    mailbox: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    say: Prompt | None = None
    max_seconds: int = Field(60, ge=5, le=600)


class TransferNode(_Node):
    """Blind transfer to an outside number (dialled with pbx.customer_dial)."""

    type: Literal["transfer"]
    number: str = Field(pattern=r"^\+?[0-9]{2,20}$")
    say: Prompt | None = None
    timeout: int = Field(30, ge=5, le=120)


class HangupNode(_Node):
    """End the call; ``served`` marks the caller as fully served by self-service (containment)."""

    type: Literal["hangup"]
    say: Prompt | None = None
    served: bool = False


Node = Annotated[
    PlayNode | MenuNode | LanguageNode | CollectNode | AuthenticateNode | DipNode | SetNode | BranchNode
    | RouteNode | CallbackNode | VoicemailNode | TransferNode | HangupNode,
    Field(discriminator="type"),
]
_NODE = TypeAdapter(Node)


class TreeHeader(_Model):
    version: Literal[1]
    id: NodeId
    start: NodeId
    language: Annotated[str, Field(pattern=r"^[a-z]{2}$")] = "en"
    # record callers from answer (IVR included), not only once an agent is bridged; strict: a
    # compliance switch takes true or false, never a string that happens to parse as one
    record: StrictBool = False
    calendars: dict[str, Calendar] = Field(default_factory=dict)
    nodes: dict[str, Any] = Field(min_length=1)


@dataclass(frozen=True)
class Tree:
    """A validated tree. ``version`` is a hash of the file's text, so statistics and running
    callers can tell trees apart across hot reloads."""

    id: str
    version: str
    start: str
    language: str
    calendars: Mapping[str, Calendar]
    nodes: Mapping[str, Any]  # node id → node model
    lines: Mapping[str, int]  # node id → line in the file
    source: str
    record: bool = False  # the call is recorded from answer, IVR included
    media_cache: dict[tuple[int, str], Any] = field(default_factory=dict, compare=False, repr=False)

    def node(self, node_id: str) -> Any:
        return self.nodes[node_id]


def node_exits(node: Any) -> dict[str, str]:
    exits: dict[str, str] = node.exits()
    return exits


# -------------------------------------------------------------------- graph checks


def _reachable(start: str, edges: Mapping[str, Iterable[str]]) -> set[str]:
    seen = {start}
    stack = [start]
    while stack:
        for nxt in edges.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


_SILENT_EXITS = {"play": ("next",), "set": ("next",), "language": ("next",), "menu": ("fallback",),
                 "collect": ("fallback",), "authenticate": ("fallback",)}  # dip, branch: every exit


def _silent_cycles(nodes: Mapping[str, Any]) -> list[list[str]]:
    """Cycles a caller who presses nothing would go round forever (a menu whose fallback leads back
    to it, plays and sets chasing each other...): one cycle per strongly connected component."""
    silent: dict[str, list[str]] = {}
    for node_id, node in nodes.items():
        exits = node_exits(node)
        names = _SILENT_EXITS.get(node.type, tuple(exits))
        silent[node_id] = [exits[n] for n in names if n in exits and exits[n] in nodes]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(root: str) -> None:  # iterative Tarjan
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            outs = silent[node]
            if i < len(outs):
                work.append((node, i + 1))
                nxt = outs[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])

    for node_id in nodes:
        if node_id not in index:
            visit(node_id)
    cycles = []
    for component in components:
        first = min(component, key=list(nodes).index)
        if len(component) == 1 and first not in silent[first]:
            continue
        path = [first]
        node = next(n for n in silent[first] if n in component)
        while node not in path:
            path.append(node)
            node = next(n for n in silent[node] if n in component)
        cycles.append(path[path.index(node):])
    return sorted(cycles, key=lambda c: list(nodes).index(c[0]))


def check_tree(doc: LocatedDocument, header: TreeHeader, nodes: Mapping[str, Any],
               queues: Iterable[str] | None, skills: Iterable[str] | None = None) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    if header.start not in nodes:
        issues.append(doc.issue(("start",), f"start node '{header.start}' is not defined"))
    edges: dict[str, list[str]] = {}
    for node_id, node in nodes.items():
        edges[node_id] = []
        for exit_name, target in node_exits(node).items():
            if target not in nodes:
                issues.append(doc.issue(("nodes", node_id, *_exit_key(node, exit_name)),
                                        f"{exit_name} goes to undefined node '{target}'"))
            else:
                edges[node_id].append(target)
        for cal_key in _calendars_used(node):
            if cal_key[1] not in header.calendars:
                issues.append(doc.issue(("nodes", node_id, *cal_key[0]), f"unknown calendar '{cal_key[1]}'"))
        if queues is not None and isinstance(node, (RouteNode, CallbackNode)) and node.queue not in queues:
            issues.append(doc.issue(("nodes", node_id, "queue"), f"unknown queue '{node.queue}'"))
        if skills is not None and isinstance(node, RouteNode):  # no agent has a skill the ACD does not know
            issues.extend(doc.issue(("nodes", node_id, "skills", skill), f"unknown skill '{skill}'")
                          for skill in node.skills if skill not in skills)
    if header.start in nodes:
        seen = _reachable(header.start, edges)
        for node_id in nodes:
            if node_id not in seen:
                issues.append(doc.issue(("nodes", node_id), f"node '{node_id}' is unreachable from "
                                                            f"'{header.start}'"))
    reverse: dict[str, list[str]] = {n: [] for n in nodes}
    for src, outs in edges.items():
        for dst in outs:
            reverse[dst].append(src)
    can_end: set[str] = set()
    for node_id, node in nodes.items():
        if node.type in TERMINALS:
            can_end |= _reachable(node_id, reverse)
    looping: set[str] = set()
    for cycle in _silent_cycles(nodes):
        looping.update(cycle)
        issues.append(doc.issue(("nodes", cycle[0]), "endless loop for a caller who presses nothing: "
                                + " → ".join([*cycle, cycle[0]])))
    for node_id in nodes:
        if node_id not in can_end and node_id not in looping:
            issues.append(doc.issue(("nodes", node_id), f"loop without exit: no route, hang-up or other "
                                                        f"end can be reached from '{node_id}'"))
    return issues


def _exit_key(node: Any, exit_name: str) -> tuple[str | int, ...]:
    if exit_name.startswith("press "):
        return ("choices", exit_name[6:])
    if exit_name.startswith("case "):
        return ("cases", int(exit_name[5:]) - 1, "goto")
    return ({"else": "else"}.get(exit_name, exit_name),)


def _calendars_used(node: Any) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(node, BranchNode):
        for i, case in enumerate(node.cases):
            for key in ("open", "holiday"):
                value = getattr(case.when, key)
                if value is not None:
                    yield ("cases", i, "if", key), value


# -------------------------------------------------------------------- loading


def parse_tree(doc: LocatedDocument, text: str, queues: Iterable[str] | None = None,
               skills: Iterable[str] | None = None) -> Tree:
    """Validate a parsed document; raise ConfigError listing every issue."""
    try:
        header = TreeHeader.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(validation_issues(doc, exc)) from None
    issues: list[ConfigIssue] = []
    nodes: dict[str, Any] = {}
    for node_id, raw in header.nodes.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,63}", str(node_id)):
            issues.append(doc.issue(("nodes", node_id), "node ids are letters, digits, _ . - (starting "
                                                        "with a letter)"))
            continue
        try:
            nodes[node_id] = _NODE.validate_python(raw)
        except ValidationError as exc:
            issues.extend(_node_issues(doc, node_id, exc))
    for node_id, node in nodes.items():
        issues.extend(doc.issue(("nodes", node_id, *key), message) for key, message in _node_rules(node))
    if not issues:
        issues = check_tree(doc, header, nodes, set(queues) if queues is not None else None,
                            set(skills) if skills is not None else None)
    if issues:
        raise ConfigError(sorted(issues, key=lambda i: (i.line, i.column)))
    lines = {n: doc.locate(("nodes", n))[0].line for n in nodes}
    version = hashlib.sha256(text.encode()).hexdigest()[:12]
    return Tree(header.id, version, header.start, header.language, header.calendars, nodes, lines, doc.file,
                header.record)


def _node_rules(node: Any) -> Iterator[tuple[tuple[str, ...], str]]:
    """Rules across a node's keys, located at the key to change (pydantic would only name the node)."""
    if isinstance(node, CollectNode) and node.validate_as == "luhn" and not node.secure:
        yield ("secure",) if "secure" in node.model_fields_set else ("validate",), \
            "card numbers (validate: luhn) must be collected with secure: true (PCI: never stored or published)"
    if isinstance(node, DipNode):
        wanted = DIP_ARGS[node.operation]
        for name in node.args:
            if name not in wanted:
                yield ("args", name), f"{node.operation} takes no argument '{name}' (it takes: {', '.join(wanted)})"
        for name in wanted:
            if name not in node.args:
                yield ("args",) if "args" in node.model_fields_set else ("operation",), \
                    f"{node.operation} needs args.{name}"


def _node_issues(doc: LocatedDocument, node_id: str, exc: ValidationError) -> list[ConfigIssue]:
    """Errors of a discriminated union carry the type tag in their location: drop it."""
    out = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if isinstance(p, (str, int)) and p != "[key]"]
        if loc and isinstance(loc[0], str) and loc[0] in _TYPES:
            loc = loc[1:]
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        elif err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            message = f"type must be one of: {', '.join(sorted(_TYPES))}"
            loc = ["type"] if err["type"] == "union_tag_invalid" else []
        out.append(doc.issue(("nodes", node_id, *loc), message))
    return out


_TYPES = frozenset({"play", "menu", "language", "collect", "authenticate", "dip", "set", "branch", "route",
                    "callback", "voicemail", "transfer", "hangup"})


def load_tree(path: str | Path, queues: Iterable[str] | None = None, skills: Iterable[str] | None = None) -> Tree:
    """Load and check an IVR tree file; ``queues`` and ``skills`` (ids known to the ACD) enable the
    checks of routes against them."""
    path = Path(path)
    doc = load_yaml(path)
    return parse_tree(doc, path.read_text(encoding="utf-8"), queues, skills)


def tree_from_text(text: str, file: str = "<tree>", queues: Iterable[str] | None = None,
                   skills: Iterable[str] | None = None) -> Tree:
    return parse_tree(parse_yaml(text, file), text, queues, skills)
